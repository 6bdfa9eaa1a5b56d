"""Nothing a user made is ever overwritten, a rebuild leaves the repository clean, and messages point the
right way (figure names of `predict`, `--force` inside scegg's folders, the lock's holder, committed outputs equal to a
rebuild, the thread count a run used, and errors that name the file, line or class)."""
import json, os, re, shlex, shutil, subprocess, sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault('SCEGG_PROGRESS', '0')
from scegg.cli import main
from scegg.core import SceggError, file_lock, LOCK_NAME
from scegg import pipeline, reproduce
from scegg.config import ADDED_LATER
from scegg.runs import read_events
from scegg.tables import caption, metrics_of, EVIDENCE_DIR
from scegg.datasets import load_dataset

ROOT = Path(__file__).resolve().parents[1]


from conftest import cli, one_line_error, own_cub_set   # and the data_home fixture


@pytest.fixture(scope='module')
def smoke(tmp_path_factory):
    "One finished smoke run and its data set."
    base = tmp_path_factory.mktemp('i29')
    old = os.environ.get('SCEGG_DATA'); os.environ['SCEGG_DATA'] = str(base / 'data')
    try:
        r = pipeline.train('smoke', out=base / 'run')
        data = pipeline.load_run_data(pipeline.make_config('smoke'))
    finally:
        if old is None: os.environ.pop('SCEGG_DATA', None)
        else: os.environ['SCEGG_DATA'] = old
    return base / 'run', r, data


# ---------------------------------------------------------------- silent loss

def test_predict_gives_every_image_its_own_figure_and_never_overwrites(smoke, tmp_path, capsys):
    run, _, data = smoke
    src = [data.image_paths[int(i)] for i in data.splits['test_unseen'].ids[:3]]
    imgs = [tmp_path / 'c' / 'x' / 'a.png', tmp_path / 'c' / 'y' / 'a.png', tmp_path / 'c' / 'a-1.png']
    for s, d in zip(src, imgs): d.parent.mkdir(parents=True, exist_ok=True); shutil.copyfile(s, d)
    out = tmp_path / 'p'
    code, so, err = cli(capsys, 'predict', run, *imgs, '--out', out)
    assert code == 0, err
    first = sorted(p.name for p in out.iterdir())
    assert first == ['c-a-1.attention.png', 'x-a.attention.png', 'y-a.attention.png'], first   # three images, three figures
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    code, so, err = cli(capsys, 'predict', run, *imgs, '--out', out)   # a second call into the same --out
    assert code == 0, err
    assert len(list(out.iterdir())) == 6 and all((out / n).read_bytes() == b for n, b in before.items())
    assert 'x-a-2.attention.png' in so


def test_predict_list_names_unseen_classes_and_test_images(smoke, capsys):
    run, _, data = smoke
    code, so, err = cli(capsys, 'predict', run, '--list')
    assert code == 0, err
    u = data.unseen[0]
    line = next(l for l in so.splitlines() if l.strip().startswith(data.class_names[u]))
    shown = Path(line.split()[-1])   # a test image of that class, from the run's data set
    assert shown.is_file() and shown.parent.name == Path(data.image_paths[0]).parent.parent.joinpath(data.class_names[u]).name
    assert f'unseen classes ({len(data.unseen)}' in so


def test_force_keeps_a_users_file_inside_a_folder_scegg_made(smoke, tmp_path, capsys, data_home):
    run = tmp_path / 'r'; shutil.copytree(smoke[0], run)
    (run / 'validation' / 'notes.txt').write_text('x')
    code, so, err = cli(capsys, 'train', 'synthetic', '--preset', 'smoke', '--set', 'seed=1', '--set', 'eggn.epochs=1',
                        '--out', run, '--force')
    assert code == 0, err
    assert (run / 'validation' / 'notes.txt').read_text() == 'x' and 'notes.txt' in err
    assert json.loads((run / 'results.json').read_text())['seed'] == 1


