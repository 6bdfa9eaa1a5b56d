"""A user's data is never lost or mixed up, scegg installs as documented, every error a user
can cause is one line, a user's own image set works under its own name, and data lives in one cwd-independent place."""
import json, os, shutil, socket, subprocess, sys, time, zipfile
from pathlib import Path

import pytest
import torch

os.environ.setdefault('SCEGG_PROGRESS', '0')
from scegg.cli import main
from scegg.core import SceggError, write_json, torch_save, atomic_write
from scegg import pipeline
from scegg.config import run_hash
from scegg.core import config_hash
import scegg.core
from scegg.experiment import Experiment, NOTEBOOKS
from scegg.datasets import DATASETS

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


from conftest import cli, one_line_error, own_cub_set   # and the data_home fixture


@pytest.fixture(scope='module')
def smoke_run(tmp_path_factory):
    "One finished smoke run (seed 0), shared by the tests that only read or copy it."
    base = tmp_path_factory.mktemp('smoke')
    old = os.environ.get('SCEGG_DATA'); os.environ['SCEGG_DATA'] = str(base / 'data')
    try:
        r = pipeline.train('smoke', out=base / 'run')
    finally:
        if old is None: os.environ.pop('SCEGG_DATA', None)
        else: os.environ['SCEGG_DATA'] = old
    return base / 'run', r


def _copy_run(src: Path, dst: Path):
    import shutil
    shutil.copytree(src, dst)
    return dst


# ---------------------------------------------------------------- never lose a user's data

def test_force_refuses_current_folder_and_keeps_files(tmp_path, monkeypatch, capsys, data_home):
    (tmp_path / 'notes.txt').write_text('mine')
    (tmp_path / 'data').mkdir(exist_ok=True); (tmp_path / 'data' / 'store.npy').write_text('x')
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(capsys, 'train', 'synthetic', '--preset', 'smoke', '--out', '.', '--force')
    assert code == 2 and 'current folder' in one_line_error(err)
    assert (tmp_path / 'notes.txt').read_text() == 'mine' and (tmp_path / 'data' / 'store.npy').exists()


def test_force_refuses_home_folder(tmp_path, monkeypatch, capsys, data_home):
    home = tmp_path / 'home'; home.mkdir(); (home / '.bashrc').write_text('x')
    monkeypatch.setenv('HOME', str(home))
    code, out, err = cli(capsys, 'train', 'synthetic', '--preset', 'smoke', '--out', home, '--force')
    assert code == 2 and 'home folder' in one_line_error(err)
    assert (home / '.bashrc').exists()


def test_force_refuses_a_folder_that_is_not_a_scegg_run(tmp_path, capsys, data_home):
    out = tmp_path / 'mine'; out.mkdir()
    (out / 'thesis.tex').write_text('years of work')
    code, _, err = cli(capsys, 'train', 'synthetic', '--preset', 'smoke', '--out', out, '--force')
    assert code == 2 and 'not a scegg run folder' in one_line_error(err) and 'thesis.tex' in err
    assert (out / 'thesis.tex').read_text() == 'years of work' and sorted(os.listdir(out)) == ['thesis.tex']


def test_user_config_json_is_never_overwritten(tmp_path, capsys, data_home):
    out = tmp_path / 'exp'; out.mkdir()
    (out / 'config.json').write_text('{"my": "own settings"}')
    code, _, err = cli(capsys, 'train', 'synthetic', '--preset', 'smoke', '--out', out)
    assert code == 2 and 'config.json' in one_line_error(err)
    assert json.loads((out / 'config.json').read_text()) == {'my': 'own settings'}


def test_force_removes_only_what_scegg_wrote(tmp_path, smoke_run, data_home):
    run = _copy_run(smoke_run[0], tmp_path / 'run')
    (run / 'my_notes.txt').write_text('keep me')
    assert (run / '.scegg-run.json').exists(), 'a run folder carries the marker written when it was created'
    r = pipeline.train('smoke', out=run, overrides={'seed': 1, 'eggn.epochs': 1}, force=True)
    assert r['seed'] == 1 and (run / 'my_notes.txt').read_text() == 'keep me'


# ---------------------------------------------------------------- locks and configuration hashes

HOLD = """
import sys, time
from scegg.core import file_lock
with file_lock(sys.argv[1], sys.argv[2]):
    print('locked', flush=True)
    time.sleep(3600)   # killed by the fixture; long, so that a slow (loaded) machine cannot outlive it
"""


