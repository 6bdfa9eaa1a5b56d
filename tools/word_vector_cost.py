"""The paired tables of tools/word_vector_cost.sh: CUB-mini with the real word vectors (RUNS/w2v-SEED) against the
fallback from the attribute table (RUNS/attributes-SEED) and, when given, against the variant 'attributes+identity'
(VARIANT/ident-SEED); same preset and seed; fallback minus real, per seed, mean, std and 95 % t interval.

    python tools/word_vector_cost.py RUNS OUT [VARIANT]   # writes OUT/results.json and OUT/table.md
"""
import json, math, sys
from pathlib import Path
import numpy as np
from scipy import stats

runs, out = Path(sys.argv[1]), Path(sys.argv[2])
variant = Path(sys.argv[3]) if len(sys.argv) > 3 else None
METRICS = [('validation', 'czsl_acc'), ('validation', 'H'), ('paper', 'czsl_acc'), ('paper', 'H'),
           ('scen_alone', 'czsl_acc'), ('scen_alone', 'H'),
           ('validation view', 'czsl_acc'), ('validation view', 'H'), ('validation view scen_alone', 'czsl_acc'),
           ('validation view scen_alone', 'H')]   # the validation view's numbers: what a choice between fallbacks may use
LAB = {'czsl_acc': 'CZSL', 'H': 'H'}

def metric(r, p, m, run):
    if p == 'validation view': return 100 * r['protocols']['validation'][{'czsl_acc': 'val_czsl_acc', 'H': 'val_H'}[m]]
    if p == 'validation view scen_alone': return 100 * json.loads((run / 'validation' / 'view.json').read_text())['scen'][m]
    return 100 * (r[p][m] if p == 'scen_alone' else r['protocols'][p][m])

def compare(other_dir, prefix, option):
    pairs = []
    for f in sorted(runs.glob('w2v-*/results.json')):
        s = f.parent.name.split('-', 1)[1]
        g = other_dir / f'{prefix}-{s}' / 'results.json'
        if not g.is_file(): continue
        a, b = json.loads(f.read_text()), json.loads(g.read_text())
        assert a['config']['data_options'] == {} and b['config']['data_options'] == {'word_vectors': option}
        assert {k: v for k, v in a['config'].items() if k != 'data_options'} == {k: v for k, v in b['config'].items() if k != 'data_options'}
        rec = {'seed': int(s), 'wall_min': {'real': round(a['wall_s']['total_s'] / 60, 1), option: round(b['wall_s']['total_s'] / 60, 1)}}
        for p, m in METRICS:
            x, y = metric(a, p, m, f.parent), metric(b, p, m, g.parent)
            rec[f'{p}:{m}'] = {'real': round(x, 2), option: round(y, 2), 'diff': round(y - x, 2)}
        pairs.append(rec)
    summary = {}
    for p, m in METRICS:
        d = np.array([r[f'{p}:{m}']['diff'] for r in pairs])
        n = len(d); sd = float(d.std(ddof=1)) if n > 1 else float('nan')
        half = sd * stats.t.ppf(0.975, n - 1) / math.sqrt(n) if n > 1 else float('nan')
        summary[f'{p}:{m}'] = {'mean': round(float(d.mean()), 2), 'std': round(sd, 2),
                              'ci95': [round(float(d.mean()) - half, 2), round(float(d.mean()) + half, 2)]}
    return {'option': option, 'seeds': [r['seed'] for r in pairs], 'pairs': pairs, 'summary': summary}

def table(c) -> str:
    o = c['option']
    lines = [f"**`--word-vectors {o}` minus the real vectors** (CUB-mini, preset cub-mini, seeds {', '.join(map(str, c['seeds']))}; "
             'percent points; real -> fallback (difference))', '',
             '| seed | ' + ' | '.join(f'{p} {LAB[m]}' for p, m in METRICS) + ' | wall time real / fallback |',
             '|' + '---|' * (len(METRICS) + 2)]
    for r in c['pairs']:
        lines.append(f"| {r['seed']} | " + ' | '.join(f"{r[f'{p}:{m}']['real']:.1f} -> {r[f'{p}:{m}'][o]:.1f} ({r[f'{p}:{m}']['diff']:+.1f})"
                                                   for p, m in METRICS) + f" | {r['wall_min']['real']} / {r['wall_min'][o]} min |")
    S = c['summary']
    lines.append('| mean | ' + ' | '.join(f"{S[f'{p}:{m}']['mean']:+.1f}" for p, m in METRICS) + ' | |')
    lines.append('| 95 % interval | ' + ' | '.join(f"[{S[f'{p}:{m}']['ci95'][0]:+.1f}, {S[f'{p}:{m}']['ci95'][1]:+.1f}]" for p, m in METRICS) + ' | |')
    return '\n'.join(lines) + '\n'

res = [compare(runs, 'attributes', 'attributes')]
if variant is not None: res.append(compare(variant, 'ident', 'attributes+identity'))
out.mkdir(parents=True, exist_ok=True)
cmd = ('tools/word_vector_cost.sh RUNS 3483 3484 3485; for s in 3483 3484 3485; do scegg train CUB-mini --preset cub-mini '
       '--set seed=$s --set \'data_options={"word_vectors": "attributes+identity"}\' --out VARIANT/ident-$s; done; '
       'python tools/word_vector_cost.py RUNS outputs/word-vectors VARIANT')
(out / 'results.json').write_text(json.dumps({'command': cmd, 'comparisons': res}, indent=1) + '\n')
text = '\n'.join(table(c) for c in res)
(out / 'table.md').write_text(text)
print(text)
