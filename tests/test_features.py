"Feature store and extraction: end-to-end checks, and EfficientNet-Lite0 on real CUB-mini images."
import json
from pathlib import Path
import numpy as np, pytest, torch
from PIL import Image
from scegg.core import SceggError
from scegg.features import (IMAGENET_BIRDS, FeatureStore, extract_features, get_backbone, imagenet_top5, open_store,
                            store_dir)
from scegg.fixtures import fabricate_store


def _images(folder, n):
    rng = np.random.default_rng(1)
    paths = []
    for i in range(n):
        p = Path(folder) / f'{i:03d}.png'
        Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(p)  # not square: resize + crop
        paths.append(str(p))
    return paths


def test_store_layout_and_manifest(tmp_path):
    paths = _images(tmp_path, 7)
    out = store_dir(tmp_path, 'toy', 'simple_cnn')
    s = extract_features(paths, out, backbone='simple_cnn', batch_size=3, chunk_size=3, dataset_name='toy')
    assert out == tmp_path / 'features' / 'toy' / 'simple_cnn-64px'
    m = json.loads((out / 'manifest.json').read_text())
    assert (m['backbone'], m['image_size'], m['shape'], m['n_images'], m['chunk_size'], m['dtype'], m['chunks']) == \
        ('simple_cnn', 64, [64, 8, 8], 7, 3, 'float16', [0, 1, 2])
    assert [np.load(out / f'chunk-{c:05d}.npy').shape[0] for c in range(3)] == [3, 3, 1]
    assert np.load(out / 'chunk-00000.npy').dtype == np.float16
    assert s.maps([6, 0]).shape == (2, 64, 64) and s.pooled([6, 0]).shape == (2, 64)


def test_two_backbones_never_collide(tmp_path):
    assert store_dir(tmp_path, 'd', 'simple_cnn') != store_dir(tmp_path, 'd', 'efficientnet_lite0')
    assert store_dir(tmp_path, 'd', 'resnet101', 224) != store_dir(tmp_path, 'd', 'resnet101')


def test_store_refuses_other_backbone_in_same_folder(tmp_path):
    paths = _images(tmp_path, 3)
    extract_features(paths, tmp_path / 's', backbone='simple_cnn', chunk_size=2)
    with pytest.raises(SceggError, match='another backbone'):
        extract_features(paths, tmp_path / 's', backbone='efficientnet_lite0', chunk_size=2)


def test_corrupt_chunk_is_reported(tmp_path):
    s = fabricate_store(tmp_path, 5, shape=(2, 2, 2), chunk_size=2)
    np.save(tmp_path / 'chunk-00001.npy', np.zeros((2, 3), np.float16))
    with pytest.raises(SceggError, match=r'chunk 1 \(chunk-00001.npy, images 2-3\) holds'):
        FeatureStore(tmp_path).maps([2])


def test_unknown_backbone_lists_known():
    with pytest.raises(SceggError, match='efficientnet_lite0.*resnet101.*simple_cnn'):
        get_backbone('alexnet')


def test_resnet101_offline_error_says_where_weights_go(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path))  # empty cache
    import torch.hub
    monkeypatch.setattr(torch.hub, 'load_state_dict_from_url', lambda *a, **k: (_ for _ in ()).throw(OSError('offline')))
    with pytest.raises(SceggError, match='resnet101-63fe2227.pth'):
        get_backbone('resnet101').build(pretrained=True)


def test_pooled_memory_is_batched(tmp_path):
    "pooled over many ids equals the mean of maps, computed in batches."
    s = fabricate_store(tmp_path, 300, shape=(3, 2, 2), chunk_size=64)
    ids = np.arange(299, -1, -1)
    want = s.maps(ids).mean(-1)
    assert torch.allclose(s.pooled(ids, batch_size=7), want)