# ---------------------------------------------------------------- how a run was made

def test_results_record_the_thread_count_used(smoke):
    import torch
    r = smoke[1]
    assert r['threads_used'] == [pipeline.make_config('smoke').threads] and r['config']['threads'] == 1
    ev = [e for e in read_events(smoke[0]) if e.get('stage') == 'run' and 'threads' in e]
    assert ev and ev[0]['threads'] == 1


# ---------------------------------------------------------------- messages that point the right way

def test_lock_names_its_holder_to_every_refused_caller(tmp_path):
    with file_lock(tmp_path / 'f', 'a test'):
        for _ in range(3):
            with pytest.raises(SceggError, match=f'in use by pid {os.getpid()}'):
                with file_lock(tmp_path / 'f'): pass
    assert not (tmp_path / 'f' / LOCK_NAME).exists()   # released: a free lock is no file (scegg.core.file_lock)


def test_scegg_data_pointing_at_a_file_is_one_sentence(tmp_path, monkeypatch, capsys):
    f = tmp_path / 'afile'; f.write_text('x')
    monkeypatch.setenv('SCEGG_DATA', str(f))
    code, _, err = cli(capsys, 'train', 'synthetic', '--preset', 'smoke', '--out', tmp_path / 'r')
    assert code == 2 and f'SCEGG_DATA={f}' in one_line_error(err) and 'is a file' in err


def test_results_without_protocols_name_the_file(smoke, tmp_path, capsys, data_home):
    run = tmp_path / 'r'; shutil.copytree(smoke[0], run)
    r = json.loads((run / 'results.json').read_text()); del r['protocols']
    (run / 'results.json').write_text(json.dumps(r))
    code, _, err = cli(capsys, 'train', 'synthetic', '--preset', 'smoke', '--out', run)
    assert code == 2 and str(run / 'results.json') in one_line_error(err) and 'protocols' in err
    with pytest.raises(SceggError, match='results.json has no'):
        metrics_of({**r, 'run_dir': str(run)})


def test_nan_in_an_attributes_file_names_file_and_line(smoke, tmp_path, capsys):
    run, _, data = smoke
    K = len(data.attribute_names)
    f = tmp_path / 'classes.txt'
    f.write_text(f"one {' '.join(['0.5'] * K)}\ntwo nan {' '.join(['0.5'] * (K - 1))}\n")
    code, _, err = cli(capsys, 'predict', run, data.image_paths[0], '--attributes', f, '--out', tmp_path / 'o')
    assert code == 2 and f'{f} line 2' in one_line_error(err) and "'nan'" in err


@pytest.fixture(scope='module')
def own_set(tmp_path_factory):
    "A CUB-mini-layout folder of 6 classes; `sub` names it."
    return own_cub_set(tmp_path_factory.mktemp('own29'))


def _flags(s, root=None):
    return ['--root', root or s['root'], '--cub-root', s['cub'], '--seen-classes', s['seen'], '--unseen-classes', s['unseen'],
            '--name', 'sub']


def test_damaged_chunk_of_a_named_store_suggests_a_command_that_works(own_set, capsys, data_home):
    from scegg.features import open_store
    code, out, err = cli(capsys, 'data', 'extract', 'CUB-mini', *_flags(own_set), '--backbone', 'simple_cnn')
    assert code == 0, err
    store = data_home / 'features' / 'sub' / 'simple_cnn-64px'
    chunk = next(store.glob('chunk-*.npy')); chunk.write_bytes(chunk.read_bytes()[:100])   # truncated
    with pytest.raises(SceggError) as e: open_store(store).maps([0])
    cmd = e.value.args[0].split('`')[1]
    assert cmd.startswith('scegg data extract CUB-mini --root ') and '--name sub' in cmd, cmd
    code, out, err = cli(capsys, *shlex.split(cmd)[1:])   # the suggested command repairs the store
    assert code == 0, err
    assert open_store(store).maps([0]).shape[0] == 1


