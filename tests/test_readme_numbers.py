"""Every README number that the committed files of `outputs/` can give is recomputed from them (issue 22).

A checked claim carries a marker on its line, invisible when the Markdown is rendered:

    -0.2 CZSL [-4.6, 4.2] and -0.5 H [-1.9, 0.8] <!-- check: ci(paired('validation'), 'Acc', 'H') -->

The marker is a Python expression over the loaders below; it gives numbers, and the line (without its markers) must
quote those numbers, one after the other, each rounded as the README rounds it (a value at a rounding boundary of the
files' 3 decimals may go either way). So an edited digit, a number
recomputed differently or a committed file that changed all fail the marker's test. Intervals come from
`scegg.tables.paired_differences`, the function that wrote the `table1_paired_*` files.
"""
from __future__ import annotations
import json, re, subprocess
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scegg.tables import paired_differences, METRICS, LABELS

ROOT = Path(__file__).resolve().parents[1]
CPU = ROOT / 'outputs' / 'cub-cpu'
MINI = ROOT / 'outputs' / 'cub-mini'
# README -> the fewest markers it must hold, so that a README stripped of its markers cannot pass by having none
READMES = {'outputs/cub-cpu/README.md': 101, 'README.md': 12}
MARKER = re.compile(r'(?<!`)<!--\s*check:\s*(.*?)\s*-->')   # one in backticks is an example, not a marker
NUMBER = re.compile(r'(?<![\d.\w])[+-]?\d+(?:\.\d+)?')   # a '-' right after a digit or letter is a range dash, not a sign
READ = set()   # every file a marker read: all must be tracked by git

# ---- loaders: committed files only --------------------------------------------------------------------------------
def _read(path: Path) -> Path:
    READ.add(path.resolve()); return path

@lru_cache(None)
def _csv(path: Path) -> pd.DataFrame: return pd.read_csv(_read(path), index_col=0)

def _seed_rows(df: pd.DataFrame) -> pd.DataFrame: return df[df.index.str.startswith('seed ')]

def paired(protocol: str, vs: str = 'baseline', d: Path = CPU, ds: str = 'CUB-224') -> pd.DataFrame:
    "Per-seed rows of `table1_paired_<ds>_<protocol>.csv` (SC-EGG minus baseline) or `table1_paired_scen_...` (minus SCEN alone)."
    name = f"table1_paired{'_scen' if vs == 'scen' else ''}_{ds}_{protocol}.csv"
    return _seed_rows(_csv(d / name))

