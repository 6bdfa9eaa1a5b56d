"End to end: `reproduce` on the smoke preset with papermill, its run cache, failure reporting, provenance checks."
import json, os
from pathlib import Path

import pytest

from scegg.core import SceggError
from scegg.reproduce import reproduce
from scegg.tables import check_table_runs, PAPER_TABLE1
from scegg.runs import finished_runs
from scegg.config import REPRO_PRESETS


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
              'reproduce.json', 'notebooks/table1.ipynb', 'notebooks/failed/broken.ipynb', 'index.html',
              'notebooks/table1.html'):
        assert (d / f).is_file(), f
    meta = json.loads((d / 'table1.meta.json').read_text())
    assert meta['axes'] == ['method', 'seed'] and meta['seeds'] == [0] and 'scegg reproduce --preset smoke' in meta['command']
    assert len(meta['runs']) == 2                        # SC-EGG and the baseline, one seed
    assert 'SC-EGG (ours, n=1)' in (d / 'table1.md').read_text()
    assert 'Differs from the paper' in (d / 'table1.md').read_text()
    assert r['runs_trained'] == 2 and r['runs_total'] == 2
    stamps = {p: p.stat().st_mtime_ns for p in finished_runs(d / 'runs')}
    first = {f: (d / f).read_bytes() for f in ('table1.md', 'table1.csv', 'notebooks/table1.ipynb', 'reproduce.json')}
    # a second call trains nothing and leaves the finished runs untouched
    r2 = reproduce('smoke', out=out, notebooks=['table1'], verbose=False)
    assert r2['ok'] and r2['runs_trained'] == 0 and r2['runs_total'] == 2
    assert {p: p.stat().st_mtime_ns for p in finished_runs(d / 'runs')} == stamps
    # same run cache, same bytes (deterministic artefacts: no timestamps, durations or kernel versions in the artefacts)
    r3 = reproduce('smoke', out=out, notebooks=['table1', bad], verbose=False)
    assert {f: (d / f).read_bytes() for f in first} == first
    _check_report(d)


def _links(page: Path) -> list:
    from html.parser import HTMLParser
    found = []
    class P(HTMLParser):
        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            if tag == 'img': found.append(a['src'])
            if tag == 'a': found.append(a['href'])
    P().feed(page.read_text())
    return found


def _check_report(d: Path):
    "index.html shows Table 1 with its caption, links the HTML notebook, and every link and image resolves."
    import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt
    from scegg.figures import save_figure
    from scegg.reproduce import write_report
    fig, ax = plt.subplots(); ax.plot([0, 1])
    save_figure(fig, d, 'figx', {'caption': 'a test figure', 'notebook': 'table1', 'seeds': [0], 'command': 'c'})
    page = write_report(d)
    text = page.read_text()
    assert 'Table 1 on synthetic' in text and 'a test figure' in text and 'scegg reproduce --preset smoke' in text
    links = _links(page)
    assert 'figx.png' in links and 'notebooks/table1.html' in links and 'notebooks/failed/broken.ipynb' in links
    assert all((d / l).is_file() for l in links if not l.startswith(('http', '#'))), links


def _browser():
    import shutil
    return next((b for b in ('chromium', 'chromium-browser', 'google-chrome') if shutil.which(b)), None)


@pytest.mark.skipif(_browser() is None, reason='no headless browser (apt-get install chromium) to load index.html')
def test_report_loads_in_headless_browser(tmp_path):
    import subprocess
    from scegg.figures import save_figure
    from scegg.tables import save_table
    from scegg.reproduce import write_report
    import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt
    import pandas as pd
    fig, ax = plt.subplots(); ax.plot([0, 1])
    save_figure(fig, tmp_path, 'fig5_x', {'caption': 'Fig. 5 test', 'notebook': 'fig5_sensitivity', 'seeds': [0]})
    save_table(pd.DataFrame({'a': [1.5]}), tmp_path, 'table1', {'caption': 'Table 1 test', 'notebook': 'table1', 'seeds': [0, 1]})
    page = write_report(tmp_path)
    out = subprocess.run([_browser(), '--headless', '--no-sandbox', '--disable-gpu', '--allow-file-access-from-files',
                          '--dump-dom', page.as_uri()], capture_output=True, text=True, timeout=60)
    dom = out.stdout
    assert 'Fig. 5 test' in dom and 'Table 1 test' in dom and '<img src="fig5_x.png"' in dom, out.stderr[-2000:]
    assert '<td>1.5</td>' in dom
    assert all((tmp_path / l).is_file() for l in _links(page) if not l.startswith(('http', '#')))


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


