"Reproduce validates first and never mixes old and new outputs; quiet progress; deterministic, self-describing artefacts."
import io, json, os, sys
from pathlib import Path

import numpy as np
import pytest

from scegg.core import SceggError, progress
from scegg import reproduce as R
from scegg.config import REPRO_PRESETS
from scegg.figures import plot_attention, plot_sweep, plot_tsne, save_figure
from scegg.tables import banner, caption


def _nb(path: Path, body: str) -> Path:
    "A notebook with the reproduce parameters cell and one cell `body`."
    cell = lambda i, src, tags=(): {'cell_type': 'code', 'id': f'c{i}', 'execution_count': None,
                                    'metadata': {'tags': list(tags)}, 'outputs': [], 'source': src}
    nb = {'cells': [cell(0, "preset = 'smoke'\nout_dir = None\nstage_dir = None", ['parameters']), cell(1, body)],
          'metadata': {'kernelspec': {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'},
                       'language_info': {'name': 'python'}}, 'nbformat': 4, 'nbformat_minor': 5}
    path.write_text(json.dumps(nb))
    return path


# ---------------------------------------------------------------- item 4: arguments first, outputs only from a finished notebook
@pytest.mark.parametrize('kw,phrase', [(dict(datasets=['nope']), "'nope'"), (dict(device='tpu'), "'tpu'"),
                                       (dict(seeds=[-1]), 'seed'), (dict(seeds=['x']), 'seed'),
                                       (dict(notebooks=['nope']), 'nope')])
def test_reproduce_validates_before_any_notebook(tmp_path, monkeypatch, kw, phrase):
    ran = []
    monkeypatch.setattr(R, 'run_notebook', lambda *a, **k: ran.append(a) or {'status': 'ok', 'seconds': 0})
    with pytest.raises(SceggError, match=phrase): R.reproduce('smoke', out=tmp_path, verbose=False, **kw)
    assert ran == [] and not (tmp_path / 'smoke').exists()


def test_cli_reproduce_bad_dataset_is_one_line(tmp_path, capsys):
    from scegg.cli import main
    assert main(['reproduce', '--preset', 'smoke', '--datasets', 'nope', '--out', str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'nope'" in err[0] and not (tmp_path / 'smoke').exists()


def test_cli_reproduce_runs_only_the_named_notebooks_with_several_seeds(tmp_path, monkeypatch):
    from scegg.cli import main
    seen = []
    def fake(src, dst, params, cwd=None):
        seen.append((Path(src).stem, params['seeds'], params['command']))
        import nbformat; nbformat.write(nbformat.v4.new_notebook(), str(dst))
        return {'status': 'ok', 'seconds': 0}
    monkeypatch.setattr(R, 'run_notebook', fake)
    monkeypatch.setattr(R, '_html', lambda *a, **k: None)
    assert main(['reproduce', '--preset', 'smoke', '--out', str(tmp_path), '--seeds', '3', '4',
                 '--notebooks', 'table1', 'fig6_curves']) == 0
    assert [s[0] for s in seen] == ['table1', 'fig6_curves']
    assert all(s[1] == [3, 4] and '--seeds 3,4' in s[2] for s in seen)


def test_partial_rebuild_keeps_the_other_notebooks_in_reproduce_json(tmp_path, monkeypatch):
    import json
    def fake(src, dst, params, cwd=None):
        import nbformat; nbformat.write(nbformat.v4.new_notebook(), str(dst))
        return {'status': 'error' if Path(src).stem == 'fig6_curves' else 'ok', 'seconds': 0}
    monkeypatch.setattr(R, 'run_notebook', fake)
    monkeypatch.setattr(R, '_html', lambda *a, **k: None)
    R.reproduce('smoke', out=tmp_path, notebooks=['table1', 'fig6_curves'], verbose=False)
    r = R.reproduce('smoke', out=tmp_path, notebooks=['fig4_tsne'], verbose=False)
    assert list(r['notebooks']) == ['fig4_tsne'] and r['ok']                    # the call reports itself
    rep = json.loads((tmp_path / 'smoke' / 'reproduce.json').read_text())
    assert list(rep['notebooks']) == ['table1', 'fig4_tsne', 'fig6_curves']     # the file keeps all, in NOTEBOOKS order
    assert rep['failed'] == ['fig6_curves'] and rep['ok'] is False


def test_failed_notebook_keeps_previous_outputs(tmp_path, monkeypatch):
    monkeypatch.setenv('SCEGG_PROGRESS', '0')
    src = tmp_path / 'mini.ipynb'
    write = "from pathlib import Path\nPath(stage_dir, 'mini.md').write_text('{v}')\nprint('run {v}')\n"
    _nb(src, write.format(v='v1'))
    r = R.reproduce('smoke', out=tmp_path / 'o', notebooks=[src], verbose=False)
    d = tmp_path / 'o' / 'smoke'
    assert r['ok'] and (d / 'mini.md').read_text() == 'v1' and 'run v1' in (d / 'notebooks' / 'mini.ipynb').read_text()
    _nb(src, write.format(v='v2') + "raise ValueError('late failure')\n")
    r = R.reproduce('smoke', out=tmp_path / 'o', notebooks=[src], verbose=False)
    assert r['failed'] == ['mini']
    assert (d / 'mini.md').read_text() == 'v1'                                   # the table of the good run stays
    assert 'run v1' in (d / 'notebooks' / 'mini.ipynb').read_text()               # ... and the notebook that made it
    assert 'late failure' in (d / 'notebooks' / 'failed' / 'mini.ipynb').read_text()
    assert not any(p.name.startswith('.stage') for p in d.iterdir())


def test_interrupt_keeps_finished_notebooks_one_line(tmp_path, monkeypatch, capsys):
    from scegg.cli import main
    calls = []
    def fake(src, dst, params, cwd=None):
        calls.append(src)
        if len(calls) == 2: raise KeyboardInterrupt
        Path(params['stage_dir'], 'first.md').write_text('done')
        import nbformat; nbformat.write(nbformat.v4.new_notebook(), str(dst))
        return {'status': 'ok', 'seconds': 0}
    monkeypatch.setattr(R, 'run_notebook', fake)
    monkeypatch.setattr(R, '_html', lambda *a, **k: None)
    code = main(['reproduce', '--preset', 'smoke', '--out', str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 130 and err == ['scegg: interrupted; finished notebooks kept in ' + str(tmp_path / 'smoke')]
    assert (tmp_path / 'smoke' / 'first.md').read_text() == 'done'


# ---------------------------------------------------------------- item 5: quiet progress off a terminal
def test_progress_off_terminal_is_periodic_lines(monkeypatch):
    monkeypatch.delenv('SCEGG_PROGRESS', raising=False)
    f = io.StringIO()
    for _ in progress(range(5000), desc='work', file=f): pass
    out = f.getvalue()
    assert '\r' not in out and len(out.splitlines()) <= 2 and 'work: 5000/5000' in out.splitlines()[-1]


def test_progress_never_uses_notebook_widgets(monkeypatch):
    import tqdm.auto, tqdm.notebook
    monkeypatch.setattr(tqdm.auto, 'tqdm', tqdm.notebook.tqdm)     # what tqdm.auto picks inside a papermill kernel
    monkeypatch.delenv('SCEGG_PROGRESS', raising=False)
    bar = progress(range(3), file=io.StringIO())
    assert not isinstance(bar, tqdm.notebook.tqdm)
    list(bar)


# ---------------------------------------------------------------- item 5: deterministic artefacts
def test_saved_figure_bytes_are_deterministic(tmp_path):
    import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt
    fig, ax = plt.subplots(); ax.plot([0, 1], [1, 0])
    save_figure(fig, tmp_path / 'a', 'f', {}) if (tmp_path / 'a').mkdir() is None else None
    import time; time.sleep(1.1)
    (tmp_path / 'b').mkdir(); save_figure(fig, tmp_path / 'b', 'f', {})
    for ext in ('pdf', 'png'):
        assert (tmp_path / 'a' / f'f.{ext}').read_bytes() == (tmp_path / 'b' / f'f.{ext}').read_bytes(), ext


def test_executed_notebook_metadata_normalised(tmp_path):
    nb = {'cells': [{'cell_type': 'code', 'id': 'x', 'execution_count': 1, 'source': 'x = 1', 'outputs': [],
                     'metadata': {'papermill': {'duration': 1.2, 'start_time': 't0', 'end_time': 't1', 'status': 'completed',
                                                'exception': False},
                                  'execution': {'iopub.status.busy': 't'}, 'tags': []}}],
          'metadata': {'papermill': {'duration': 3.0, 'start_time': 'a', 'end_time': 'b', 'parameters': {'p': 1},
                                     'version': '2.6.0', 'environment_variables': {}, 'input_path': 'i', 'output_path': 'o'},
                       'language_info': {'name': 'python', 'version': '3.11.9'}, 'widgets': {}},
          'nbformat': 4, 'nbformat_minor': 5}
    p = tmp_path / 'n.ipynb'; p.write_text(json.dumps(nb))
    R.normalise_notebook(p)
    d = json.loads(p.read_text())
    assert d['metadata']['papermill'] == {'parameters': {'p': 1}}
    assert 'version' not in d['metadata']['language_info'] and 'widgets' not in d['metadata']
    assert d['cells'][0]['metadata'] == {'tags': []}


# ---------------------------------------------------------------- item 6: each artefact says what it shows
def _r(m='sc-egg', **diff):
    return {'method': m, 'seed': 0, 'config': {'method': m}, 'caveat': None,
            'differs_from_paper': {'eggn.epochs': [2, 50], **diff}}


def test_banner_is_per_row():
    b = banner([_r(), _r('tf-vaegan', method=['tf-vaegan', 'sc-egg'])], labels=['full model', 'baseline'])
    lines = b.splitlines()
    assert any(l.startswith('> **Differs from the paper (all rows):**') and '`eggn.epochs` = 2 (paper 50)' in l for l in lines), b
    row = [l for l in lines if 'baseline' in l]
    assert len(row) == 1 and "`method` = 'tf-vaegan'" in row[0] and 'full model' not in b.split('baseline')[0].split('all rows')[-1]
    assert not any('full model' in l and 'method' in l for l in lines)


def test_titles_and_captions_say_what_they_show():
    c = caption('fig4_tsne', 'synthetic', 'synthetic', seeds=[0])
    assert 'synthetic (synthetic)' not in c and 'seed 0' in c and 't-SNE' in c
    c5 = caption('fig5_sensitivity', 'CUB-mini', 'cub-mini', seeds=[0])
    assert 'one seed' in c5 and 'best on test' in c5
    assert 'one seed' in caption('table2_ablation', 'synthetic', 'synthetic', seeds=[0])
    assert 'attention' in caption('fig3_attention', 'synthetic', 'synthetic', seeds=[0])


def _figure_text(fig) -> str:
    return ' '.join([fig._suptitle.get_text() if fig._suptitle else ''] +
                    [t.get_text() for ax in fig.axes for t in (ax.title, ax.xaxis.label, ax.yaxis.label)] +
                    [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()] +
                    [t.get_text() for leg in fig.legends for t in leg.get_texts()])


def test_fig4_legend_markers_are_neutral():
    import matplotlib; matplotlib.use('Agg')
    from matplotlib.colors import to_rgba
    rng = np.random.default_rng(0)
    sets = {'space': {'x_real': rng.normal(size=(24, 4)), 'y_real': np.repeat([0, 1, 2, 3], 6),
                      'x_syn': rng.normal(size=(12, 4)), 'y_syn': np.repeat([2, 3], 6), 'unseen': np.array([2, 3])}}
    fig = plot_tsne(sets, 0, title=caption('fig4_tsne', 'synthetic', 'synthetic', seeds=[0]))
    leg = fig.axes[0].get_legend()
    cols = [to_rgba(h.get_markeredgecolor() if hasattr(h, 'get_markeredgecolor') else h.get_edgecolor()[0]) for h in leg.legend_handles]
    assert len(cols) == 3 and all(abs(c[0] - c[1]) < 1e-6 and abs(c[1] - c[2]) < 1e-6 for c in cols), cols   # grey
    assert 'synthetic (synthetic)' not in _figure_text(fig)


def test_fig5_legend_names_protocols_seed_and_default():
    import matplotlib; matplotlib.use('Agg')
    import pandas as pd
    df = pd.DataFrame({'knob': ['eggn.syn_num'] * 2, 'value': [10, 20], 'H': [50., 55.], 'H_std': [np.nan] * 2,
                       'Acc': [60., 61.], 'n': [1, 1]})
    fig = plot_sweep({'validation': df, 'paper': df}, title='t', defaults={'eggn.syn_num': 20}, seeds=[0])
    text = _figure_text(fig)
    assert 'best on test' in text and 'seed 0' in text and 'preset default' in text


def test_fig5_legend_lies_below_the_panels_and_covers_no_point():
    import matplotlib; matplotlib.use('Agg')
    import pandas as pd
    df = pd.DataFrame({'knob': ['eggn.syn_num'] * 2 + ['eggn.guide_seen'] * 2, 'value': [50, 200, .1, 10],
                       'H': [40., 55.] * 2, 'H_std': [np.nan] * 4, 'Acc': [60.] * 4, 'n': [1] * 4})
    fig = plot_sweep({'validation': df, 'paper': df}, title='a long title ' * 8,
                       defaults={'eggn.syn_num': 100, 'eggn.guide_seen': 1}, seeds=[3483])
    fig.canvas.draw()
    assert [ax.get_legend() for ax in fig.axes] == [None, None] and len(fig.legends) == 1
    leg = fig.legends[0].get_window_extent()
    lowest = min(ax.get_tightbbox().y0 for ax in fig.axes)     # the panels with their tick labels and x labels
    assert leg.y1 <= lowest, (leg, lowest)


def test_fig3_has_title_and_labelled_scores(tmp_path):
    import matplotlib; matplotlib.use('Agg')
    import torch
    from PIL import Image
    p = tmp_path / 'a.png'; Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(p)
    class D: image_paths, image_labels, class_names, attribute_names = [str(p)], [0], ['cls'], ['wing', 'beak']
    att = {'alpha': torch.rand(1, 2, 2, 2), 'global_map': torch.rand(1, 2, 2), 'scores': torch.tensor([[.3, .7]])}
    fig = plot_attention(D, att, [0], top=2, title='Fig. 3 title')
    text = _figure_text(fig)
    assert 'Fig. 3 title' in text and 'score 0.70' in text


# ---------------------------------------------------------------- item 7: public functions say presets and shapes
def test_public_functions_have_docstrings():
    import inspect, importlib
    missing = [f'{m}.{n}' for m in ('scegg.pipeline', 'scegg.reproduce', 'scegg.classify', 'scegg.features', 'scegg.data',
                                  'scegg.datasets', 'scegg.fixtures')
               for n in importlib.import_module(m).__all__
               if inspect.isfunction(o := getattr(importlib.import_module(m), n)) and not (o.__doc__ or '').strip()]
    assert missing == []


def test_entry_point_docstrings_name_presets_and_shapes():
    from scegg.config import PRESETS, make_config
    from scegg.pipeline import train, load_run
    from scegg.datasets import load_dataset
    from scegg.features import extract_features, open_store
    for p in PRESETS: assert p in train.__doc__ and p in make_config.__doc__, p
    for p in REPRO_PRESETS: assert p in R.reproduce.__doc__, p
    assert "'protocols'" in train.__doc__ and "'ok'" in R.reproduce.__doc__ and "'eggn'" in load_run.__doc__
    assert '(C, K)' in load_dataset.__doc__ and '(n, D, H*W)' in open_store.__doc__ and 'FeatureStore' in extract_features.__doc__
