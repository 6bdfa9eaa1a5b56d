"End to end: `reproduce` on the smoke preset with papermill, its run cache, failure reporting, provenance checks."
import json, os
from pathlib import Path

import pytest

from scegg.core import SceggError
from scegg.reproduce import reproduce, check_table_runs, finished_runs, PAPER_TABLE1


def _failing_notebook(path: Path) -> Path:
    "A notebook with a parameters cell, one fine cell and a failing third cell (index 2)."
    cell = lambda i, src, tags=(): {'cell_type': 'code', 'id': f'c{i}', 'execution_count': None,
                                    'metadata': {'tags': list(tags)}, 'outputs': [], 'source': src}
    nb = {'cells': [cell(0, "preset = 'smoke'\nout_dir = None", ['parameters']), cell(1, 'x = 1'),
                    cell(2, "raise ValueError('deliberate failure')")],
          'metadata': {'kernelspec': {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'},
                       'language_info': {'name': 'python'}},
          'nbformat': 4, 'nbformat_minor': 5}
    path.write_text(json.dumps(nb))
    return path


def test_reproduce_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv('SCEGG_DATA', str(tmp_path / 'data'))
    monkeypatch.setenv('SCEGG_PROGRESS', '0')
    out = tmp_path / 'outputs'
    bad = _failing_notebook(tmp_path / 'broken.ipynb')
    r = reproduce('smoke', out=out, notebooks=['table1', bad], verbose=False)
    # the failing notebook is reported by name and cell, the other still ran
    assert r['failed'] == ['broken'] and not r['ok']
    b = r['notebooks']['broken']
    assert (b['cell'], b['ename']) == (2, 'ValueError') and 'deliberate' in b['evalue']
    assert b['cell_source'].startswith('raise ValueError')
    assert r['notebooks']['table1']['status'] == 'ok'
    d = out / 'smoke'
    for f in ('table1.csv', 'table1.md', 'table1.meta.json', 'table1_headline.md', 'MANIFEST.md',
              'reproduce.json', 'notebooks/table1.ipynb', 'notebooks/broken.ipynb'):
        assert (d / f).is_file(), f
    meta = json.loads((d / 'table1.meta.json').read_text())
    assert meta['axes'] == ['method', 'seed'] and meta['seeds'] == [0] and 'scegg reproduce --preset smoke' in meta['command']
    assert len(meta['runs']) == 2                        # SC-EGG and the baseline, one seed
    assert 'SC-EGG (ours, n=1)' in (d / 'table1.md').read_text()
    assert 'Differs from the paper' in (d / 'table1.md').read_text()
    assert r['runs_trained'] == 2 and r['runs_total'] == 2
    stamps = {p: p.stat().st_mtime_ns for p in finished_runs(d / 'runs')}
    # a second call trains nothing and leaves the finished runs untouched
    r2 = reproduce('smoke', out=out, notebooks=['table1'], verbose=False)
    assert r2['ok'] and r2['runs_trained'] == 0 and r2['runs_total'] == 2
    assert {p: p.stat().st_mtime_ns for p in finished_runs(d / 'runs')} == stamps


def test_check_table_runs_refuses_mismatch():
    def res(seed=0, method='sc-egg', syn=20):
        return {'config_hash': f'{method}{seed}{syn}',
                'config': {'method': method, 'seed': seed, 'scen': {'seed': seed, 'use_lce': True},
                           'eggn': {'seed': seed, 'syn_num': syn}}}
    base = check_table_runs([res(), res(1), res(0, 'tf-vaegan')], axes=('method', 'seed'))
    assert base['eggn.syn_num'] == 20
    with pytest.raises(SceggError, match='eggn.syn_num'):
        check_table_runs([res(), res(1, syn=40)], axes=('method', 'seed'))
    with pytest.raises(SceggError, match='method'):
        check_table_runs([res(), res(0, 'tf-vaegan')], axes=('seed',))


def test_paper_sc_egg_row_consistent():
    for ds, (acc, u, s, h) in PAPER_TABLE1['SC-EGG'].items():
        assert abs(2 * u * s / (u + s) - h) < 0.1, ds
