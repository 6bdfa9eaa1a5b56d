"""Stage-3 generator iteration (5 critic steps + 1 generator step) at SUN sizes: today's step against scegg's.

The reference is `bench/stage3_reference.py`, a verbatim copy of the step before the stage-3 speed work (autograd critic with a
double backward, per-tensor Adam, glibc defaults). The variants run side by side in one process, interleaved
(A B C D, A B C D, ...), from the same initial weights and on the same random draws:

  reference       the copy of today's step
  fused_adam      scegg's step with `fast_critic=False` (autograd critic, as released) and Adam's fused kernel
  fast_critic     + closed-form critic gradients (`critic_grads`)
  scegg           + glibc heap reuse (`heap_reuse`), i.e. scegg's defaults, as `train_eggn` runs them
  bf16            scegg + the opt-in `bf16=True` (bfloat16 products; changes the numbers: bench/bf16_accuracy.py)

Each block runs `--its` iterations of one variant; every iteration is timed with its minor page faults
(`resource.getrusage`) and the load average (`os.getloadavg()`) at its end. RssAnon is sampled every 2 ms per block:
the process peak (all variants' models and Adam states live in it) and the growth above the block's start.
Matrix-product FLOPs (2 m k n per mm/addmm, forward and backward) are counted per variant with a dispatch mode. The probe replays the
matrix products of one scegg iteration (same shapes, recorded with a dispatch mode) with plain `torch.mm` on
preallocated outputs, in fp32 and in bf16, before and after every round; each variant's GFLOP/s in a round is
compared with that round's probe (the load changes from minute to minute on a shared machine).

    python bench/stage3_speed.py [--reps 3] [--its 2] [--threads 2]
"""
import argparse, os, resource, statistics, sys, time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault('SCEGG_PROGRESS', '0')
import stage3_reference as ref
from scegg.core import write_json
from scegg.eggn import (EGGN, EGGNConfig, CriticDraws, GeneratorDraws, stage3_iteration, make_optimisers)
from scegg.core import heap_reuse
from _common import machine, RESULTS, Peak, MB

SIZES = {'sun': dict(K=102, D=2048, C=717, CS=645, B=64, HID=4096, CLS_HID=1024, N=2048, A1=0.0),
         # cub-cpu: CUB-224 with EfficientNet-Lite0 (D 1280), 150 seen of 200, hidden 1024, feedback on (a1 = 1)
         'cub-cpu': dict(K=312, D=1280, C=200, CS=150, B=64, HID=1024, CLS_HID=1024, N=7051, A1=1.0)}
K, D, C, CS, B, HID, CLS_HID, N, A1 = SIZES['sun'].values()
VARIANTS = ('reference', 'fused_adam', 'fast_critic', 'scegg', 'bf16')


def cfg_of(v):
    return EGGNConfig(hidden=HID, batch_size=B, critic_iters=5, a1=A1, fast_critic=v in ('fast_critic', 'scegg', 'bf16'),
                      fused_adam=v != 'reference', keep_heap=v in ('scegg', 'bf16'), bf16=v == 'bf16')


def draws(g):
    cd = [CriticDraws(torch.randint(0, N, (B,), generator=g), torch.randn(B, K, generator=g), torch.rand(B, 1, generator=g))
          for _ in range(5)]
    return cd, GeneratorDraws(torch.randint(0, N, (B,), generator=g), torch.randn(B, K, generator=g),
                              torch.randint(CS, C, (B,), generator=g), torch.randn(B, K, generator=g))


class MMShapes(TorchDispatchMode):
    "Records the (m, k, n) of every mm/addmm."
    def __init__(self): super().__init__(); self.shapes = []
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        if name in ('mm', 'addmm'):
            a, b = (args[0], args[1]) if name == 'mm' else (args[1], args[2])
            self.shapes.append((a.shape[0], a.shape[1], b.shape[1]))
        return func(*args, **kwargs)


