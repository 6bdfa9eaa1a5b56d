"""Accuracy effect of the opt-in bf16 mode (`eggn.bf16=True`: EGGN's and the final classifiers' products in bfloat16).

The same preset, data, SCEN and seed are run twice through `scegg.pipeline.train`, once in fp32 (the default that the
oracle pins) and once with `eggn.bf16=True`; SCEN is trained once and shared (bf16 does not touch it). Everything
else is identical, so the difference in the metrics is bf16's. A third run in fp32 with another EGGN seed (SCEN and
data unchanged, `eggn.seed` + 1) is the control: the spread a run shows from a change of random draws alone.
Usage: python bench/bf16_accuracy.py [--preset synthetic] [--seeds 0 1 2]
Writes bench/results/bf16_accuracy.json (both protocols' metrics per run, stage-3 seconds, machine).
"""
import argparse, dataclasses, os, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault('SCEGG_PROGRESS', '0')
from _common import machine, RESULTS
import scegg.pipeline as pl
from scegg.core import write_json

p = argparse.ArgumentParser()
p.add_argument('--preset', default='synthetic')
p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
p.add_argument('--out', default=str(RESULTS / 'bf16_accuracy.json'))
a = p.parse_args()


def metrics(r):
    return {proto: {k: round(float(v), 4) for k, v in r['protocols'][proto].items() if k in ('czsl_acc', 'U', 'S', 'H')}
            for proto in r['protocols']}


def eggn_seconds(r):
    return round(sum(c.get('seconds', 0) for view in r['curves'].values() for c in view), 1)


rows = []
with tempfile.TemporaryDirectory() as tmp:
    for seed in a.seeds:
        rec = dict(seed=seed, preset=a.preset)
        base = pl.make_config(a.preset, {'seed': seed})
        for name, o in (('fp32', {}), ('bf16', {'bf16': True}), ('fp32_other_eggn_seed', {'seed': base.eggn.seed + 1})):
            cfg = dataclasses.replace(base, eggn=dataclasses.replace(base.eggn, **o))   # (the preset ties eggn.seed to seed)
            t = time.perf_counter()
            r = pl.train(cfg, out=Path(tmp) / f'{name}-{seed}', resume=False, scen_cache=Path(tmp) / 'scen')
            rec[name] = dict(metrics=metrics(r), seconds=round(time.perf_counter() - t, 1), eggn_train_seconds=eggn_seconds(r))
        for other in ('bf16', 'fp32_other_eggn_seed'):
            rec[f'diff_{other}_minus_fp32'] = {proto: {k: round(rec[other]['metrics'][proto][k] - v, 4)
                                                       for k, v in rec['fp32']['metrics'][proto].items()}
                                               for proto in rec['fp32']['metrics']}
        print(rec, flush=True)
        rows.append(rec)
write_json(a.out, dict(rows=rows, machine=machine('cpu'), command='python bench/bf16_accuracy.py ' + ' '.join(sys.argv[1:])))
print('wrote', a.out)
