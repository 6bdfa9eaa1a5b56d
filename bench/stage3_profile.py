"""Where one stage-3 epoch spends its time at `cub-cpu` sizes (D 1280, K 312, hidden 1024, 200 classes), fp32 vs the
opt-in bf16 (`eggn.bf16`): wall time of one epoch on 640 random features (alternating fp32 / bf16, `--rounds` each),
then `torch.profiler` of one bf16 epoch: the share of self CPU time of the top operators.

    python bench/stage3_profile.py [--threads 1] [--rounds 2] [--n 640]
Writes bench/results/stage3_profile.json.
"""
import argparse, sys, time
from pathlib import Path
import torch
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, RESULTS, stage3_epoch_at_cub_cpu_sizes
from scegg.core import write_json

p = argparse.ArgumentParser()
p.add_argument('--threads', type=int, default=1)
p.add_argument('--rounds', type=int, default=2)
p.add_argument('--n', type=int, default=640)
a = p.parse_args()
torch.set_num_threads(a.threads)
one_epoch = stage3_epoch_at_cub_cpu_sizes(a.n)
secs = {'fp32': [], 'bf16': []}
for _ in range(a.rounds):
    for bf in (False, True):
        t = time.perf_counter(); one_epoch(bf); secs['bf16' if bf else 'fp32'].append(round(time.perf_counter() - t, 2))
print('one epoch, s:', secs, flush=True)
from torch.profiler import profile
with profile() as prof: one_epoch(True)
ev = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
total = sum(e.self_cpu_time_total for e in ev)
top = [dict(op=e.key, self_share=round(e.self_cpu_time_total / total, 3), calls=e.count) for e in ev[:12]]
for t in top: print(f"{t['op']:<40} {100 * t['self_share']:5.1f} %  {t['calls']} calls")
RESULTS.mkdir(exist_ok=True)
write_json(RESULTS / 'stage3_profile.json', dict(machine=machine('cpu'), args=vars(a), epoch_s=secs, bf16_top_ops=top,
                                               command='python bench/stage3_profile.py ' + ' '.join(sys.argv[1:])))
