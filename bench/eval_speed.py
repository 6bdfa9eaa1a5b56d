"""Time one GAN epoch's evaluation (both final classifiers) at CUB's sizes: reference vs fast path (vs opt-in bf16).

CUB: 150 seen / 50 unseen classes, K = 312, D = 2048, syn_num 300, 7,057 trainval, 1,764 test_seen,
2,967 test_unseen; classifier input [x, Dec(x), Dec_hidden(x)] = 2048 + 312 + 4096 columns.
Random features stand in for real ones (the cost does not depend on the values); the GAN is a freshly initialised
EGGN, so accuracies are near chance, but the reference and fast curves are compared point by point.
`reference` is `zsl_curves(..., fast=False)`: the code of commit 17d89a1 (autograd, per-tensor Adam, cat copies).
Usage: python bench/eval_speed.py [--ways reference fast bf16] [--threads 1 2] [--epochs 25] [--hidden 4096]
Writes bench/results/eval_speed.json (one row per way x thread count, with machine info and load average).
"""
import argparse, os, sys, time
from pathlib import Path
import torch
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, RESULTS, Peak
from scegg.core import write_json
from scegg.classify import zsl_curves
from scegg.eggn import EGGNConfig, EGGN

p = argparse.ArgumentParser()
p.add_argument('--device', default='cpu')
p.add_argument('--no-transform', action='store_true')
p.add_argument('--hidden', type=int, default=4096)
p.add_argument('--epochs', type=int, default=25, help='classifier epochs (25 in every paper preset)')
p.add_argument('--threads', type=int, nargs='+', default=[1, 2])
p.add_argument('--ways', nargs='+', default=['reference', 'fast', 'bf16'])
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
torch.manual_seed(0)
model = EGGN(EGGNConfig(hidden=a.hidden), D=D, K=K).to(a.device).eval()
tf = None if a.no_transform else model.transform
width = D + (0 if tf is None else K + a.hidden)
rows, curves = [], {}
for threads in a.threads:
    for way in a.ways:
        torch.set_num_threads(threads)
        if a.device.startswith('cuda'): torch.cuda.synchronize()
        with Peak() as pk:
            c = zsl_curves(x_syn, y_syn, x_tv, y_tv, x_ts, y_ts, x_tu, y_tu, seen, unseen, lr=1e-3, epochs=a.epochs,
                           batch_size=syn, transform=tf, seed=0, device=a.device, fast=way != 'reference', bf16=way == 'bf16')
            if a.device.startswith('cuda'): torch.cuda.synchronize()
        curves[(way, threads)] = c
        ref = curves.get(('reference', threads)) or next((v for (w, _), v in curves.items() if w == 'reference'), None)
        diff = None if ref is None else max(abs(u - v) for k in c for u, v in zip(c[k], ref[k]))
        print(f'{way:9s} {threads} threads: {pk.seconds:.1f} s for CZSL + GZSL, {a.epochs} classifier epochs each, '
              f'input width {width}; peak RssAnon +{(pk.anon - pk.base_anon) / 2**20:.0f} MB; '
              f'max |curve - reference| {diff}; load {[round(v, 2) for v in os.getloadavg()]}', flush=True)
        rows.append(pk.row(way=way, threads=threads, input_width=width, device=a.device, classifier_epochs=a.epochs,
                           max_abs_curve_diff_vs_reference=diff, czsl_last=c['czsl_acc'][-1], H_last=c['H'][-1]))
        base = next((q for q in rows if q['way'] == 'reference' and q['threads'] == rows[-1]['threads']), None)
        if base: rows[-1]['speedup_vs_reference_same_threads'] = round(base['seconds'] / rows[-1]['seconds'], 2)
        base1 = next((q for q in rows if q['way'] == 'reference' and q['threads'] == 1), None)
        if base1: rows[-1]['speedup_vs_reference_1_thread'] = round(base1['seconds'] / rows[-1]['seconds'], 2)
        write_json(a.out, dict(rows=rows, sizes=dict(seen=C_s, unseen=C_u, K=K, D=D, syn_num=syn, trainval=n_tv, test_seen=n_ts,
                                                     test_unseen=n_tu, hidden=a.hidden, classifier_epochs=a.epochs),
                               torch_version=torch.__version__, machine=machine(a.device)))  # after every row
print('wrote', a.out)
