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
Writes bench/results/precision_accuracy-<preset>.json.
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
p.add_argument('--work', required=True, help='folder for the run folders and the SCEN cache (kept, for resuming)')
a = p.parse_args()
out_file = RESULTS / f'precision_accuracy-{a.preset}.json'
METRICS = ('czsl_acc', 'U', 'S', 'H')


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