@pytest.fixture
def holder():
    procs = []
    def hold(folder, what='run folder'):
        p = subprocess.Popen([PY, '-c', HOLD, str(folder), what], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, 'PYTHONPATH': str(ROOT)})
        procs.append(p)
        assert p.stdout.readline().strip() == 'locked'
        return p
    yield hold
    for p in procs: p.kill(); p.wait()


def test_second_writer_of_a_run_folder_is_refused(tmp_path, capsys, holder, data_home):
    out = tmp_path / 'run'
    p = holder(out)
    code, _, err = cli(capsys, 'train', 'synthetic', '--preset', 'smoke', '--set', 'seed=2', '--out', out)
    line = one_line_error(err)
    assert code == 2 and f'pid {p.pid}' in line and socket.gethostname() in line and 'since' in line
    assert not (out / 'config.json').exists()


def test_results_reused_only_for_their_own_configuration(tmp_path, smoke_run, data_home):
    "The race of two writers: config.json says seed 2 but results.json holds seed 0's numbers."
    run = _copy_run(smoke_run[0], tmp_path / 'run')
    c2 = pipeline.make_config('smoke', {'seed': 2})
    import dataclasses
    from scegg.core import config_hash
    write_json(run / 'config.json', {'config': dataclasses.asdict(c2), 'hash': run_hash(c2)})
    with pytest.raises(SceggError, match='results.json'):
        r = pipeline.train(c2, out=run)
        assert r['seed'] == 2   # (if it retrains instead of refusing, it must not be seed 0's numbers)
    # the run's own configuration is still reused
    assert pipeline.train('smoke', out=_copy_run(smoke_run[0], tmp_path / 'run0'))['seed'] == 0


def test_feature_store_locked_during_extraction(tmp_path, capsys, holder, data_home):
    from scegg.features import store_dir
    from scegg.datasets import load_dataset
    d = load_dataset('synthetic', None, preset='smoke')
    folder = store_dir(tmp_path / 'f', d.name, 'simple_cnn')
    p = holder(folder, 'feature store')
    code, _, err = cli(capsys, 'data', 'extract', 'synthetic', '--backbone', 'simple_cnn', '--features-dir', tmp_path / 'f')
    assert code == 2 and f'pid {p.pid}' in one_line_error(err) and 'feature store' in err


def test_reproduce_output_folder_locked(tmp_path, capsys, holder, data_home):
    p = holder(tmp_path / 'o' / 'smoke', 'reproduction')
    code, _, err = cli(capsys, 'reproduce', '--preset', 'smoke', '--out', tmp_path / 'o')
    assert code == 2 and f'pid {p.pid}' in one_line_error(err)
    assert not (tmp_path / 'o' / 'smoke' / 'notebooks').exists()


# ---------------------------------------------------------------- file modes

