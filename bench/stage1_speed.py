"""SCEN stage 1 on real CUB-224 maps: the fused step (`scen.fused_stage1`, default) against the literal one (LEN then
GEN as released), in fp32 and bf16, rounds interleaved in one process, against this CPU's `torch.mm` rate.

- `fit_scen` from the same seed for `--iters` iterations (batches of 64 real 1280 x 7 x 7 maps from the fp32 store),
  each variant in every round; seconds per iteration from the history (`stage1_s`);
- the fused step's floating-point work counted by hand (forward: the (B R, D) x (D, 2K) product, the first compression
  layer (B R, K) x (K, K/2) and (D, R) x (R, K/2) per image, the classifier; backward: twice the forward), over the
  rate of one `torch.mm` of the step's largest shape, so "fraction of the machine's rate" is a measured figure;
- the stage-1 losses of both ways after `--iters` steps (the same batches), to show they train alike.

    SCEGG_DATA=... python bench/stage1_speed.py --threads 1 [--rounds 3] [--iters 20]
Needs the CUB-224 fp32 store (`scegg data extract CUB-224 --backbone efficientnet_lite0`).
Writes bench/results/stage1_speed.json.
"""
import argparse, dataclasses, os, sys, time
from pathlib import Path
import numpy as np
import torch
os.environ.setdefault('SCEGG_PROGRESS', '0')
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, RESULTS
from scegg.core import write_json
from scegg.datasets import load_dataset
from scegg.config import make_config
from scegg.pipeline import ensure_store
from scegg.scen import fit_scen

VARIANTS = {'literal fp32': (False, False), 'fused fp32': (True, False), 'literal bf16': (False, True), 'fused bf16': (True, True)}


def step_gflop(B: int, D: int, R: int, K: int, C: int) -> float:
    "Floating-point work of one fused stage-1 step (forward + backward as 2x forward), GFLOP."
    fwd = 2 * B * R * D * 2 * K + 2 * B * R * K * (K // 2) + 2 * B * D * R * (K // 2) + 2 * B * D * (K // 2) + 2 * B * D * C
    return 3 * fwd / 1e9


def mm_rate(m: int, k: int, n: int, dtype=torch.float32, reps: int = 5) -> float:
    "GFLOP/s of (m, k) x (k, n) on this CPU at the current thread count (best of `reps`)."
    a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
    for _ in range(2): a @ b
    best = min(_timed(lambda: a @ b) for _ in range(reps))
    return 2 * m * k * n / best / 1e9


def _timed(fn) -> float:
    t0 = time.perf_counter(); fn(); return time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--threads', type=int, default=1); ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--iters', type=int, default=20)
    ap.add_argument('--variants', nargs='+', default=list(VARIANTS), choices=list(VARIANTS))
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    cfg = make_config('cub-cpu')
    data = load_dataset('CUB-224')
    maps = ensure_store(data, cfg)
    out = {'machine': machine(), 'args': vars(a), 's_per_iter': {v: [] for v in a.variants}, 'last_loss': {}}
    for r in range(a.rounds):
        for v in a.variants:
            fused, bf16 = VARIANTS[v]
            c = dataclasses.replace(cfg.scen, stage1_iters=a.iters, stage2_iters=1, fused_stage1=fused, bf16=bf16)
            tr = fit_scen(data, maps, c)
            out['s_per_iter'][v].append(round(tr.history['stage1_s'] / a.iters, 4))
            out['last_loss'][v] = round(float(np.mean(tr.history['stage1_loss'][-5:])), 5)
            print(f'round {r}: {v}: {out["s_per_iter"][v][-1]:.3f} s/iteration', flush=True)
    med = {v: float(np.median(t)) for v, t in out['s_per_iter'].items()}
    out['median_s_per_iter'] = med
    if 'literal fp32' in med:
        out['speedup_vs_literal_fp32'] = {v: round(med['literal fp32'] / t, 2) for v, t in med.items()}
    B, D, R = cfg.scen.batch_size, *maps.shape[:1], int(np.prod(maps.shape[1:]))
    K, C = data.att.shape[1], len(data.seen)
    work = step_gflop(B, D, R, K, data.att.shape[0])
    rate = {'fp32': mm_rate(B * R, D, 2 * K), 'bf16': mm_rate(B * R, D, 2 * K, torch.bfloat16)}
    out['fused_step_gflop'] = round(work, 2)
    out['mm_probe_gflops'] = {p: round(x, 1) for p, x in rate.items()}
    out['fraction_of_mm_rate'] = {v: round(work / med[v] / rate['bf16' if VARIANTS[v][1] else 'fp32'], 3)
                                  for v in med if VARIANTS[v][0]}
    out['machine_after'] = machine()
    print({k: out[k] for k in ('median_s_per_iter', 'speedup_vs_literal_fp32', 'fused_step_gflop', 'mm_probe_gflops',
                               'fraction_of_mm_rate', 'last_loss') if k in out}, flush=True)
    RESULTS.mkdir(exist_ok=True)
    write_json(RESULTS / 'stage1_speed.json', out)


if __name__ == '__main__':
    main()
