"""The whole-run precision switch (`precision=bf16`: extraction, SCEN stages 1-2, the dense pass, stage 3 and the final
classifiers in bfloat16) on real data: accuracy paired against fp32, a control, and whole-run time by stage.

Per seed, through `scegg.pipeline.train` (what `scegg train` runs), in this order:
- `fp32`: the preset as it is (with `threads` set by `--threads`);
- `bf16`: the same with `precision=bf16` (its own bf16 feature store and its own SCEN);
- `fp32_other_eggn_seed` (the control): fp32 with only `eggn.seed` changed (+1), SCEN shared with `fp32` through the
  SCEN cache, so it moves only stage 3's random draws: the spread a run shows from a change of draws alone.
Every run's metrics (CZSL, U, S, H under both protocols), `wall_s` by stage, and the differences bf16 - fp32 and
control - fp32 are written after each run (a killed script resumes: the run folders under `--work` are kept).

    SCEGG_DATA=... python bench/precision_accuracy.py --preset cub-cpu --seeds 3483 3484 3485 --threads 2 \
        --work /work/precision_runs
Writes bench/results/precision_accuracy-<preset>.json. Then, training nothing, the paired summary over seeds (mean and
95 % t interval of each difference) and stage 3's GAN / evaluation split of each run (from the run folders):

    python bench/precision_accuracy.py --preset cub-cpu --summarise --work /work/precision_runs
"""
import argparse, dataclasses, os, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault('SCEGG_PROGRESS', '0')
from _common import machine, RESULTS
import scegg.pipeline as pl
from scegg.config import run_hash
from scegg.core import write_json

p = argparse.ArgumentParser()
p.add_argument('--preset', default='cub-cpu')
p.add_argument('--seeds', type=int, nargs='+', default=[3483, 3484, 3485])
p.add_argument('--threads', type=int, default=2)
p.add_argument('--ways', nargs='+', default=['fp32', 'bf16', 'fp32_other_eggn_seed'])
p.add_argument('--work', help='folder for the run folders and the SCEN cache (kept, for resuming)')
p.add_argument('--summarise', action='store_true',
               help='train nothing: add the paired summary over seeds to the results file and print it')
a = p.parse_args()
out_file = RESULTS / f'precision_accuracy-{a.preset}.json'
METRICS = ('czsl_acc', 'U', 'S', 'H')


def summarise(rows: list) -> dict:
    "Per difference (bf16 - fp32, control - fp32), protocol and metric: seeds, mean and the 95 % t interval over seeds."
    import math
    from scipy import stats
    out = {}
    for key in sorted({k for r in rows for k in r if k.startswith('diff_')}):
        d = [r for r in rows if key in r]
        out[key] = {'seeds': [r['seed'] for r in d]}
        for proto in d[0][key]:
            out[key][proto] = {}
            for m in METRICS:
                v = [r[key][proto][m] for r in d]
                n, mean = len(v), sum(v) / len(v)
                half = (float(stats.t.ppf(0.975, n - 1)) * math.sqrt(sum((x - mean) ** 2 for x in v) / (n - 1)) / math.sqrt(n)
                        if n > 1 else float('nan'))
                out[key][proto][m] = dict(mean=round(mean, 2), ci95=[round(mean - half, 2), round(mean + half, 2)], n=n)
    return out


def gan_seconds(run: Path) -> dict:
    "Stage 3's training seconds per view (the sum of its per-epoch `seconds`; the rest of `eggn_s` is evaluation)."
    import json
    r = json.loads((run / 'results.json').read_text())
    return {view: round(sum(e['seconds'] for e in c), 1) for view, c in r['curves'].items()}


if a.summarise:
    import json
    res = json.loads(out_file.read_text())
    res['summary'] = summarise(res['rows'])
    if a.work:   # the GAN / evaluation split of stage 3's time, from the run folders
        for r in res['rows']:
            for way in a.ways:
                if way in r and (Path(a.work) / f"{way}-{r['seed']}" / 'results.json').exists():
                    r[way]['gan_s'] = gan_seconds(Path(a.work) / f"{way}-{r['seed']}")
    write_json(out_file, res)
    for key, v in res['summary'].items():
        for proto in ('validation', 'paper'):
            print(key, proto, 'seeds', v['seeds'], {m: (s['mean'], s['ci95']) for m, s in v[proto].items()})
    sys.exit(0)
if not a.work: p.error('--work is required unless --summarise')


def metrics(r):
    return {proto: {k: round(100 * float(v), 2) for k, v in r['protocols'][proto].items() if k in METRICS}
            for proto in r['protocols']}


def overrides(way: str, seed: int) -> dict:
    o = {'seed': seed, 'threads': a.threads}
    if way == 'bf16': o['precision'] = 'bf16'
    return o


rows, work = [], Path(a.work)
for seed in a.seeds:
    rec = dict(seed=seed, preset=a.preset)
    for way in a.ways:
        cfg = pl.make_config(a.preset, overrides(way, seed))
        if way == 'fp32_other_eggn_seed':   # after make_config, which ties eggn.seed to seed
            cfg = dataclasses.replace(cfg, eggn=dataclasses.replace(cfg.eggn, seed=seed + 1))
        t = time.perf_counter()
        r = pl.train(cfg, out=work / f'{way}-{seed}', resume=True, scen_cache=work / 'scen_cache')
        rec[way] = dict(metrics=metrics(r), run_hash=run_hash(cfg), wall_s=r.get('wall_s'),
                        seconds_this_call=round(time.perf_counter() - t, 1), threads_used=r.get('threads_used'))
        if 'fp32' in rec and way != 'fp32':
            rec[f'diff_{way}_minus_fp32'] = {proto: {k: round(v - rec['fp32']['metrics'][proto][k], 2) for k, v in m.items()}
                                             for proto, m in rec[way]['metrics'].items()}
        print(seed, way, rec[way]['metrics'], rec[way]['wall_s'], flush=True)
        RESULTS.mkdir(exist_ok=True)
        write_json(out_file, dict(rows=rows + [rec], machine=machine('cpu'),
                                  command='python bench/precision_accuracy.py ' + ' '.join(sys.argv[1:])))
    rows.append(rec)
print('wrote', out_file)