@pytest.mark.parametrize('umask,mode', [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_outputs_respect_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        write_json(tmp_path / 'a.json', {'x': 1})
        torch_save({'x': torch.zeros(2)}, tmp_path / 'b.pt')
        with atomic_write(tmp_path / 'c.md') as f: f.write('table')
    finally: os.umask(old)
    for f in ('a.json', 'b.pt', 'c.md'): assert (tmp_path / f).stat().st_mode & 0o777 == mode, f


# ---------------------------------------------------------------- one-line errors

def test_real_settings_from_the_command_line():
    cfg = pipeline.make_config('smoke', {'image_size': '64', 'seed': '3', 'eggn.lr': '2e-3'})
    assert (cfg.image_size, cfg.seed, cfg.eggn.lr) == (64, 3, 2e-3)
    assert pipeline.make_config('smoke', {'image_size': 'none'}).image_size is None


@pytest.mark.parametrize('setting,words', [('scen=3', 'scen.KEY=VALUE'), ('eggn=3', 'eggn.KEY=VALUE'),
                                           ('image_size=big', 'expected an int'), ('eggn.epochs=2.5', 'expected an int')])
def test_bad_settings_are_one_line(tmp_path, capsys, setting, words):
    code, _, err = cli(capsys, 'train', 'synthetic', '--preset', 'smoke', '--set', setting, '--out', tmp_path / 'o')
    assert code == 2 and words in one_line_error(err)
    assert not (tmp_path / 'o').exists()


@pytest.mark.parametrize('over', [{'eggn.epochs': 2.5}, {'seed': 1.5}, {'scen.use_lce': 'maybe'}, {'backbone': 3},
                                  {'data_options': [1]}])
def test_api_override_types_checked_before_anything_is_written(tmp_path, over):
    with pytest.raises(SceggError, match='expected'):
        pipeline.train('smoke', out=tmp_path / 'o', overrides=over)
    assert not (tmp_path / 'o').exists()


def test_wrong_type_in_a_runconfig_is_refused_up_front(tmp_path):
    import dataclasses
    cfg = dataclasses.replace(pipeline.make_config('smoke'), seed='7')
    with pytest.raises(SceggError, match='seed'):
        pipeline.train(cfg, out=tmp_path / 'o')
    assert not (tmp_path / 'o').exists()


def test_full_disk_is_one_line_naming_the_file(tmp_path, monkeypatch):
    real = os.fdopen
    def full(fd, mode='r', **kw):   # every temporary file of atomic_write lands on /dev/full
        os.close(fd); return real(os.open('/dev/full', os.O_WRONLY), mode, **kw)
    monkeypatch.setattr(os, 'fdopen', full)
    for save, name in ((lambda p: torch_save({'a': torch.zeros(100_000)}, p), 'ckpt.pt'),
                       (lambda p: write_json(p, {'a': list(range(100_000))}), 'r.json')):
        with pytest.raises(SceggError) as e: save(tmp_path / name)
        assert name in str(e.value) and 'space' in str(e.value)
        assert not list(tmp_path.glob(f'.{name}*')), 'temporary file left behind'


def test_full_disk_torch_runtime_error_is_one_line(tmp_path, monkeypatch):
    "torch's writer can turn a short write into a RuntimeError (message seen on /dev/full): still one line naming the file."
    import scegg.core
    def save_on_full_disk(obj, f):
        raise RuntimeError('[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598')
    monkeypatch.setattr(scegg.core.torch, 'save', save_on_full_disk)
    with pytest.raises(SceggError) as e: torch_save({'a': torch.zeros(10)}, tmp_path / 'eggn_last.pt')
    assert 'eggn_last.pt' in str(e.value) and 'No space left' in str(e.value)
    assert not list(tmp_path.iterdir()), 'temporary file left behind'


def test_dataset_and_preset_names_have_one_spelling():
    a = pipeline.make_config('smoke', {'dataset': 'synthetic'})
    b = pipeline.make_config('SMOKE', {'dataset': 'Synthetic'})
    assert b.dataset == 'synthetic' and config_hash(a.__dict__) == config_hash(b.__dict__)
    assert pipeline.make_config('cub-mini', {'dataset': 'cub_mini'}).dataset == 'CUB-mini'
    assert pipeline.make_config('Paper-cub').dataset == 'CUB'


def test_data_options_is_a_real_setting():
    cfg = pipeline.make_config('cub-mini', {'data_options': '{"holdout": 0.3}'})
    assert cfg.data_options == {'holdout': 0.3}
    with pytest.raises(SceggError, match='nope'):
        pipeline.make_config('cub-mini', {'data_options': '{"nope": 1}'})


# ---------------------------------------------------------------- a user's own image set

@pytest.fixture(scope='module')
def own_set(tmp_path_factory):
    "A CUB-mini-layout folder of 6 classes with its own class lists; attributes in a separate folder."
    return own_cub_set(tmp_path_factory.mktemp('own'))


def _own_flags(s):
    return ['--root', s['root'], '--cub-root', s['cub'], '--seen-classes', s['seen'], '--unseen-classes', s['unseen'],
            '--name', 'my-birds']


def test_own_image_set_check_extract_train(own_set, tmp_path, capsys, data_home):
    code, out, err = cli(capsys, 'data', 'check', 'CUB-mini', *_own_flags(own_set))
    assert code == 0, err
    summary = json.loads(out[:out.rindex('}') + 1])
    assert summary['name'] == 'my-birds' and (summary['seen'], summary['unseen']) == (4, 2)
    assert 'my-birds' in summary['caveat'] and 'CUB-mini' not in summary['caveat']
    code, out, err = cli(capsys, 'data', 'extract', 'CUB-mini', *_own_flags(own_set), '--backbone', 'simple_cnn')
    assert code == 0, err
    assert (data_home / 'features' / 'my-birds' / 'simple_cnn-64px' / 'manifest.json').exists()
    assert not (data_home / 'features' / 'CUB-mini').exists()
    code, out, err = cli(capsys, 'train', 'CUB-mini', '--preset', 'smoke', *_own_flags(own_set), '--out', tmp_path / 'r')
    assert code == 0, err
    r = json.loads((tmp_path / 'r' / 'results.json').read_text())
    assert r['dataset'] == 'my-birds' and 'my-birds' in r['caveat'] and 'CUB-mini' not in r['caveat']
    assert r['config']['data_options']['name'] == 'my-birds'


def test_own_image_set_reproduce(own_set, tmp_path, capsys, monkeypatch, data_home):
    "scegg reproduce hands the image set's options to every notebook, and the notebooks' runs use them."
    import scegg.reproduce as rep
    seen = []
    def fake_run(src, dst, params, cwd=None):   # what papermill leaves behind: the executed copy of the notebook
        seen.append(params); shutil.copyfile(src, dst)
        return {'status': 'ok', 'seconds': 0}
    monkeypatch.setattr(rep, 'run_notebook', fake_run)
    code, out, err = cli(capsys, 'reproduce', '--preset', 'cub-mini', *_own_flags(own_set), '--out', tmp_path / 'o')
    assert code == 0, err
    assert len(seen) == len(NOTEBOOKS) and all(p['data_options']['name'] == 'my-birds' for p in seen)
    assert seen[0]['root'] == str(own_set['root']) and '--name my-birds' in seen[0]['command']
    # what a notebook does with them: Experiment.run trains on the user's set, recorded under its name
    ex = Experiment('cub-mini', str(tmp_path / 'o' / 'cub-mini'), root=str(own_set['root']),
                        data_options=seen[0]['data_options'])
    small = {'backbone': 'simple_cnn', 'scen.stage1_iters': 5, 'scen.stage2_iters': 5, 'scen.cls_hidden': 16,
             'eggn.epochs': 1, 'eggn.hidden': 32, 'eggn.syn_num': 5, 'eggn.classifier_epochs': 1}
    r = ex.run('CUB-mini', small)
    assert r['dataset'] == 'my-birds' and 'my-birds' in r['caveat']


# ---------------------------------------------------------------- where data lives

def test_default_data_folder_does_not_depend_on_cwd(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv('SCEGG_DATA', raising=False); monkeypatch.delenv('XDG_CACHE_HOME', raising=False)
    monkeypatch.setenv('HOME', str(tmp_path / 'h'))
    monkeypatch.chdir(tmp_path)
    assert scegg.core.data_home() == tmp_path / 'h' / '.cache' / 'scegg'
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'xdg'))
    assert scegg.core.data_home() == tmp_path / 'xdg' / 'scegg'
    monkeypatch.setenv('SCEGG_DATA', str(tmp_path / 'd'))
    assert scegg.core.data_home() == tmp_path / 'd'
    from scegg.synthetic import SYNTH_PRESETS, default_synthetic_root
    assert tmp_path / 'd' in default_synthetic_root(SYNTH_PRESETS['smoke']).parents


def test_data_check_prints_data_folder_and_names_root_when_shared_data_missing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv('SCEGG_DATA', str(tmp_path / 'store'))
    monkeypatch.setenv('SCEGG_SHARED_DATA', str(tmp_path / 'nowhere'))
    code, out, err = cli(capsys, 'data', 'check', 'CUB-mini')
    assert code == 2 and str(tmp_path / 'store') in out + err
    last = err.strip().splitlines()[-1]
    assert 'None' not in last and '--root' in last and 'SCEGG_SHARED_DATA' in last


# ---------------------------------------------------------------- help

def test_help_texts(capsys):
    from scegg.cli import build_parser
    p = build_parser()
    sub = p._subparsers._group_actions[0].choices
    train = sub['train']
    help_of = {a.dest: a.help for a in train._actions}
    for k in ('root', 'device', 'out', 'features_dir', 'dataset'): assert help_of.get(k), k
    for d in DATASETS: assert d in help_of['dataset']
    rep = {a.dest: a.help for a in sub['reproduce']._actions}
    for k in ('force', 'seeds', 'root', 'device', 'out'): assert rep.get(k), k


# ---------------------------------------------------------------- install

def test_python_dash_m_scegg(tmp_path):
    r = subprocess.run([PY, '-m', 'scegg', '--version'], capture_output=True, text=True, cwd=tmp_path,
                       env={**os.environ, 'PYTHONPATH': str(ROOT)})
    import scegg
    assert (r.returncode, r.stdout.strip()) == (0, scegg.__version__), r.stderr


def test_reproduce_needs_only_runtime_dependencies():
    import tomllib, re
    deps = tomllib.loads((ROOT / 'pyproject.toml').read_text())['project']['dependencies']
    names = {re.split(r'[<>=!~\[; ]', d, maxsplit=1)[0].lower() for d in deps}
    assert {'papermill', 'ipykernel', 'nbformat', 'nbclient'} <= names
