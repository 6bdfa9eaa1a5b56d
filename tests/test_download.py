"Tests of scegg.download against a local HTTP server on 127.0.0.1 (no other address is ever contacted)."
import hashlib, os, tarfile, time, zipfile
from pathlib import Path

import pytest

os.environ.setdefault('SCEGG_PROGRESS', '0')
from scegg.core import SceggError
import scegg.download as dl
from scegg.download import download, download_dataset, sha256_file, unpack
from scegg.datasets import load_dataset
from scegg.fixtures import free_port, make_xlsa17_fixture, serve_folder


@pytest.fixture
def server(tmp_path):
    "Start a local server over tmp_path/srv; yields (folder, start) where start(drop_first) -> (url, state)."
    folder = tmp_path/'srv'; folder.mkdir()
    stops = []
    def start(drop_first=0):
        url, stop, state = serve_folder(folder, drop_first=drop_first, lifetime=30)
        stops.append(stop)
        assert url.startswith('http://127.0.0.1:')
        return url, state
    yield folder, start
    for s in stops: s()


def test_download_plain(server, tmp_path):
    folder, start = server
    data = os.urandom(50_000); (folder/'f.bin').write_bytes(data)
    url, state = start()
    out = download(f'{url}/f.bin', tmp_path/'out'/'f.bin', hashlib.sha256(data).hexdigest(), backoff=0.01)
    assert out.read_bytes() == data and not (tmp_path/'out'/'f.bin.part').exists()
    assert state['requests'] == [('/f.bin', None)]
    # a second call finds the verified file and does not download again
    download(f'{url}/f.bin', out, hashlib.sha256(data).hexdigest())
    assert len(state['requests']) == 1


def test_download_resumes_after_dropped_connection(server, tmp_path):
    folder, start = server
    data = os.urandom(400_000); (folder/'big.bin').write_bytes(data)
    url, state = start(drop_first=2)
    out = download(f'{url}/big.bin', tmp_path/'big.bin', hashlib.sha256(data).hexdigest(), backoff=0.01)
    assert sha256_file(out) == hashlib.sha256(data).hexdigest()
    # three requests: full, then two Range requests each continuing where the previous one stopped
    assert [r for _, r in state['requests']] == [None, 'bytes=200000-', 'bytes=300000-']


def test_download_resumes_existing_part_file(server, tmp_path):
    folder, start = server
    data = os.urandom(10_000); (folder/'p.bin').write_bytes(data)
    (tmp_path/'p.bin.part').write_bytes(data[:4000])
    url, state = start()
    download(f'{url}/p.bin', tmp_path/'p.bin', hashlib.sha256(data).hexdigest(), backoff=0.01)
    assert (tmp_path/'p.bin').read_bytes() == data and state['requests'] == [('/p.bin', 'bytes=4000-')]


def test_download_wrong_checksum(server, tmp_path):
    folder, start = server
    (folder/'f.bin').write_bytes(b'hello')
    url, _ = start()
    with pytest.raises(SceggError, match=f'{url}/f.bin downloaded with SHA-256 [0-9a-f]{{64}}, expected ab+; the bad file was removed'):
        download(f'{url}/f.bin', tmp_path/'f.bin', 'a' + 'b' * 63, backoff=0.01)
    assert list(tmp_path.glob('f.bin*')) == []


def test_download_http_error_is_immediate(server, tmp_path):
    _, start = server
    url, state = start()
    with pytest.raises(SceggError, match='HTTP 404'): download(f'{url}/missing.zip', tmp_path/'m.zip', backoff=0.01)
    assert len(state['requests']) == 1      # a 404 is not retried


def test_download_unreachable(tmp_path):
    url = f'http://127.0.0.1:{free_port()}/xlsa17.zip'
    t = time.monotonic()
    with pytest.raises(SceggError) as e: download(url, tmp_path/'x.zip', retries=3, backoff=0.01, timeout=2)
    msg = str(e.value)
    assert msg.startswith(f'could not download {url} after 4 attempts') and msg.count('. ') == 0
    assert time.monotonic() - t < 5 and not (tmp_path/'x.zip').exists()


