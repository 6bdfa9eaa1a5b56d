"""Many runs at once without Slurm: two workers asking for the same run train it once; `--jobs N` (a process pool)
trains a reproduction's missing runs and renders from the cache. (`tests/test_slurm.py` runs the Slurm executor.)"""
import json, os, subprocess, sys
from pathlib import Path

import pytest

from scegg.config import make_config, run_hash
from scegg.pipeline import load_run_data
from scegg.reproduce import reproduce

ROOT = Path(__file__).resolve().parents[1]

WORKER = """
import json, sys
from scegg.cluster import run_job
from scegg.config import make_config
print(json.dumps(run_job(make_config('smoke', {'seed': 5}), sys.argv[1], poll=0.2)), flush=True)
"""


def test_two_workers_on_one_run_train_it_once(tmp_path):
    "Two submissions of the same run (two jobs, two nodes, here two processes) on one run cache: one trains, one reuses."
    load_run_data(make_config('smoke', {'seed': 5}))   # the benchmark exists before the workers start (as train_runs does)
    env = {**os.environ, 'PYTHONPATH': str(ROOT), 'OMP_NUM_THREADS': '1', 'SCEGG_PROGRESS': '0'}
    ps = [subprocess.Popen([sys.executable, '-c', WORKER, str(tmp_path / 'runs')], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, env=env) for _ in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in ps]
    assert all(p.returncode == 0 for p in ps), outs
    res = [json.loads(o.strip().splitlines()[-1]) for o in outs]
    assert res[0] == res[1]
    run = Path(res[0]['run_dir'])
    assert run.name == run_hash(make_config('smoke', {'seed': 5}))
    events = [json.loads(l) for l in (run / 'events.jsonl').read_text().splitlines()]
    assert len([e for e in events if e.get('stage') == 'run' and 'done' not in e]) == 1, 'trained twice'
    assert not (run / '.scegg.lock').exists()


def test_jobs_pool_trains_then_renders_from_the_cache(tmp_path):
    r = reproduce('smoke', out=tmp_path, notebooks=['table1'], jobs=2, verbose=False)
    assert r['ok'] and r['notebooks']['table1']['status'] == 'ok'
    assert len(list((tmp_path / 'smoke' / 'runs').glob('*/results.json'))) == 2
    assert (tmp_path / 'smoke' / 'table1.md').exists()
    # the same again: nothing left to train, nothing submitted
    r2 = reproduce('smoke', out=tmp_path, notebooks=['table1'], jobs=2, verbose=False)
    assert r2['ok'] and r2['runs_trained'] == 0
    # a sequential rebuild from the same cache writes the same bytes, executed notebooks included (issue 29: the
    # executed notebooks once recorded `cached_only = True` under --jobs and False without)
    d = tmp_path / 'smoke'
    files = lambda: {f.relative_to(d): f.read_bytes() for f in d.rglob('*') if f.is_file() and 'runs' not in f.parts}
    pooled = files()
    r3 = reproduce('smoke', out=tmp_path, notebooks=['table1'], verbose=False)
    assert r3['ok'] and r3['runs_trained'] == 0
    seq = files()
    assert sorted(pooled) == sorted(seq)
    assert [str(f) for f in pooled if pooled[f] != seq[f]] == []


def test_bad_executor_settings_are_refused_before_anything_is_written(tmp_path):
    from scegg.core import SceggError
    for kw, words in (({'executor': 'kubernetes'}, 'executor'), ({'jobs': 0}, 'jobs'),
                      ({'executor': 'slurm', 'slurm': {'time': 'soon'}}, 'Slurm time'),
                      ({'executor': 'slurm', 'slurm': {'sbatch': ['-A x']}}, 'long form')):
        with pytest.raises(SceggError, match=words): reproduce('smoke', out=tmp_path, verbose=False, **kw)
    assert not (tmp_path / 'smoke').exists()


def test_a_run_folder_mid_write_by_another_worker_is_not_foreign(tmp_path):
    """The race the two-worker test hit now and then: worker A holds the lock and is writing the run marker; worker B,
    checking the folder before it asks for the lock, saw only A's temporaries and called the folder not scegg's."""
    from scegg.runs import _check_out_folder, RUN_MARKER
    from scegg.core import LOCK_NAME, SceggError
    out = tmp_path / 'run'; out.mkdir()
    (out / f'.{RUN_MARKER}.o1f6axm3.tmp').write_text('{')       # atomic_write's temporary of the marker
    (out / f'{LOCK_NAME}.vm-123-abcdef01.tmp').write_text('{}')  # file_lock's private file before its hard link
    (out / LOCK_NAME).write_text('{}')
    _check_out_folder(out)   # no error: all of it is scegg's own
    (out / 'notes.txt').write_text('mine')
    with pytest.raises(SceggError, match='not a scegg run folder'): _check_out_folder(out)
