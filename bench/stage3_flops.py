"""How near the machine's rate stage 3's matrix products run: one stage-3 epoch at `cub-cpu` sizes (D 1280, K 312,
hidden 1024, 200 classes, 640 random features), fp32 and the opt-in bf16, under `torch.profiler(with_flops=True)`:
the products' (`mm`, `addmm`) GFLOP and self time, their rate and share of the epoch's self CPU time, against a
2048 x 2048 x 2048 `torch.mm` probe of each dtype in the same process.

    python bench/stage3_flops.py [--threads 1] [--n 640]
Writes bench/results/stage3_flops.json.
"""
import argparse, sys, time
from pathlib import Path
import torch
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, RESULTS, stage3_epoch_at_cub_cpu_sizes
from scegg.core import write_json
from torch.profiler import profile

p = argparse.ArgumentParser()
p.add_argument('--threads', type=int, default=1)
p.add_argument('--n', type=int, default=640)
a = p.parse_args()
torch.set_num_threads(a.threads)
epoch = stage3_epoch_at_cub_cpu_sizes(a.n)
res = {}
for name, dt in (('fp32', torch.float32), ('bf16', torch.bfloat16)):
    one = lambda: epoch(name == 'bf16')
    one()
    t = time.perf_counter(); one(); wall = time.perf_counter() - t
    with profile(with_flops=True) as prof: one()
    ev = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in ev)
    mm = [e for e in ev if e.key in ('aten::mm', 'aten::addmm')]
    fl, us = sum(e.flops for e in mm), sum(e.self_cpu_time_total for e in mm)
    A, B = torch.randn(2048, 2048).to(dt), torch.randn(2048, 2048).to(dt); A @ B
    t = time.perf_counter(); [A @ B for _ in range(5)]; probe = 2 * 2048 ** 3 * 5 / (time.perf_counter() - t) / 1e9
    res[name] = dict(epoch_wall_s=round(wall, 2), product_gflop=round(fl / 1e9, 1), product_s=round(us / 1e6, 2),
                     product_gflops=round(fl / us / 1e3), product_share_of_self_cpu=round(us / total, 2),
                     probe_gflops=round(probe), product_rate_of_probe=round(fl / us / 1e3 / probe, 2),
                     products_at_probe_rate_s=round(fl / 1e9 / probe, 2))
    print(name, res[name], flush=True)
RESULTS.mkdir(exist_ok=True)
write_json(RESULTS / 'stage3_flops.json', dict(machine=machine('cpu'), args=vars(a), **res,
                                             command='python bench/stage3_flops.py ' + ' '.join(sys.argv[1:])))
