"""Hostile input, table-driven: every bad input gives one clear `scegg: error:` line naming the file or value,
exit status 2, no traceback, and leaves what was computed before (a finished run, a feature store) untouched."""
import hashlib, os, pickle, shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io as sio

os.environ.setdefault('SCEGG_PROGRESS', '0')
from scegg.cli import main
from scegg.core import SceggError
from scegg.data import xlsa17_paths
from scegg.datasets import load_dataset
from scegg.fixtures import make_xlsa17_fixture
from scegg import pipeline
from scegg.config import RunConfig
from scegg.core import read_json
from scegg.runs import _prepare_out


# ---------------------------------------------------------------- shared state: a finished run and two stores
@pytest.fixture(scope='module')
def world(tmp_path_factory):
    "A finished smoke run, its synthetic feature store, and an xlsa17 CUB fixture with its own store."
    base = tmp_path_factory.mktemp('hostile')
    old = os.environ.get('SCEGG_DATA')
    os.environ['SCEGG_DATA'] = str(base / 'data')
    try:
        run = base / 'run'
        pipeline.train('smoke', run, overrides={'eggn.epochs': 1, 'eszsl': False})
        xroot = make_xlsa17_fixture(base / 'xlsa', 'CUB')
        feats = base / 'feats'
        assert main(['data', 'extract', 'CUB', '--root', str(xroot), '--backbone', 'simple_cnn',
                     '--features-dir', str(feats)]) == 0
        yield {'base': base, 'run': run, 'data': base / 'data', 'xroot': xroot, 'feats': feats}
    finally:
        if old is None: os.environ.pop('SCEGG_DATA', None)
        else: os.environ['SCEGG_DATA'] = old


def snapshot(*folders) -> dict:
    "sha256 of every file under `folders` (the things a failing command must not touch)."
    out = {}
    for f in folders:
        for p in sorted(Path(f).rglob('*')):
            if p.is_file() and p.name != 'events.jsonl': out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


# ---------------------------------------------------------------- ways to break an xlsa17 root
def fresh_root(w, tmp):
    root = tmp / 'root'
    shutil.copytree(w['xroot'], root)
    return root, xlsa17_paths(root, 'CUB')

