"""Reliability and provenance of a run: SIGKILL and resume give the uninterrupted result, runs are deterministic,
outputs are atomic (a full or read-only disk gives one clear line), and results.json says how it was made.
Downloads (resume, dropped connection, bad checksum) are covered by tests/test_download.py."""
import errno, json, os, signal, subprocess, sys, time
from pathlib import Path

import pytest
import torch

os.environ.setdefault('SCEGG_PROGRESS', '0')
from scegg import core, pipeline
from scegg.config import run_hash
from scegg.runs import read_events
from scegg.cli import main

ROOT = Path(__file__).resolve().parents[1]
# slow enough to be killed inside stage 1 and inside stage 3 (a few seconds a run on one CPU thread)
SLOW = ['--set', 'scen.stage1_iters=200', '--set', 'scen.checkpoint_every=20', '--set', 'eggn.epochs=6', '--set', 'eszsl=false']


def _env(data):
    return {**os.environ, 'SCEGG_DATA': str(data), 'SCEGG_PROGRESS': '0', 'OMP_NUM_THREADS': '1'}

def _cmd(out):
    return [sys.executable, '-m', 'scegg.cli', 'train', 'synthetic', '--preset', 'smoke', *SLOW, '--out', str(out), '--resume']

def _ckpt(path):
    "The checkpoint at `path`, or None while it does not exist yet (files are replaced atomically, never torn)."
    if not path.exists(): return None
    return torch.load(path, map_location='cpu', weights_only=False)