@pytest.mark.parametrize('backbone,grid', [('efficientnet_lite0', 7), ('efficientnet_lite2', 9)])
def test_cub_mini_efficientnet_birds(shared, tmp_path, backbone, grid):
    "The ImageNet weights are loaded: pooled maps of 8 CUB photographs score ImageNet bird classes (Lite2 at 260 px)."
    imgs = sorted((shared / 'CUB' / 'mini_dev' / 'images').glob('*/*.jpg'))
    if not imgs: pytest.skip('no CUB-mini images')
    cub = imgs[::max(1, len(imgs) // 8)][:8]
    s = extract_features(cub, tmp_path / 'cub', backbone=backbone, batch_size=8, dataset_name='CUB-mini')
    assert (len(s), s.shape) == (8, (1280, grid, grid))
    top5 = imagenet_top5(get_backbone(backbone).build(), s.pooled(range(8))).tolist()
    hits = [any(i in IMAGENET_BIRDS for i in t) for t in top5]
    assert all(hits), f'top-5 ImageNet classes without a bird: {top5}'
    assert sum(t[0] in IMAGENET_BIRDS for t in top5) >= 6  # the top-1 class is a bird for most


def test_unreadable_image_in_worker_names_file(tmp_path):
    paths = _images(tmp_path, 6)
    Path(paths[4]).write_bytes(b'not an image')
    with pytest.raises(SceggError, match=r'^cannot read image .*004\.png'):
        extract_features(paths, tmp_path / 's', backbone='simple_cnn', batch_size=2, chunk_size=2, num_workers=2)
    assert FeatureStore(tmp_path / 's').complete_chunks() == [0, 1]


# ---------------------------------------------------------------- damaged chunks are found, named and repaired
def _store(tmp_path, n=5):
    paths = _images(tmp_path, n)
    out = tmp_path / 's'
    extract_features(paths, out, backbone='simple_cnn', batch_size=2, chunk_size=2, dataset_name='toy')
    return paths, out


def _damage(out, how):
    f = out / 'chunk-00001.npy'
    if how == 'truncated':
        b = f.read_bytes(); f.write_bytes(b[:len(b) // 2])
    else:  # the right shape and dtype, but NaN
        np.save(f, np.full(np.load(f).shape, np.nan, np.float16))
    return f


@pytest.mark.parametrize('how', ['truncated', 'nan'])
def test_damaged_chunk_named_on_load_and_repaired_by_extract(tmp_path, how):
    paths, out = _store(tmp_path)
    good = (out / 'chunk-00001.npy').read_bytes()
    _damage(out, how)
    s = open_store(out, paths)                                  # the markers say complete: loading must notice
    with pytest.raises(SceggError) as e: s.maps([0, 2, 3])
    msg = str(e.value)
    assert '\n' not in msg and str(out) in msg and 'chunk 1' in msg and 'scegg data extract' in msg
    assert 'extract_features' not in msg                        # no Python function to run
    assert FeatureStore(out).verify() == {1: FeatureStore(out).verify()[1]} and len(FeatureStore(out).verify()) == 1
    s2 = extract_features(paths, out, backbone='simple_cnn', batch_size=2, chunk_size=2, dataset_name='toy')
    assert s2.extracted == [1] and s2.verify() == {}
    assert (out / 'chunk-00001.npy').read_bytes() == good
    assert torch.isfinite(s2.maps(range(5))).all()


def test_chunk_marker_records_checksum(tmp_path):
    _, out = _store(tmp_path)
    m = json.loads((out / 'chunk-00000.done').read_text())
    import hashlib
    assert m['sha256'] == hashlib.sha256((out / 'chunk-00000.npy').read_bytes()).hexdigest()
    # a same-size flip of bits is caught by the checksum alone
    f = out / 'chunk-00000.npy'; b = bytearray(f.read_bytes()); b[-1] ^= 1; f.write_bytes(bytes(b))
    assert 'checksum' in FeatureStore(out).verify()[0]


def test_cli_extract_repairs_damaged_store(tmp_path, monkeypatch, capsys):
    from scegg.cli import main
    from scegg.fixtures import make_xlsa17_fixture
    root = make_xlsa17_fixture(tmp_path / 'x', 'CUB')
    args = ['data', 'extract', 'CUB', '--root', str(root), '--backbone', 'simple_cnn', '--features-dir', str(tmp_path / 'f')]
    assert main(args) == 0
    chunk = next((tmp_path / 'f').rglob('chunk-00000.npy'))
    good = chunk.read_bytes()
    chunk.write_bytes(good[:len(good) // 3])
    assert main(args) == 0
    assert chunk.read_bytes() == good
    assert 'chunk 0' in capsys.readouterr().out                # says what it repaired


def _truncated_jpeg(path, seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path, quality=95)
    b = Path(path).read_bytes(); Path(path).write_bytes(b[:len(b) * 2 // 3])   # header intact, scan data cut


def test_extraction_lists_every_bad_image_and_writes_no_chunk_with_one(tmp_path):
    paths = _images(tmp_path, 6)
    for i in (1, 4):
        paths[i] = str(tmp_path / f'bad{i}.jpg'); _truncated_jpeg(paths[i], i)
    with pytest.raises(SceggError) as e:
        extract_features(paths, tmp_path / 's', backbone='simple_cnn', batch_size=2, chunk_size=2)
    msg = str(e.value)
    assert '\n' not in msg and msg.startswith('cannot read 2 images') and 'bad1.jpg' in msg and 'bad4.jpg' in msg
    listed = (tmp_path / 's' / 'unreadable_images.txt').read_text().split('\n')
    assert [Path(l.split('\t')[0]).name for l in listed if l] == ['bad1.jpg', 'bad4.jpg']
    assert FeatureStore(tmp_path / 's').complete_chunks() == [1]     # chunks 0 and 2 hold a bad image: not written