def mm_probe(shapes, dtype, reps=3):
    "GFLOP/s of plain torch.mm over the recorded shapes (inputs and outputs allocated once); median of reps."
    ts = []
    ops = [(torch.rand(m, k).to(dtype), torch.rand(k, n).to(dtype), torch.empty(m, n, dtype=dtype)) for m, k, n in shapes]
    flops = sum(2 * m * k * n for m, k, n in shapes)
    for a, b, o in ops: torch.mm(a, b, out=o)   # warm
    for _ in range(reps):
        t = time.perf_counter()
        for a, b, o in ops: torch.mm(a, b, out=o)
        ts.append(time.perf_counter() - t)
    return flops / statistics.median(ts) / 1e9, [round(v, 2) for v in os.getloadavg()]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--reps', type=int, default=3, help='rounds of A B C D')
    ap.add_argument('--its', type=int, default=2, help='iterations per block')
    ap.add_argument('--threads', type=int, default=torch.get_num_threads())
    ap.add_argument('--variants', nargs='+', default=list(VARIANTS))
    ap.add_argument('--out', default=str(RESULTS / 'stage3_speed.json'))
    ap.add_argument('--sizes', choices=list(SIZES), default='sun')
    a = ap.parse_args()
    global K, D, C, CS, B, HID, CLS_HID, N, A1
    K, D, C, CS, B, HID, CLS_HID, N, A1 = SIZES[a.sizes].values()
    torch.set_num_threads(a.threads)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(N, D, generator=g); y = torch.randint(0, CS, (N,), generator=g)
    att = F.normalize(torch.rand(C, K, generator=g), dim=1)
    guide = torch.nn.Sequential(torch.nn.Linear(D, CLS_HID), torch.nn.LeakyReLU(0.01), torch.nn.Linear(CLS_HID, C))
    guide.requires_grad_(False)
    init = EGGN(cfg_of('scegg'), D, K).state_dict()
    state = {}
    for v in a.variants:
        m = EGGN(cfg_of(v), D, K); m.load_state_dict(init)
        state[v] = dict(model=m, opts=(ref._optimisers if v == 'reference' else make_optimisers)(m, cfg_of(v)), lam=10.0,
                        rows=[], peak_anon_mb=0.0, growth_mb=0.0)

    def one(v, d):
        s, cfg = state[v], cfg_of(v)
        step = ref.stage3_iteration if v == 'reference' else stage3_iteration
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t = time.perf_counter()
        s['lam'], _, _ = step(s['model'], s['opts'], x, y, att, s['lam'], cfg, *d, A1, guide)
        sec = time.perf_counter() - t
        return dict(seconds=round(sec, 3), minor_faults=resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0,
                    load_average=[round(v, 2) for v in os.getloadavg()])

    # matrix-product FLOPs per iteration, counted (2 m k n per mm/addmm, forward and backward), one untimed warm-up
    # each; the product shapes of scegg's iteration feed the torch.mm probe
    flops, shapes = {}, {}
    for v in a.variants:
        rec = MMShapes()
        with heap_reuse(cfg_of(v).keep_heap), rec: one(v, draws(torch.Generator().manual_seed(99)))
        flops[v], shapes[v] = sum(2 * m * k * n for m, k, n in rec.shapes), rec.shapes
    rec = argparse.Namespace(shapes=shapes.get('scegg', []))
    print('GFLOP per iteration:', {v: round(f / 1e9, 2) for v, f in flops.items()}, flush=True)
    probes = []
    dg = torch.Generator().manual_seed(1)
    for r in range(a.reps):
        rd = [draws(dg) for _ in range(a.its)]            # the same draws for every variant
        pr = dict(fp32=[mm_probe(rec.shapes, torch.float32)], bf16=[mm_probe(rec.shapes, torch.bfloat16)]) if rec.shapes else None
        for v in a.variants:
            with Peak() as pk, heap_reuse(cfg_of(v).keep_heap):
                rows = [one(v, d) for d in rd]
            state[v]['rows'] += rows
            state[v]['peak_anon_mb'] = max(state[v]['peak_anon_mb'], pk.anon / MB)
            state[v]['growth_mb'] = max(state[v]['growth_mb'], (pk.anon - pk.base_anon) / MB)
            print(r, v, rows, f'peak RssAnon {pk.anon / MB:.0f} MB (+{(pk.anon - pk.base_anon) / MB:.0f} above the block start)', flush=True)
        if pr:   # the probe before and after the round's blocks: its mean is the round's figure
            pr['fp32'].append(mm_probe(rec.shapes, torch.float32)); pr['bf16'].append(mm_probe(rec.shapes, torch.bfloat16))
            probes.append({k: (statistics.mean(q[0] for q in v), [q[1] for q in v]) for k, v in pr.items()})
            print(r, 'torch.mm probe GFLOP/s', {k: round(v[0], 1) for k, v in probes[-1].items()}, flush=True)

    probe32 = statistics.median(p['fp32'][0] for p in probes) if probes else None
    probe16 = statistics.median(p['bf16'][0] for p in probes) if probes else None
    res = {}
    for v in a.variants:
        rows = state[v]['rows']
        sec = statistics.median(r['seconds'] for r in rows)
        res[v] = dict(median_seconds=round(sec, 3), seconds=[r['seconds'] for r in rows],
                      median_minor_faults=int(statistics.median(r['minor_faults'] for r in rows)),
                      load_average=[r['load_average'] for r in rows], peak_rss_anon_mb=round(state[v]['peak_anon_mb'], 1),
                      peak_growth_above_block_start_mb=round(state[v]['growth_mb'], 1),
                      gflop_counted=round(flops[v] / 1e9, 2), gflops_achieved=round(flops[v] / sec / 1e9, 1),
                      gflops_reference_work=round(flops['reference'] / sec / 1e9, 1) if 'reference' in flops else None)
        if probes:   # per round: this variant's GFLOP/s in the round over the probe's in the same round
            fr = [flops[v] / sum(rows[i]['seconds'] for i in range(k * a.its, (k + 1) * a.its)) * a.its / 1e9 / probes[k]['fp32'][0]
                  for k in range(a.reps)]
            res[v]['fraction_of_mm_probe_per_round'] = [round(q, 3) for q in fr]
            res[v]['fraction_of_mm_probe_median'] = round(statistics.median(fr), 3)
    if 'reference' in res:
        for v in res: res[v]['speedup_vs_reference'] = round(res['reference']['median_seconds'] / res[v]['median_seconds'], 2)
        # per round ratio (same moment, same load): reference seconds / variant seconds
        for v in res:
            rr = [sum(state['reference']['rows'][i]['seconds'] for i in range(k * a.its, (k + 1) * a.its))
                  / sum(state[v]['rows'][i]['seconds'] for i in range(k * a.its, (k + 1) * a.its)) for k in range(a.reps)]
            res[v]['speedup_per_round'] = [round(q, 2) for q in rr]
            res[v]['speedup_median_of_rounds'] = round(statistics.median(rr), 2)
    out = dict(sizes=dict(name=a.sizes, D=D, K=K, C=C, seen=CS, hidden=HID, batch=B, critic_iters=5, a1=A1, cls_hidden=CLS_HID,
                          guidance=True),
               reps=a.reps, its_per_block=a.its, variants=res,
               mm_probe=dict(fp32_gflops=round(probe32, 1) if probe32 else None,
                             bf16_gflops=round(probe16, 1) if probe16 else None,
                             shapes=len(rec.shapes), rounds=[dict(fp32=[round(p['fp32'][0], 1), p['fp32'][1]],
                                                                  bf16=[round(p['bf16'][0], 1), p['bf16'][1]]) for p in probes],
                             note='per round: mean of a probe before and one after the round; load averages at each'),
               machine=machine())
    for v, r in res.items(): print(v, {k: r[k] for k in r if k not in ('seconds', 'load_average')})
    print('torch.mm probe at the step shapes: fp32', out['mm_probe']['fp32_gflops'], 'bf16', out['mm_probe']['bf16_gflops'],
          'GFLOP/s; load', os.getloadavg())
    write_json(a.out, out)


if __name__ == '__main__':
    main()
