"""`scegg reproduce` writes one small committed evidence file per run it used (issue 22): what they hold, that they
recompute the paired tables, that they are the same bytes when written again, and that git does not ignore them."""
import json, os, shutil, subprocess
from pathlib import Path

import pandas as pd
import pytest

os.environ.setdefault('SCEGG_PROGRESS', '0')
from scegg.reproduce import reproduce, write_evidence
from scegg.tables import EVIDENCE_DIR, PROTOCOLS, read_evidence, paired_differences
from scegg.config import make_config, effective_data_options, REPRO_PRESETS

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def smoke_repro(tmp_path_factory):
    "Table 1 of a smoke-size reproduction with two seeds (four runs), so that the paired tables have a 95 % interval."
    base = tmp_path_factory.mktemp('evidence')
    old = os.environ.get('SCEGG_DATA'); os.environ['SCEGG_DATA'] = str(base / 'data')
    try: r = reproduce('smoke', out=base / 'outputs', notebooks=['table1'], seeds=[0, 1], verbose=False)
    finally:
        if old is None: os.environ.pop('SCEGG_DATA', None)
        else: os.environ['SCEGG_DATA'] = old
    assert r['ok'], r
    return base / 'outputs' / 'smoke'


def _keys(x, found=None):
    found = set() if found is None else found
    if isinstance(x, dict):
        for k, v in x.items(): found.add(k); _keys(v, found)
    elif isinstance(x, list):
        for v in x: _keys(v, found)
    return found


def _strings(x):
    if isinstance(x, dict): return [s for v in x.values() for s in _strings(v)]
    if isinstance(x, list): return [s for v in x for s in _strings(v)]
    return [x] if isinstance(x, str) else []


def test_one_small_evidence_file_per_run_the_tables_read(smoke_repro):
    d = smoke_repro
    used = {h for p in d.glob('*.meta.json') for h in json.loads(p.read_text())['runs']}
    files = sorted((d / EVIDENCE_DIR).glob('*.json'))
    assert len(used) == 4 and {p.stem for p in files} == used
    cfg = make_config('smoke', REPRO_PRESETS['smoke']['overrides'])
    epochs = cfg.eggn.epochs
    for p in files:
        assert p.stat().st_size < 100_000, p
        e = json.loads(p.read_text())
        assert set(e) == {'run_hash', 'flat_config', 'data_options', 'results', 'views'} and e['run_hash'] == p.stem
        assert e['data_options'] == effective_data_options(cfg) == {'preset': 'smoke', 'holdout': 0.2, 'seed': 0,
                                                                   'test_share': 0.2, 'val_unseen_share': 1 / 3}
        assert e['flat_config']['eggn.epochs'] == epochs and e['flat_config']['method'] in ('sc-egg', 'tf-vaegan')
        assert set(e['views']) == {'validation', 'test'} and all(len(v['curves']) == epochs for v in e['views'].values())
        assert {'czsl_acc', 'H', 'loss_D'} <= set(e['views']['test']['curves'][0])
        assert not {'wall_s', 'seconds', 'time', 'config', 'curves'} & set(e['results'])
        assert not {'wall_s', 'seconds', 'time'} & _keys(e)
        assert not [s for s in _strings(e) if s.startswith('/') or s.endswith('.pt')]
        assert p.read_text() == json.dumps(e, indent=1, sort_keys=True) + '\n'   # sorted keys


@pytest.mark.parametrize('protocol', PROTOCOLS)
def test_evidence_recomputes_the_paired_tables(smoke_repro, protocol):
    "The paired differences and 95 % intervals of table1_paired_*.csv, from the evidence files alone (no run cache)."
    d = smoke_repro
    ev = read_evidence(d)
    by = {m: [r for r in ev if r['method'] == m] for m in ('sc-egg', 'tf-vaegan')}
    assert [len(v) for v in by.values()] == [2, 2]
    for name, diff in ((f'table1_paired_synthetic_{protocol}', paired_differences(by['sc-egg'], by['tf-vaegan'], protocol)),
                       (f'table1_paired_scen_synthetic_{protocol}',
                        paired_differences(by['sc-egg'], by['sc-egg'], protocol, kind_b='scen_alone'))):
        shown = pd.read_csv(d / f'{name}.csv', index_col=0)
        assert list(shown.index) == ['seed 0', 'seed 1', 'mean', 'std', 'ci95 low', 'ci95 high']
        assert shown.loc['ci95 low'].notna().all()   # two seeds: an interval
        pd.testing.assert_frame_equal(diff.round(3), shown, check_exact=False, atol=1e-9, rtol=0)


def test_evidence_files_are_the_same_bytes_when_written_again(smoke_repro, tmp_path):
    d = tmp_path / 'smoke'
    shutil.copytree(smoke_repro, d, ignore=shutil.ignore_patterns('notebooks', '.scegg.lock'))
    first = {p.name: p.read_bytes() for p in (d / EVIDENCE_DIR).glob('*.json')}
    assert len(first) == 4
    write_evidence(d)
    assert {p.name: p.read_bytes() for p in (d / EVIDENCE_DIR).glob('*.json')} == first
    shutil.rmtree(d / EVIDENCE_DIR)
    write_evidence(d)   # from nothing: the same bytes
    assert {p.name: p.read_bytes() for p in (d / EVIDENCE_DIR).glob('*.json')} == first


def test_git_keeps_evidence_files_and_ignores_the_run_cache():
    ignored = lambda f: subprocess.run(['git', 'check-ignore', '-q', '--no-index', f], cwd=ROOT).returncode == 0
    for preset in ('synthetic', 'cub-mini', 'cub-cpu'):
        assert not ignored(f'outputs/{preset}/{EVIDENCE_DIR}/0123456789abcdef.json')
        assert ignored(f'outputs/{preset}/runs/0123456789abcdef/results.json')


def test_committed_factor_table_is_what_its_committed_evidence_gives(tmp_path):
    "outputs/cub-cpu/factors.{csv,md} rebuild from factors_evidence.json alone (a fresh clone has no factor run folders)."
    from scegg.experiment import write_factor_outputs, FACTOR_EVIDENCE
    src = ROOT / 'outputs' / 'cub-cpu'
    shutil.copy(src / FACTOR_EVIDENCE, tmp_path)
    cmd = json.loads((src / 'factors.meta.json').read_text())['command']
    df = write_factor_outputs(tmp_path, command=cmd)
    assert len(df) >= 2 and df.index[0] == 'cub-cpu (reference)'
    for f in ('factors.csv', 'factors.md', 'factors.meta.json', FACTOR_EVIDENCE):
        assert (tmp_path / f).read_text() == (src / f).read_text(), f'{f} differs from what its evidence rebuilds'
    # every point is its curve's last epoch, not a stored number: edit one curve and the table follows
    ev = json.loads((tmp_path / FACTOR_EVIDENCE).read_text())
    h = next(k for k, r in ev['runs'].items() if r['overrides'] == {'method': 'sc-egg', 'seed': 3483})
    was = 100 * max(ev['runs'][h]['curves'][-1]['H'])
    ev['runs'][h]['curves'][-1]['H'] = [0.0] * len(ev['runs'][h]['curves'][-1]['H'])
    (tmp_path / FACTOR_EVIDENCE).write_text(json.dumps(ev))
    n = len(df.loc['cub-cpu (reference)', 'seeds'].split())   # the row is a mean over its seeds
    after = write_factor_outputs(tmp_path, command=cmd).loc['cub-cpu (reference)', 'SC-EGG H']
    assert abs(after - (df.loc['cub-cpu (reference)', 'SC-EGG H'] - was / n)) < 1e-9