def test_a_class_without_images_is_named_by_check_and_train(own_set, tmp_path, capsys, data_home):
    root = tmp_path / 'mine'; shutil.copytree(own_set['root'], root)
    rows = lambda f: [re.split(r'[,\s]+', l.strip()) for l in (root / f).read_text().splitlines() if l.strip()]
    cid, gone = rows('classes.txt')[1]   # a seen class: drop its images from the lists
    ids = {i for i, c in rows('image_class_labels.txt') if c == cid}
    for f in ('images.txt', 'image_class_labels.txt', 'train_test_split.txt'):
        (root / f).write_text(''.join(l + '\n' for l in (root / f).read_text().splitlines() if re.split(r'[,\s]+', l)[0] not in ids))
    code, out, err = cli(capsys, 'data', 'check', 'CUB-mini', *_flags(own_set, root))
    assert code == 2 and gone in err, err
    code, out, err = cli(capsys, 'train', 'CUB-mini', '--preset', 'smoke', *_flags(own_set, root), '--out', tmp_path / 'r')
    assert code == 2 and gone in one_line_error(err), err


# ---------------------------------------------------------------- a clean checkout stays clean

def _tracked(folder: Path, dst: Path) -> Path:
    "A copy of the git-tracked files of `folder` (what a fresh clone holds) under `dst`."
    files = subprocess.run(['git', 'ls-files', '-z', '--', str(folder.relative_to(ROOT))], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split('\0')
    for f in filter(None, files):
        t = dst / Path(f).relative_to(folder.relative_to(ROOT))
        t.parent.mkdir(parents=True, exist_ok=True); shutil.copyfile(ROOT / f, t)
    return dst


@pytest.mark.parametrize('preset', ['synthetic', 'cub-mini', 'cub-cpu'])
def test_committed_pages_are_what_the_committed_files_rebuild(preset, tmp_path, monkeypatch):
    "MANIFEST.md and index.html of a fresh clone's outputs/<preset> equal what write_manifest/write_report make from it."
    src = ROOT / 'outputs' / preset
    if not (src / 'index.html').exists(): pytest.skip(f'no outputs/{preset}')
    _tracked(src, tmp_path / 'outputs' / preset)
    monkeypatch.chdir(tmp_path); d = Path('outputs') / preset   # as `scegg reproduce --out outputs` names it
    reproduce.write_manifest(d); reproduce.write_report(d)
    for f in ('MANIFEST.md', 'index.html'):
        assert (d / f).read_text() == (src / f).read_text(), f'outputs/{preset}/{f} is stale: rebuild it'


def test_report_does_not_depend_on_git_ignored_files(tmp_path):
    "index.html of cub-cpu: the same bytes with or without its (git-ignored) Fig. 3 files; no dead image; no 'Unnamed' header."
    d = _tracked(ROOT / 'outputs' / 'cub-cpu', tmp_path / 'cub-cpu')
    a = reproduce.write_report(d).read_text()
    (d / 'fig3_attention_CUB-224.png').write_bytes(b'\x89PNG')
    (d / 'fig3_attention_CUB-224.meta.json').write_text(json.dumps({'files': ['fig3_attention_CUB-224.png'], 'notebook': 'fig3_attention'}))
    (d / 'notebooks' / 'fig3_attention.html').write_text('x')
    assert reproduce.write_report(d).read_text() == a
    assert 'src="fig3' not in a and 'notebooks/fig3' not in a and 'Unnamed' not in a
    assert 'not in the repository' in a and '--notebooks fig3_attention' in a


def test_fig6_caption_says_mean_once():
    c = caption('fig6_curves', 'synthetic', 'synthetic', [0, 1, 2])
    assert 'mean over 3 seeds (0, 1, 2) with min-max band' in c and 'mean over mean' not in c


def test_committed_sidecars_keep_settings_added_later_out_of_the_base():
    "No committed sidecar carries an ADDED_LATER setting at its old value: runs made before and after share one base."
    older = {f'{p}.{k}' if p else k: v for p, d in ADDED_LATER.items() for k, v in d.items()}
    for m in sorted((ROOT / 'outputs').glob('*/*.meta.json')):
        base = json.loads(m.read_text()).get('base_config', {})
        assert not [k for k, v in older.items() if k in base and base[k] == v], m


def test_generated_files_depend_only_on_pinned_tools():
    "constraints.txt pins every tool whose version changes the bytes under outputs/, and this environment has those versions."
    from importlib.metadata import version
    pins = {}
    for l in (ROOT / 'constraints.txt').read_text().splitlines():
        l = l.split('#')[0].strip()
        if '==' in l: k, v = l.split('=='); pins[k.strip().lower().replace('_', '-')] = v.strip()
    for tool in ('nbconvert', 'pygments', 'mistune', 'matplotlib', 'pandas', 'numpy', 'scikit-learn', 'pillow', 'nbformat', 'papermill'):
        assert tool in pins, f'{tool} is not pinned in constraints.txt'
        assert version(tool) == pins[tool], f'{tool} {version(tool)} installed, constraints.txt pins {pins[tool]}: run make venv'


def test_executed_notebooks_hold_no_checkout_path():
    "The executed notebooks name outputs/<preset>, never the folder the checkout happened to lie in."
    for nb in sorted((ROOT / 'outputs').glob('*/notebooks/*.ipynb')):
        t = nb.read_text()
        assert '/work/' not in t and str(ROOT) not in t, nb


def test_committed_outputs_equal_a_rebuild_from_the_run_cache(tmp_path, monkeypatch):
    "`make reproduce` (scegg reproduce --preset synthetic) from a full run cache gives every committed file of outputs/synthetic back, evidence/ included."
    runs = ROOT / 'outputs' / 'synthetic' / 'runs'
    if len(list(runs.glob('*/results.json'))) < 18:
        pytest.skip('outputs/synthetic/runs (the run cache, git-ignored) is not here: run `make reproduce` once')
    d = _tracked(ROOT / 'outputs' / 'synthetic', tmp_path / 'outputs' / 'synthetic')
    os.symlink(runs, d / 'runs')
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv('SCEGG_PROGRESS', raising=False)   # as `make reproduce` runs: progress lines are part of the executed notebooks
    r = reproduce.reproduce('synthetic', out='outputs', verbose=False)   # every run finished: nothing is trained
    assert r['ok'] and r['runs_trained'] == 0, r
    committed = lambda f: ROOT / 'outputs' / 'synthetic' / f.relative_to(d)
    changed = [str(f.relative_to(d)) for f in sorted(d.rglob('*')) if f.is_file() and 'runs' not in f.relative_to(d).parts
               and (not committed(f).is_file() or f.read_bytes() != committed(f).read_bytes())]   # new files too (evidence/)
    assert not changed, f'committed files differ from a rebuild (or are not committed): {changed}'
    used = {h for m in d.glob('*.meta.json') for h in json.loads(m.read_text()).get('runs', [])}
    assert {p.stem for p in (d / EVIDENCE_DIR).glob('*.json')} == used   # one committed evidence file per run used


def test_report_links_no_git_ignored_notebook(tmp_path):
    "index.html of cub-mini (whose Fig. 3 tables are committed but whose executed fig3 notebook is not): the same bytes "
    "with or without that notebook, and no link to it."
    d = _tracked(ROOT / 'outputs' / 'cub-mini', tmp_path / 'cub-mini')
    assert (d / 'fig3_concentration_CUB-mini.meta.json').exists()   # a committed table whose notebook is git-ignored
    a = reproduce.write_report(d).read_text()
    (d / 'notebooks' / 'fig3_attention.html').write_text('x'); (d / 'notebooks' / 'fig3_attention.ipynb').write_text('{}')
    assert reproduce.write_report(d).read_text() == a
    assert 'notebooks/fig3_attention' not in a
