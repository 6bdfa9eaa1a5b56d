"""bf16 weights cast once per optimiser step (`scegg.eggn.CastLinear`) against autocast's cast at every call: one
stage-3 epoch at `cub-cpu` sizes (D 1280, K 312, hidden 1024, 200 classes) on random features, fp32, bf16 with a cast
at every call (`CastLinear.forward` patched to `nn.Linear.forward`: the code before the change) and bf16 cast once,
interleaved over `--rounds` (wall and process CPU time); whether both bf16 variants end with the same weights bit for bit; then `torch.profiler`
of one cast-once epoch (share of self CPU time of the top operators).

    python bench/stage3_casts.py [--threads 1] [--rounds 3] [--n 640]
Writes bench/results/stage3_casts.json.
"""
import argparse, dataclasses, sys, time
from pathlib import Path
from unittest import mock
import torch
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, RESULTS
from scegg.core import write_json
from scegg.eggn import train_eggn, CastLinear
from scegg.config import make_config

p = argparse.ArgumentParser()
p.add_argument('--threads', type=int, default=1)
p.add_argument('--rounds', type=int, default=3)
p.add_argument('--n', type=int, default=640)
a = p.parse_args()
torch.set_num_threads(a.threads)
cfg0 = make_config('cub-cpu').eggn
D, K, C = 1280, 312, 200
g = torch.Generator().manual_seed(0)
x = torch.rand(a.n, D, generator=g); y = torch.arange(a.n) % 150
att = torch.nn.functional.normalize(torch.rand(C, K, generator=g), dim=1)
seen, unseen = torch.arange(150), torch.arange(150, 200)
guide = torch.nn.Sequential(torch.nn.Linear(D, 1024), torch.nn.LeakyReLU(0.01), torch.nn.Linear(1024, C))

def one_epoch(variant):
    cfg = dataclasses.replace(cfg0, epochs=1, bf16=variant != 'fp32')
    if variant != 'bf16 cast at every call': return train_eggn(x, y, att, seen, unseen, cfg, guide=guide)
    with mock.patch.object(CastLinear, 'forward', torch.nn.Linear.forward): return train_eggn(x, y, att, seen, unseen, cfg, guide=guide)

variants = ('fp32', 'bf16 cast at every call', 'bf16 cast once per step')
secs, cpu, last = {v: [] for v in variants}, {v: [] for v in variants}, {}
for _ in range(a.rounds):
    for v in variants:
        t, c = time.perf_counter(), time.process_time()
        last[v] = one_epoch(v).model.state_dict()
        secs[v].append(round(time.perf_counter() - t, 2)); cpu[v].append(round(time.process_time() - c, 2))
print('one epoch, wall s:', secs, '\nprocess CPU s:', cpu, flush=True)
same = all(torch.equal(w, last['bf16 cast at every call'][k]) for k, w in last['bf16 cast once per step'].items())
print('bf16 variants give the same weights bit for bit:', same)
from torch.profiler import profile
with profile() as prof: one_epoch('bf16 cast once per step')
ev = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
total = sum(e.self_cpu_time_total for e in ev)
top = [dict(op=e.key, self_share=round(e.self_cpu_time_total / total, 3), calls=e.count) for e in ev[:12]]
for t in top: print(f"{t['op']:<40} {100 * t['self_share']:5.1f} %  {t['calls']} calls")
med = {k: {v: sorted(s)[len(s) // 2] for v, s in d.items()} for k, d in (('wall', secs), ('cpu', cpu))}
RESULTS.mkdir(exist_ok=True)
write_json(RESULTS / 'stage3_casts.json', dict(machine=machine('cpu'), args=vars(a), epoch_s=secs, epoch_cpu_s=cpu, median_s=med,
                                             bit_identical=same, cast_once_top_ops=top,
                                             command='python bench/stage3_casts.py ' + ' '.join(sys.argv[1:])))
