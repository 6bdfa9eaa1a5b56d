"""The paired table of tools/word_vector_cost.sh: CUB-mini with the real word vectors (w2v-SEED) and with vectors from
the attribute table (attributes-SEED), same preset and seed; fallback minus real, per seed and on average.

    python tools/word_vector_cost.py RUNS OUT      # RUNS: the folder of word_vector_cost.sh; writes OUT/results.json, OUT/table.md
"""
import json, sys
from pathlib import Path
import numpy as np

runs, out = Path(sys.argv[1]), Path(sys.argv[2])
rows, seeds = [], []
for f in sorted(runs.glob('w2v-*/results.json')):
    s = f.parent.name.split('-', 1)[1]
    g = runs / f'attributes-{s}' / 'results.json'
    if not g.is_file(): continue
    a, b = json.loads(f.read_text()), json.loads(g.read_text())
    assert a['config']['data_options'] == {} and b['config']['data_options'] == {'word_vectors': 'attributes'}
    rec = {'seed': int(s)}
    for p in ('validation', 'paper'):
        for m in ('czsl_acc', 'H', 'U', 'S'):
            x, y = 100 * a['protocols'][p][m], 100 * b['protocols'][p][m]
            rec[f'{p}:{m}'] = {'w2v': round(x, 2), 'attributes': round(y, 2), 'diff': round(y - x, 2)}
    for k, r in (('scen_alone', 'scen_alone'),):
        for m in ('czsl_acc', 'H'):
            x, y = 100 * a[r][m], 100 * b[r][m]
            rec[f'{k}:{m}'] = {'w2v': round(x, 2), 'attributes': round(y, 2), 'diff': round(y - x, 2)}
    rec['wall_s'] = {'w2v': round(a['wall_s']['total_s']), 'attributes': round(b['wall_s']['total_s'])}
    rows.append(rec); seeds.append(int(s))
assert rows, f'no finished pair in {runs}'
keys = [k for k in rows[0] if ':' in k]
mean = {k: round(float(np.mean([r[k]['diff'] for r in rows])), 2) for k in keys}
out.mkdir(parents=True, exist_ok=True)
(out / 'results.json').write_text(json.dumps({'seeds': seeds, 'pairs': rows, 'mean_diff': mean,
                                              'command': 'tools/word_vector_cost.sh RUNS ' + ' '.join(map(str, seeds)) +
                                                         ' && python tools/word_vector_cost.py RUNS outputs/word-vectors'},
                                             indent=1) + '\n')
lab = {'czsl_acc': 'CZSL', 'H': 'H', 'U': 'U', 'S': 'S'}
cols = [k for k in keys if k.split(':')[1] in ('czsl_acc', 'H')]
head = '| seed | ' + ' | '.join(f"{k.split(':')[0]} {lab[k.split(':')[1]]}: real -> table (diff)" for k in cols) + ' | wall time real / table |'
lines = [head, '|' + '---|' * (len(cols) + 2)]
for r in rows:
    lines.append(f"| {r['seed']} | " + ' | '.join(f"{r[k]['w2v']:.1f} -> {r[k]['attributes']:.1f} ({r[k]['diff']:+.1f})" for k in cols)
                 + f" | {r['wall_s']['w2v'] / 60:.1f} / {r['wall_s']['attributes'] / 60:.1f} min |")
lines.append('| mean diff | ' + ' | '.join(f'{mean[k]:+.1f}' for k in cols) + ' | |')
(out / 'table.md').write_text('\n'.join(lines) + '\n')
print('\n'.join(lines))