def truncate(path): b = path.read_bytes(); path.write_bytes(b[:len(b) // 2])

def edit_mat(path, **changes):
    m = {k: v for k, v in sio.loadmat(str(path)).items() if not k.startswith('__')}
    for k, v in changes.items():
        if v is None: m.pop(k)
        else: m[k] = v(m[k])
    sio.savemat(str(path), m)

def with_nan(a): a = a.astype(float).copy(); a[0, 0] = np.nan; return a
def with_inf(a): a = a.astype(float).copy(); a[1, 2] = np.inf; return a

def bad_w2v(P):
    with open(P['w2v'][0], 'wb') as f: pickle.dump(np.zeros((7, 300)), f, protocol=2)   # K is 6

def first_image(root): return sorted((root / 'CUB').rglob('*.jpg'))[0]

def extract(root, feats): return ['data', 'extract', 'CUB', '--root', str(root), '--backbone', 'simple_cnn',
                                  '--features-dir', str(feats)]


# Each case: (id, prepare(world, tmp) -> argv, phrase expected in the error line).
SMOKE = ['train', 'synthetic', '--preset', 'smoke']
CASES = [
    ('unknown-dataset', lambda w, t: ['data', 'extract', 'nope', '--backbone', 'simple_cnn'], "unknown dataset 'nope'"),
    ('unknown-dataset-train', lambda w, t: ['train', 'nope', '--out', str(t / 'o')], "no default preset for 'nope'"),
    ('unknown-backbone', lambda w, t: [*SMOKE, '--set', 'backbone=resnet9', '--out', str(w['run'])], "unknown backbone 'resnet9'"),
    ('unknown-preset', lambda w, t: ['train', 'synthetic', '--preset', 'tiny', '--out', str(t / 'o')], "preset 'tiny' is unknown"),
    ('missing-root', lambda w, t: extract(t / 'nowhere', t / 'f'), 'att_splits.mat is missing'),
    ('no-root', lambda w, t: ['train', 'CUB', '--out', str(t / 'o')], 'needs a data root'),
    ('truncated-mat', lambda w, t: (lambda r, P: (truncate(P['att_splits']), extract(r, w['feats']))[1])(*fresh_root(w, t)),
     'could not be read as a MATLAB .mat file'),
    ('empty-mat', lambda w, t: (lambda r, P: (P['res101'].write_bytes(b''), extract(r, w['feats']))[1])(*fresh_root(w, t)),
     'res101.mat could not be read as a MATLAB .mat file'),
    ('foreign-mat', lambda w, t: (lambda r, P: (shutil.copy(first_image(r), P['att_splits']), extract(r, w['feats']))[1])(*fresh_root(w, t)),
     'att_splits.mat could not be read as a MATLAB .mat file'),
    ('missing-key', lambda w, t: (lambda r, P: (edit_mat(P['att_splits'], original_att=None), extract(r, w['feats']))[1])(*fresh_root(w, t)),
     "has no key 'original_att'"),
    ('index-out-of-range', lambda w, t: (lambda r, P: (edit_mat(P['att_splits'], trainval_loc=lambda a: a.astype(np.int64) + 1000),
                                                       extract(r, w['feats']))[1])(*fresh_root(w, t)), 'trainval_loc has index'),
    ('zero-index', lambda w, t: (lambda r, P: (edit_mat(P['att_splits'], test_seen_loc=lambda a: a.astype(np.int64) * 0),
                                               extract(r, w['feats']))[1])(*fresh_root(w, t)), 'expected 1-based indices'),
    ('nan-attributes', lambda w, t: (lambda r, P: (edit_mat(P['att_splits'], att=with_nan), extract(r, w['feats']))[1])(*fresh_root(w, t)),
     'att has 1 NaN or infinite values'),
    ('inf-attributes', lambda w, t: (lambda r, P: (edit_mat(P['att_splits'], original_att=with_inf), extract(r, w['feats']))[1])(*fresh_root(w, t)),
     'original_att has 1 NaN or infinite values'),
    ('word-vectors-shape', lambda w, t: (lambda r, P: (bad_w2v(P), extract(r, w['feats']))[1])(*fresh_root(w, t)),
     'has 7 rows; expected one per attribute (6)'),
    ('corrupt-image', lambda w, t: (lambda r, P: (first_image(r).write_bytes(b'not a jpeg'), extract(r, t / 'f'))[1])(*fresh_root(w, t)),
     'cannot read image'),
    ('missing-image', lambda w, t: (lambda r, P: (first_image(r).unlink(), extract(r, t / 'f'))[1])(*fresh_root(w, t)),
     'No such file'),
    ('device-cuda', lambda w, t: [*SMOKE, '--device', 'cuda', '--out', str(t / 'o')], 'no CUDA GPU is available'),
    ('device-unknown', lambda w, t: [*SMOKE, '--device', 'tpu', '--out', str(t / 'o')], "unknown device 'tpu'"),
    ('unknown-setting', lambda w, t: [*SMOKE, '--set', 'eggn.nope=1', '--out', str(w['run'])], 'EGGNConfig has no setting nope'),
    ('set-without-value', lambda w, t: [*SMOKE, '--set', 'eggn.epochs', '--out', str(w['run'])], "expected KEY=VALUE"),
    ('not-a-number', lambda w, t: [*SMOKE, '--set', 'seed=abc', '--out', str(w['run'])], "seed='abc': expected an int"),
    ('zero-epochs', lambda w, t: [*SMOKE, '--set', 'eggn.epochs=0', '--out', str(w['run'])], 'eggn.epochs=0: expected at least 1'),
    ('negative-batch', lambda w, t: [*SMOKE, '--set', 'scen.batch_size=-1', '--out', str(w['run'])], 'batch_size=-1'),
    ('zero-gan-batch', lambda w, t: [*SMOKE, '--set', 'eggn.batch_size=0', '--out', str(w['run'])], 'eggn.batch_size=0: expected at least 1'),
    ('zero-syn-num', lambda w, t: [*SMOKE, '--set', 'eggn.syn_num=0', '--out', str(w['run'])], 'eggn.syn_num=0'),
    ('negative-lr', lambda w, t: [*SMOKE, '--set', 'scen.lr=-1', '--out', str(w['run'])], 'scen.lr=-1.0: expected a positive number'),
    ('zero-classes', lambda w, t: ['data', 'synth', '--out', str(t / 's'), '--n-classes', '0'], '--n-classes must be positive, got 0'),
    ('bad-data-options', lambda w, t: [*SMOKE, '--set', 'data_options=[1', '--out', str(t / 'o')], 'expected a JSON object'),
    ('foreign-data-option', lambda w, t: [*SMOKE, '--set', 'data_options={"bogus": 1}', '--out', str(t / 'o')],
     'data_options bogus: not options of the synthetic loader'),
    ('foreign-loader-option', lambda w, t: ['train', 'CUB', '--preset', 'smoke', '--root', str(w['xroot']), '--set',
                                            'data_options={"bogus": 1}', '--out', str(t / 'o')], 'data_options bogus: not options of the CUB loader'),
    ('other-configuration', lambda w, t: [*SMOKE, '--set', 'eggn.epochs=1', '--set', 'eszsl=false', '--set', 'seed=7',
                                          '--out', str(w['run'])], 'holds a run of another configuration (differs in'),
    ('out-is-a-file', lambda w, t: (t / 'f.txt').write_text('x') and [*SMOKE, '--out', str(t / 'f.txt')], 'is a file; expected a folder'),
    ('out-under-a-file', lambda w, t: (t / 'f.txt').write_text('x') and [*SMOKE, '--out', str(t / 'f.txt' / 'run')],
     'cannot create the run folder'),
    ('corrupt-config-json', lambda w, t: (shutil.copytree(w['run'], t / 'r'), (t / 'r' / 'config.json').write_text('{"config": '),
                                          [*SMOKE, '--out', str(t / 'r')])[-1], 'config.json is not valid JSON'),
]


@pytest.mark.parametrize('name,prepare,phrase', CASES, ids=[c[0] for c in CASES])
def test_hostile_cli(world, tmp_path, capsys, name, prepare, phrase):
    argv = prepare(world, tmp_path)
    before = snapshot(world['run'], world['feats'], world['data'] / 'features')
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (name, code, out, err)
    lines = [l for l in err.splitlines() if l.strip()]
    assert lines and lines[-1].startswith('scegg: error: '), err
    assert phrase in lines[-1], (name, lines[-1])
    assert 'Traceback' not in err + out
    # nothing computed earlier is lost: the finished run and both feature stores are byte for byte the same
    assert snapshot(world['run'], world['feats'], world['data'] / 'features') == before
    assert (world['run'] / 'results.json').exists()


def test_every_failure_is_reported(world):
    "The table covers the issue's list, and the finished run it protects is really finished."
    assert len(CASES) >= 15
    r = read_json(world['run'] / 'results.json')
    assert set(r['protocols']) == {'paper', 'validation'}
    assert len(list((world['feats']).rglob('manifest.json'))) == 1


def test_debug_shows_traceback(world, tmp_path, capsys):
    code = main(['--debug', *SMOKE, '--set', 'eggn.epochs=0', '--out', str(tmp_path / 'o')])
    err = capsys.readouterr().err
    assert code == 2 and 'Traceback' in err and 'SceggError' in err
    assert err.strip().splitlines()[-1] == 'scegg: error: eggn.epochs=0: expected at least 1'


# The same checks through the Python API: SceggError with the phrase, never another exception.
API_CASES = [
    ('load-unknown', lambda w, t: load_dataset('nope'), "unknown dataset 'nope'"),
    ('load-no-root', lambda w, t: load_dataset('SUN'), 'needs a data root'),
    ('load-nan', lambda w, t: (lambda r, P: (edit_mat(P['att_splits'], att=with_nan), load_dataset('CUB', r))[1])(*fresh_root(w, t)),
     'NaN or infinite'),
    ('config-key', lambda w, t: pipeline.make_config('smoke', {'scen.nope': 1}), 'SCENConfig has no setting nope'),
    ('config-zero', lambda w, t: pipeline.train('smoke', t / 'o', overrides={'eggn.classifier_epochs': 0}),
     'eggn.classifier_epochs=0: expected at least 1'),
    ('config-direct', lambda w, t: pipeline.train(RunConfig(method='gan'), t / 'o'), "method 'gan' is unknown"),
    ('wrong-loader-options', lambda w, t: pipeline.train('smoke', t / 'o', overrides={'dataset': 'CUB', 'root': str(t / 'none')}),
     'att_splits.mat is missing'),
    ('other-configuration', lambda w, t: pipeline.train('smoke', w['run'], overrides={'seed': 3}), 'another configuration'),
    ('device', lambda w, t: pipeline.train('smoke', t / 'o', device='cuda:3'), 'no CUDA GPU'),
]


@pytest.mark.parametrize('name,call,phrase', API_CASES, ids=[c[0] for c in API_CASES])
def test_hostile_api(world, tmp_path, name, call, phrase):
    before = snapshot(world['run'], world['feats'])
    with pytest.raises(SceggError, match=None) as e: call(world, tmp_path)
    assert phrase in str(e.value), str(e.value)
    assert '\n' not in str(e.value)
    assert snapshot(world['run'], world['feats']) == before


def test_failed_start_does_not_block_the_corrected_command(world, tmp_path, capsys):
    "A run that failed before any work (wrong --root) leaves a folder that the corrected command may reuse."
    out = tmp_path / 'o'
    assert main(['train', 'CUB', '--preset', 'smoke', '--root', str(tmp_path / 'nowhere'), '--out', str(out)]) == 2
    assert 'att_splits.mat is missing' in capsys.readouterr().err
    # the corrected root differs from the recorded config.json, but nothing was computed there, so it is not refused
    cfg = pipeline.make_config('smoke', {'dataset': 'CUB', 'root': str(world['xroot'])})
    assert _prepare_out(out, cfg, force=False, resume=True) is False
    assert read_json(out / 'config.json')['config']['root'] == str(world['xroot'])