def _run_until(out, data, path, ready, timeout=120):
    "Start a run, poll `path` until ready(checkpoint) holds, SIGKILL it; returns the checkpoint found after the kill."
    p = subprocess.Popen(_cmd(out), cwd=ROOT, env=_env(data), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t0 = time.time()
    try:
        while True:
            ck = _ckpt(path)
            if ck is not None and ready(ck): break
            assert p.poll() is None, f'the run ended before the kill point: {p.stderr.read().decode()[-2000:]}'
            assert time.time() - t0 < timeout, 'kill point not reached in time'
            time.sleep(0.01)
        p.send_signal(signal.SIGKILL)
    finally:
        p.wait()
    assert p.returncode == -signal.SIGKILL
    assert not (out / 'results.json').exists()
    return _ckpt(path)   # the last checkpoint written before the kill is what a resumed run starts from

def _finish(out, data):
    r = subprocess.run(_cmd(out), cwd=ROOT, env=_env(data), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads((out / 'results.json').read_text())

def _metrics(r):
    "Everything in results.json that is a number computed from the data (wall times removed)."
    curves = {v: [{k: x for k, x in rec.items() if k != 'seconds'} for rec in c] for v, c in r['curves'].items()}
    return {'protocols': r['protocols'], 'curves': curves, 'scen_alone': r['scen_alone'], 'sizes': r['sizes']}

def _by_process(out):
    "events.jsonl grouped by `train` call (each starts with a 'run' event carrying `resume`), in order."
    groups = []
    for e in read_events(out):
        if e['stage'] == 'run' and 'resume' in e: groups.append([])
        groups[-1].append(e)
    return groups

def _starts(events):
    return {(e['view'], e['stage']): e.get('start_iter', e.get('start_epoch')) for e in events
            if 'view' in e and e['stage'] != 'view'}


def test_sigkill_in_stage1_and_stage3_then_resume(tmp_path):
    data = tmp_path / 'data'
    ref = _finish(tmp_path / 'ref', data)                       # uninterrupted, same seed, same CPU
    out = tmp_path / 'run'
    # 1) killed inside SCEN stage 1 of the validation view
    ck1 = _run_until(out, data, out / 'validation' / 'scen' / 'scen.pt', lambda c: c['stage'] == 'stage1' and c['iter'] > 0)
    assert ck1['stage'] == 'stage1' and 0 < ck1['iter'] < 200 and ck1['iter'] % 20 == 0
    # 2) resumed, then killed inside EGGN (stage 3) of the test view, after at least one epoch
    ck3 = _run_until(out, data, out / 'test' / 'eggn' / 'eggn_last.pt', lambda c: c['epoch'] >= 1)
    assert 1 <= ck3['epoch'] < 6
    assert core.read_json(out / 'validation' / 'view.json')         # the validation view had finished
    # 3) resumed to the end
    res = _finish(out, data)
    assert _metrics(res) == _metrics(ref)                             # bit-identical metrics and curves
    assert res['config_hash'] == ref['config_hash']

    p1, p2, p3 = _by_process(out)
    # first process: everything started from zero, killed in stage 1
    assert _starts(p1) == {('validation', 'stage1'): 0}
    # second: validation stage 1 continued at the checkpointed iteration, the rest started fresh
    assert _starts(p2) == {('validation', 'stage1'): ck1['iter'], ('validation', 'stage2'): 0, ('validation', 'eggn'): 0,
                           ('test', 'stage1'): 0, ('test', 'stage2'): 0, ('test', 'eggn'): 0}
    # third: the finished validation view and the test SCEN were not run again; EGGN continued at its epoch
    assert _starts(p3) == {('test', 'eggn'): ck3['epoch']}
    assert any(e.get('view') == 'validation' and e.get('reused') for e in p3)
    assert p3[-1] == {**p3[-1], 'stage': 'run', 'done': True}
    # the resumed generator's history has one record per epoch, none repeated
    assert [c['epoch'] for c in res['curves']['test']] == list(range(6))


def test_same_seed_same_results(tmp_path, monkeypatch):
    monkeypatch.setenv('SCEGG_DATA', str(tmp_path / 'data'))
    a = pipeline.train('smoke', tmp_path / 'a')
    b = pipeline.train('smoke', tmp_path / 'b')
    assert _metrics(a) == _metrics(b) and a['eszsl'] == b['eszsl']
    assert len(a['curves']['test']) == pipeline.make_config('smoke').eggn.epochs
    # the comparison can fail: another seed moves the curves
    c = pipeline.train('smoke', tmp_path / 'c', overrides={'seed': 1, 'eggn.epochs': 1, 'scen.stage2_iters': 5})
    assert c['curves']['test'][0]['loss_G'] != a['curves']['test'][0]['loss_G']


@pytest.fixture(scope='module')
def finished(tmp_path_factory):
    "A finished smoke run (1 GAN epoch) and its data folder."
    base = tmp_path_factory.mktemp('atomic')
    old = os.environ.get('SCEGG_DATA'); os.environ['SCEGG_DATA'] = str(base / 'data')
    try:
        r = pipeline.train('smoke', base / 'run', overrides={'eggn.epochs': 1})
        yield base, r
    finally:
        if old is None: os.environ.pop('SCEGG_DATA', None)
        else: os.environ['SCEGG_DATA'] = old


def _no_temp_files(folder):
    return [p for p in Path(folder).rglob('*.tmp')] == []

def test_full_disk_while_writing_results(finished, tmp_path, capsys, monkeypatch):
    base, ref = finished
    out = tmp_path / 'run'
    real = os.replace
    def replace(src, dst):
        if Path(dst).name == 'results.json': raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(src, dst)
    monkeypatch.setattr(core.os, 'replace', replace)
    argv = ['train', 'synthetic', '--preset', 'smoke', '--set', 'eggn.epochs=1', '--out', str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f'scegg: error: writing {out / "results.json"} failed: No space left on device']
    assert not (out / 'results.json').exists() and _no_temp_files(out)      # nothing half-written is left
    assert (out / 'test' / 'view.json').exists()                           # the work done is kept
    monkeypatch.setattr(core.os, 'replace', real)
    assert main(argv) == 0                                                 # the rerun only writes results.json
    last = _by_process(out)[-1]
    assert _starts(last) == {} and sum(bool(e.get('reused')) for e in last) == 2
    assert _metrics(core.read_json(out / 'results.json')) == _metrics(ref)


def test_read_only_output(finished, tmp_path, capsys, monkeypatch):
    def mkstemp(*a, **k): raise OSError(errno.EROFS, os.strerror(errno.EROFS))
    monkeypatch.setattr(core.tempfile, 'mkstemp', mkstemp)
    out = tmp_path / 'ro' / 'run'
    assert main(['train', 'synthetic', '--preset', 'smoke', '--out', str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f'scegg: error: cannot write to {out}: Read-only file system']
    assert not (out / 'config.json').exists()


def test_environment_errors_are_one_line(tmp_path, capsys, monkeypatch):
    "An OSError that escapes the package (here: a full disk under the command) is still one line, exit 2."
    import scegg.cli as cli
    def boom(a): raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / 'x'))
    monkeypatch.setattr(cli, 'cmd_data_synth', boom)
    assert main(['data', 'synth', '--out', str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f'scegg: error: No space left on device ({tmp_path / "x"})'


def test_no_half_written_json(tmp_path):
    "An interruption in the middle of writing leaves the previous file, never a torn one."
    path = tmp_path / 'results.json'
    core.write_json(path, {'a': 1})
    class Boom(Exception): pass
    with pytest.raises(Boom):
        with core.atomic_write(path) as f:
            f.write('{"a": 2, "b": ')
            raise Boom
    assert json.loads(path.read_text()) == {'a': 1} and _no_temp_files(tmp_path)


def test_two_synthetic_variants_keep_their_own_store(finished, monkeypatch):
    "A second synthetic variant (another image list) gets a store of its own; the first is left untouched."
    base, _ = finished
    monkeypatch.setenv('SCEGG_DATA', str(base / 'data'))
    cfg = pipeline.make_config('smoke')
    first = pipeline.ensure_store(pipeline.load_run_data(cfg), cfg)
    before = {p: p.stat().st_mtime_ns for p in Path(first.path).rglob('*')}
    cfg2 = pipeline.make_config('smoke', {'data_options': '{"images_per_class": 5}'})
    second = pipeline.ensure_store(pipeline.load_run_data(cfg2), cfg2)
    assert Path(second.path) != Path(first.path) and len(second) == 8 * 5 and len(first) == 8 * 6
    assert {p: p.stat().st_mtime_ns for p in Path(first.path).rglob('*')} == before


def test_provenance(finished):
    _, r = finished
    pv = r['provenance']
    commit = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert pv['git']['commit'] == commit and len(commit) == 40 and isinstance(pv['git']['dirty'], bool)
    assert pv['versions']['torch'] == torch.__version__ and {'scegg', 'numpy', 'scipy'} <= set(pv['versions'])
    assert pv['device'] == 'cpu' and pv['python'] == '.'.join(map(str, sys.version_info[:3]))
    assert r['seed'] == r['config']['seed'] == 0
    cfg = pipeline.make_config('smoke', {'eggn.epochs': 1})
    import dataclasses
    assert r['config'] == json.loads(json.dumps(dataclasses.asdict(cfg)))          # the full configuration
    assert r['config_hash'] == run_hash(cfg)   # the configuration without its speed-only settings
    assert set(r['protocols']) == {'paper', 'validation'} and all('protocol' in m for m in r['protocols'].values())
    w = r['wall_s']
    assert 0 < w['total_s'] and all(k in w for k in ('features_s', 'validation', 'test'))
    assert 0 < w['test']['eggn_s'] < w['total_s'] and w['test']['scen_stage1_s'] > 0
    assert 'eggn.epochs' in r['differs_from_paper'] and r['caveat']