def test_cached_only_leaves_out_and_names_the_runs_not_yet_trained(tmp_path, monkeypatch):
    "`cached_only` trains nothing: Table 2 and Fig. 5 render from the finished runs and name the rest; Table 1 refuses."
    from scegg.experiment import Experiment, ablation_experiment, sweep_experiment, table1_experiment
    from scegg.config import make_config
    monkeypatch.setenv('SCEGG_DATA', str(tmp_path / 'data'))
    monkeypatch.setenv('SCEGG_PROGRESS', '0')
    monkeypatch.setitem(REPRO_PRESETS, 'smoke', {**REPRO_PRESETS['smoke'], 'n_seeds': 2, 'ablation_all_seeds': ('w/o L_LCE',)})
    out = str(tmp_path / 'smoke')
    full = Experiment('smoke', out)
    s0, s1 = full.seed_list('synthetic')
    for s in (s0, s1): full.run('synthetic', {'seed': s})                             # only the full model is trained
    before = finished_runs(full.runs)
    ex = Experiment('smoke', out, cached_only=True)
    ab = ablation_experiment(ex)['synthetic']
    t = ab['table']
    assert t.loc['full model', 'n'] == 2 and (t.drop('full model')['n'] == 0).all()
    assert (t.drop('full model')['validation: ΔH'] == '-').all() and t.loc['full model', 'validation: H'] != '-'
    assert f'w/o L_LCE (seeds {s0}, {s1})' in ab['missing'] and f'MLP instead of mean compression at run time (seed {s0})' in ab['missing']
    assert 'seed' in ab['axes'] and ab['seeds'] == [s0, s1]
    sw = sweep_experiment(ex)['synthetic']
    defaults = {k: v for k, v in sw['defaults'].items()}
    v = sw['validation']
    for k, vals in ex.spec['sweeps'].items():   # exactly the points equal to the preset's own value are drawn
        assert set(v[v.knob == k].value) == {x for x in vals if x == defaults[k]}
        assert all(f'{k} = {x}' in sw['missing'] for x in vals if x != defaults[k])
    assert finished_runs(ex.runs) == before       # nothing was trained
    assert ab['missing_md'] == f"\n\n**{ab['missing']}**"
    with pytest.raises(SceggError, match='not finished in the run cache'):
        table1_experiment(ex)
    # finished_run: the results of this very configuration, else None (a results.json of another one does not count)
    from scegg.runs import finished_run, run_dir
    from scegg.core import write_json, read_json
    tp, o = ex.train_preset('synthetic'), {**ex.spec.get('overrides', {}), 'seed': s0}
    r = finished_run(tp, o, ex.runs)
    assert r['seed'] == s0 and r['protocols'] == read_json(Path(r['run_dir']) / 'results.json')['protocols']
    other = {**o, 'method': 'tf-vaegan'}
    d = run_dir(ex.runs, make_config(tp, other)); d.mkdir(parents=True)
    write_json(d / 'results.json', {**r, 'config_hash': 'not-this-one'})
    assert finished_run(tp, other, ex.runs) is None
    assert ex.run('synthetic', {'method': 'tf-vaegan', 'seed': s0}, optional=True) is None


def test_a_one_seed_ablation_row_is_compared_with_the_full_model_of_its_seed():
    from scegg.tables import ablation_table
    res = lambda seed, acc, h: {'seed': seed, 'protocols': {p: {'czsl_acc': acc, 'U': h, 'S': h, 'H': h} for p in ('validation', 'paper')}}
    t = ablation_table({'full model': [res(1, .60, .50), res(2, .70, .40)], 'w/o L_LCE': [res(2, .65, .38)],
                        'w/o L_GCE': [res(1, .50, .45), res(2, .60, .35)]})
    assert t.loc['full model', 'validation: H'] == '45.0'           # the mean over both seeds
    assert t.loc['w/o L_LCE', 'validation: ΔAcc'] == '-5.0' and t.loc['w/o L_LCE', 'validation: ΔH'] == '-2.0'   # vs seed 2: 70 / 40
    assert t.loc['w/o L_GCE', 'paper: ΔAcc'] == '-10.0' and t.loc['w/o L_GCE', 'paper: ΔH'] == '-5.0'           # vs both seeds
