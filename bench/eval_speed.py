"""Time one GAN epoch's evaluation (both final classifiers, 25 epochs each) at CUB's sizes.

CUB: 150 seen / 50 unseen classes, K = 312, D = 2048, syn_num 300, 7,057 trainval, 1,764 test_seen,
2,967 test_unseen; classifier input [x, Dec(x), Dec_hidden(x)] = 2048 + 312 + 4096 columns.
Random features stand in for real ones: the cost does not depend on the values.
Usage: python bench/eval_speed.py [--device cpu] [--no-transform] [--hidden 4096] [--threads 1 2]
Writes bench/results/eval_speed.json (one row per thread count, with machine info and load average).
"""
import argparse, os, sys, time
from pathlib import Path
import torch
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, RESULTS
from scegg.core import write_json
from scegg.classify import zsl_curves
from scegg.eggn import EGGNConfig, EGGN

p = argparse.ArgumentParser()
p.add_argument('--device', default='cpu')
p.add_argument('--no-transform', action='store_true')
p.add_argument('--hidden', type=int, default=4096)
p.add_argument('--threads', type=int, nargs='+', default=[1, 2])
p.add_argument('--out', default=str(RESULTS / 'eval_speed.json'))
a = p.parse_args()
g = torch.Generator().manual_seed(0)
C_s, C_u, K, D, syn, n_tv, n_ts, n_tu = 150, 50, 312, 2048, 300, 7057, 1764, 2967
seen, unseen = torch.arange(C_s), torch.arange(C_s, C_s + C_u)
rand = lambda n: torch.rand(n, D, generator=g)
x_syn, y_syn = rand(C_u * syn), unseen.repeat_interleave(syn)
x_tv, y_tv = rand(n_tv), seen[torch.randint(C_s, (n_tv,), generator=g)]
x_ts, y_ts = rand(n_ts), seen[torch.randint(C_s, (n_ts,), generator=g)]
x_tu, y_tu = rand(n_tu), unseen[torch.randint(C_u, (n_tu,), generator=g)]
model = EGGN(EGGNConfig(hidden=a.hidden), D=D, K=K).to(a.device)
tf = None if a.no_transform else model.transform
rows = []
for threads in a.threads:
    torch.set_num_threads(threads)
    if a.device.startswith('cuda'): torch.cuda.synchronize()
    t = time.perf_counter()
    c = zsl_curves(x_syn, y_syn, x_tv, y_tv, x_ts, y_ts, x_tu, y_tu, seen, unseen, lr=1e-3, epochs=25,
                   batch_size=syn, transform=tf, seed=0, device=a.device)
    if a.device.startswith('cuda'): torch.cuda.synchronize()
    dt = time.perf_counter() - t
    width = D + (0 if tf is None else K + a.hidden)
    print(f'eval of one GAN epoch at CUB size (CZSL + GZSL, 25 classifier epochs each, input width {width}, '
          f'{torch.get_num_threads()} threads, device {a.device}): {dt:.1f} s')
    rows.append(dict(threads=threads, seconds=round(dt, 1), input_width=width, device=a.device,
                     load_average=[round(v, 2) for v in os.getloadavg()], czsl_last=c['czsl_acc'][-1], H_last=c['H'][-1]))
write_json(a.out, dict(rows=rows, sizes=dict(seen=C_s, unseen=C_u, K=K, D=D, syn_num=syn, trainval=n_tv, test_seen=n_ts,
                                             test_unseen=n_tu, hidden=a.hidden, classifier_epochs=25), machine=machine(a.device)))
print('wrote', a.out)