def minus(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    "Per-seed a - b of two paired files, paired by seed (e.g. the baseline minus SCEN alone = paired(scen) - paired(baseline))."
    assert list(a.index) == list(b.index), f'different seeds: {list(a.index)} and {list(b.index)}'
    return a - b

def stats(df: pd.DataFrame) -> pd.DataFrame:
    "Mean, std and 95 % t interval of per-seed rows, by the project's own `paired_differences` (one side the rows, the other zero)."
    a = [{'seed': int(s.split()[1]), 'protocols': {'x': {m: r[LABELS[m]] / 100 for m in METRICS}}} for s, r in df.iterrows()]
    b = [{'seed': x['seed'], 'protocols': {'x': {m: 0.0 for m in METRICS}}} for x in a]
    return paired_differences(a, b, 'x')

def ci(df, *cols) -> list:
    "Mean, low, high per column."
    s = stats(df)
    return [v for c in cols for v in (s.loc['mean', c], s.loc['ci95 low', c], s.loc['ci95 high', c])]

def mean(df, *cols) -> list: return [df[c].mean() for c in cols]
def seeds(df, *cols) -> list: return [v for c in cols for v in df[c]]

def _pm(cell: str) -> list: return [float(x) for x in str(cell).split('±')]

def t1(row: str, protocol: str, *cols, std: bool = True, d: Path = CPU) -> list:
    "Table 1's cells (mean ± std as written in table1.csv) of the row whose name starts with `row`."
    df = pd.read_csv(_read(d / 'table1.csv'))
    r = df[df['row'].str.startswith(row)]
    assert len(r) == 1, f'{len(r)} rows of table1.csv start with {row!r}'
    return [v for c in cols for v in _pm(r.iloc[0][f'{protocol}: {c}'])[:2 if std else 1]]

def t2(row: str, *cols, d: Path = CPU, ds: str = 'CUB-224') -> list:
    "Table 2's cells; columns as in the file ('validation: ΔAcc', 'paper CUB: ΔAcc / ΔH', ...)."
    df = pd.read_csv(_read(d / f'table2_ablation_{ds}.csv'), index_col=0, dtype=str)
    assert row in df.index, f'no row {row!r} in table2 ({list(df.index)})'
    return [float(x) for c in cols for x in str(df.loc[row, c]).split('/')]

def f5(protocol: str, knob: str, value: float, metric: str = 'H') -> float:
    "A Fig. 5 point (seed 3483)."
    df = _csv(CPU / 'fig5_sensitivity_CUB-224.csv')
    r = df[(df.protocol == protocol) & (df.knob == knob) & np.isclose(df.value, value)]
    assert len(r) == 1, f'{len(r)} Fig. 5 points for {protocol} {knob}={value}'
    return float(r.iloc[0][metric])

def f5diff(protocol: str, metric: str, knob: str, a: float, b: float) -> float: return f5(protocol, knob, b, metric) - f5(protocol, knob, a, metric)

def scen3483(*cols) -> list:
    "SCEN alone, seed 3483 (`scen_alone_seed3483.json`), in %."
    m = json.loads(_read(CPU / 'scen_alone_seed3483.json').read_text())['metrics']
    return [100 * m[{'Acc': 'czsl_acc'}.get(c, c)] for c in cols]

def seed3483(method: str, protocol: str, *cols) -> list:
    "Seed 3483's Table 1 cells: SCEN alone plus SC-EGG minus SCEN alone; the baseline is SC-EGG minus (SC-EGG minus baseline)."
    sc = [s + d for s, d in zip(scen3483(*cols), paired(protocol, 'scen').loc['seed 3483', list(cols)])]
    if method == 'sc-egg': return sc
    assert method == 'baseline', method
    return [s - d for s, d in zip(sc, paired(protocol).loc['seed 3483', list(cols)])]

def f5row(knob: str, value: float) -> list:
    "A row of the README's Fig. 5 table: H (CZSL) under the validation protocol, then under the paper protocol."
    return [f5(p, knob, value, m) for p in ('validation', 'paper') for m in ('H', 'Acc')]

def neg(*xs) -> list:
    "Signs flipped, for a README that says 'loses 1.8' of a drop of -1.8."
    return [-v for v in _flat(list(xs))]

def half(x: list) -> float:
    "Half the width of an interval [mean, low, high]."
    return (x[2] - x[1]) / 2

def f6(view: str) -> pd.DataFrame: return _csv(CPU / f'fig6_curves_CUB-224_{view}.csv')

def f6diff(view: str, metric: str, e1: int, e2: int) -> list:
    "Smallest and largest over GAN epochs e1..e2 of the mean over seeds of SC-EGG minus the baseline (one number if e1 == e2)."
    df = f6(view)
    p = df.pivot_table(index=['gan_epoch', 'seed'], columns='method', values=metric)
    d = (p['SC-EGG'] - p['TF-VAEGAN baseline']).groupby(level='gan_epoch').mean().loc[e1:e2]
    return [d.iloc[0]] if e1 == e2 else [d.min(), d.max()]

def f6range(view: str, metric: str, epochs) -> list:
    "Smallest and largest, over the given GAN epochs, of the mean over seeds of SC-EGG minus the baseline."
    df = f6(view)
    p = df.pivot_table(index=['gan_epoch', 'seed'], columns='method', values=metric)
    d = (p['SC-EGG'] - p['TF-VAEGAN baseline']).groupby(level='gan_epoch').mean().loc[list(epochs)]
    return [d.min(), d.max()]

def f6all_from(view: str, metric: str, sign: int) -> int:
    "The first GAN epoch from which SC-EGG minus the baseline has this sign in every seed at every later epoch."
    df = f6(view)
    p = df.pivot_table(index=['gan_epoch', 'seed'], columns='method', values=metric)
    ok = ((p['SC-EGG'] - p['TF-VAEGAN baseline']) * sign > 0).groupby(level='gan_epoch').all()
    bad = [e for e, v in ok.items() if not v]
    return (max(bad) + 1) if bad else int(ok.index.min())

def f6at(view: str, method: str, seed: int, epoch: int, *metrics) -> list:
    df = f6(view); r = df[(df.method == method) & (df.seed == seed) & (df.gan_epoch == epoch)]
    assert len(r) == 1; return [float(r.iloc[0][m]) for m in metrics]

def f6mean(view: str, method: str, epoch: int, metric: str) -> float:
    "Mean over seeds of one method's curve at one GAN epoch."
    df = f6(view); return float(df[(df.method == method) & (df.gan_epoch == epoch)][metric].mean())

def f6best(view: str, method: str, seed: int, *metrics) -> list:
    "Best over GAN epochs (at the last classifier epoch, as Fig. 6 holds them)."
    df = f6(view); r = df[(df.method == method) & (df.seed == seed)]
    return [float(r[m].max()) for m in metrics]

def _factor_row(df: pd.DataFrame, row: str, what: str = 'factors.csv') -> pd.Series:
    r = df[df.index.str.startswith(row)]
    assert len(r) == 1, f'{len(r)} rows of {what} start with {row!r}'
    return r.iloc[0]

def fac(row: str, *cols) -> list:
    "The factor study's cells (`factors.csv`: validation view, seed 3483 unless its seeds column says more) of the row starting with `row`."
    r = _factor_row(_csv(CPU / 'factors.csv'), row)
    return [float(r[c]) for c in cols]

def fac_ci(row: str, col: str) -> list:
    "A factor row's 95 % interval cell ('[-5.0, 0.8]') as its two numbers."
    from scegg.experiment import parse_interval
    return list(parse_interval(_factor_row(_csv(CPU / 'factors.csv'), row)[col]))

@lru_cache(None)
def _factor_evidence() -> dict:
    "The committed factors_evidence.json as `scegg.experiment.factor_table` reads it (no git-ignored run folder)."
    from scegg.experiment import factor_evidence, FACTOR_EVIDENCE
    _read(CPU / FACTOR_EVIDENCE)
    return factor_evidence(CPU, run_folders=False)

@lru_cache(None)
def _factor_table(seeds: tuple) -> pd.DataFrame:
    "The factor table over `seeds`, from the committed per-epoch curves (made once per seed set, read by many markers)."
    from scegg.experiment import factor_table
    return factor_table(_factor_evidence(), seeds=list(seeds))

def facseeds(row: str, seeds, *cols) -> list:
    "The factor study's cells over some of its seeds (an interval cell as its two numbers), from the committed per-epoch curves."
    from scegg.experiment import parse_interval
    r = _factor_row(_factor_table(tuple(seeds)), row, f'the factor table of seeds {tuple(seeds)}')
    return [x for c in cols for x in (parse_interval(r[c]) if 'ci95' in c else [float(r[c])])]

def facseed(row: str, seed: int, *cols) -> list:
    "One seed's cells of the factor study (SC-EGG, baseline, diff), from the committed per-epoch curves."
    return facseeds(row, (seed,), *cols)

def facshift(row: str, col: str) -> list:
    """How far a factor moves SC-EGG minus baseline (`col`: 'diff CZSL' or 'diff H') from the reference's, paired by seed
    over the seeds both rows have, from the committed curves: [mean, 95 % t interval low, high, then each seed's shift]."""
    from scipy import stats as st
    seeds = lambda r: [int(s) for s in str(_factor_row(_csv(CPU / 'factors.csv'), r)['seeds']).split()]
    both = [s for s in seeds(row) if s in seeds('cub-cpu (reference)')]
    d = np.array([facseed(row, s, col)[0] - facseed('cub-cpu (reference)', s, col)[0] for s in both])
    half = st.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else np.nan
    return [d.mean(), d.mean() - half, d.mean() + half, *d]

def f4(space: str, *cols) -> list: return [float(_csv(CPU / 'fig4_metrics_CUB-224.csv').loc[space, c]) for c in cols]

NAMESPACE = {k: v for k, v in globals().items() if not k.startswith('_') and callable(v)} | {'CPU': CPU, 'MINI': MINI}

# ---- the markers ----------------------------------------------------------------------------------------------------
def markers(readme: str) -> list:
    "(line number, line text without markers, expression) for every marker of `readme`."
    out = []
    for i, line in enumerate((ROOT / readme).read_text().splitlines(), 1):
        text = MARKER.sub(' ', line)
        out += [(i, text, m.group(1)) for m in MARKER.finditer(line)]
    return out

def _flat(x) -> list:
    if isinstance(x, (list, tuple, np.ndarray, pd.Series)): return [v for y in x for v in _flat(y)]
    return [float(x)]

def quotes(text: str, expected: list) -> bool:
    """Does `text` quote `expected` as consecutive numbers, each the expected value rounded to the quoted decimals?
    The files hold 3 decimals, so a value like -0.850 may be quoted as -0.8 or -0.9; a changed digit fails."""
    found = NUMBER.findall(text)
    def same(q: str, e: float) -> bool:   # e rounded to q's decimals; the files' 3 decimals leave a boundary case open
        step = 10.0 ** -(len(q.split('.')[1]) if '.' in q else 0)
        return abs(float(q) - e) <= step / 2 + min(2e-3, step / 10) + 1e-9
    n = len(expected)
    return any(all(same(q, e) for q, e in zip(found[i:i + n], expected)) for i in range(len(found) - n + 1))

ALL = [(readme, i, text, expr) for readme in READMES for i, text, expr in markers(readme)]

@pytest.mark.parametrize('readme,line,text,expr', ALL, ids=[f'{r}:{i}' for r, i, _, _ in ALL])
def test_readme_number_is_what_the_committed_files_give(readme, line, text, expr):
    expected = _flat(eval(expr, dict(NAMESPACE)))
    assert expected and not any(np.isnan(expected)), f'{readme}:{line}: {expr} gave {expected}'
    assert quotes(text, expected), (f'{readme}:{line} does not quote {[round(e, 3) for e in expected]} '
                                    f'(from {expr}); it says: {text.strip()}')

@pytest.mark.parametrize('readme', list(READMES))
def test_readme_has_its_markers(readme):
    "A README that lost its markers would pass the test above vacuously."
    n = len(markers(readme))
    assert n >= READMES[readme], f'{readme}: {n} check markers, expected at least {READMES[readme]}'

def test_markers_read_committed_files_only():
    for readme, line, text, expr in ALL: _flat(eval(expr, dict(NAMESPACE)))
    assert READ, 'no marker read a file'
    tracked = set(subprocess.run(['git', 'ls-files', '-z', 'outputs'], cwd=ROOT, capture_output=True, text=True,
                                 check=True).stdout.split('\0'))
    untracked = sorted(str(p.relative_to(ROOT)) for p in READ if str(p.relative_to(ROOT)) not in tracked)
    assert not untracked, f'markers read files git does not track: {untracked}'

PAIRED = sorted(p.name for d in (CPU, MINI) for p in d.glob('table1_paired_*.csv'))

@pytest.mark.parametrize('name', PAIRED)
def test_paired_file_summary_is_its_seed_rows(name):
    "A paired file's mean, std and interval rows are what `paired_differences` gives from its own per-seed rows (3 decimals)."
    df = _csv((CPU if 'CUB-224' in name else MINI) / name)
    s = stats(_seed_rows(df))
    for r in ('mean', 'std', 'ci95 low', 'ci95 high'):
        np.testing.assert_allclose(df.loc[r].astype(float), s.loc[r].astype(float), atol=2e-3, err_msg=f'{name}: {r}')

def test_quotes_catches_an_edited_digit():
    line = '| SC-EGG minus baseline | validation | -0.2 [-4.6, 4.2] | 3483-3485 |'
    assert quotes(line, [-0.218, -4.587, 4.151]) and quotes(line, [3483, 3485])
    assert not quotes(line.replace('4.2', '4.3'), [-0.218, -4.587, 4.151])
    assert not quotes(line, [-0.218, 4.151])                     # not consecutive
    assert not quotes('58.1-61.2', [58.1, -61.2]) and quotes('58.1-61.2', [58.1, 61.2])