def test_unpack_guards(tmp_path):
    with zipfile.ZipFile(tmp_path/'up.zip', 'w') as z: z.writestr('a/../../up.txt', 'x')
    with pytest.raises(SceggError, match='would unpack outside'): unpack(tmp_path/'up.zip', tmp_path/'o')
    assert not (tmp_path/'up.txt').exists()
    with tarfile.open(tmp_path/'abs.tgz', 'w:gz') as t:
        i = tarfile.TarInfo('/etc/evil'); i.size = 0; t.addfile(i)
    with pytest.raises(SceggError, match="'/etc/evil', which would unpack outside"): unpack(tmp_path/'abs.tgz', tmp_path/'o')
    (tmp_path/'x.rar').write_bytes(b'x')
    with pytest.raises(SceggError, match='not a .zip, .tgz or .tar.gz'): unpack(tmp_path/'x.rar', tmp_path/'o')


def _pack_cub(stage: Path, srv: Path):
    "Pack a generated CUB benchmark into the three files the real CUB download consists of."
    with zipfile.ZipFile(srv/'xlsa17.zip', 'w') as z:
        for p in (stage/'xlsa17').rglob('*'):
            if p.is_file(): z.write(p, p.relative_to(stage))
    with tarfile.open(srv/'CUB_200_2011.tgz', 'w:gz') as t:
        t.add(stage/'CUB'/'CUB_200_2011', arcname='CUB_200_2011')
        t.add(stage/'CUB'/'attributes.txt', arcname='attributes.txt')
    (srv/'CUB_attribute.pkl').write_bytes((stage/'w2v'/'CUB_attribute.pkl').read_bytes())


def test_download_dataset_end_to_end(server, tmp_path, monkeypatch):
    folder, start = server
    stage = make_xlsa17_fixture(tmp_path/'stage', 'CUB')
    _pack_cub(stage, folder)
    sha = sha256_file(folder/'CUB_attribute.pkl')
    monkeypatch.setitem(dl.SOURCES, 'CUB', [dict(s, sha256=sha) if s['url'].endswith('.pkl') else s for s in dl.SOURCES['CUB']])
    url, state = start(drop_first=1)        # the first archive's connection drops half-way too
    root = download_dataset('cub', tmp_path/'root', base_url=url, backoff=0.01)
    assert (root/'xlsa17'/'data'/'CUB'/'res101.mat').is_file() and (root/'CUB'/'attributes.txt').is_file()
    assert (root/'CUB'/'CUB_200_2011'/'images').is_dir() and (root/'w2v'/'CUB_attribute.pkl').is_file()
    d = load_dataset('CUB', root)
    assert d.n_classes == 9 and all(Path(p).is_file() for p in d.image_paths)
    assert d.image_paths[0].startswith(str(root/'CUB'/'CUB_200_2011'/'images'))
    n = len(state['requests'])
    download_dataset('CUB', root, base_url=url)        # everything is there: nothing is fetched again
    assert len(state['requests']) == n


def test_download_dataset_unknown_and_real_sources():
    with pytest.raises(SceggError, match="no automatic download for 'APY'"): download_dataset('APY', '/tmp/never')
    pk = {s['url'].rsplit('/', 1)[1]: s['sha256'] for ds in dl.SOURCES.values() for s in ds if s['url'].endswith('.pkl')}
    assert pk == {'CUB_attribute.pkl': '35261deef657d26c0886d6f49842aefe237708fc7f5b4e4d76c790e47446fa88',
                  'SUN_attribute.pkl': 'cb90a74a9d3a43e2a7282861130760cb655e6d753b6cc4235a4c7136154b1fb3',
                  'AWA2_attribute.pkl': '675cd9fdc7a8dce6881c2681efe2ab4e27d2ee545ad0fad210e485f5414cb754'}


SHARED = Path(os.environ.get('SCEGG_SHARED_DATA') or Path(__file__).resolve().parents[2]/'shared'/'data')


@pytest.mark.skipif(not (SHARED/'CUB'/'CUB_attribute.pkl').is_file(), reason='../shared/data absent')
def test_w2v_checksums_match_shared_copies():
    for ds in ('CUB', 'SUN', 'AWA2'):
        want = [s['sha256'] for s in dl.SOURCES[ds] if s['url'].endswith('.pkl')][0]
        assert sha256_file(SHARED/ds/f'{ds}_attribute.pkl') == want
