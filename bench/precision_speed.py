"""fp32 against bf16 (`RunConfig.precision`) on real CUB-224 data, part by part, in one process, rounds interleaved.

Interleaving fp32 and bf16 rounds in one process makes the *ratio* robust to other load on the machine (both see
the same load); the absolute times are only as good as the load the JSON records.
- extraction forward: EfficientNet-Lite0 on real CUB images (decoded once, batches of 32, channels_last), images/s;
  and the ImageNet top-1 agreement of the pooled maps, fp32 against bf16, through the backbone's own classifier;
- SCEN stage 1: `--iters` iterations of `fit_scen` from the same seed (real 1280 x 7 x 7 maps from the fp32 store);
- the dense pass (`scen_pass`) over `--n-pass` images with one trained SCEN, fp32 against bf16.

    SCEGG_DATA=... python bench/precision_speed.py --threads 1 [--rounds 3] [--iters 30] [--n-images 128]
Needs the CUB-224 fp32 store (`scegg data extract CUB-224 --backbone efficientnet_lite0`).
Writes bench/results/precision_speed.json.
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
from scegg.features import get_backbone, imagenet_top5
from scegg.config import make_config
from scegg.pipeline import ensure_store
from scegg.scen import fit_scen, scen_pass


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--threads', type=int, default=1); ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--iters', type=int, default=30); ap.add_argument('--n-images', type=int, default=128)
    ap.add_argument('--n-pass', type=int, default=2048)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    cfg = make_config('cub-cpu')
    data = load_dataset('CUB-224')
    maps = ensure_store(data, cfg)
    out = {'machine': machine(), 'args': vars(a), 'extraction': {}, 'stage1': {}, 'dense_pass': {}}

    # extraction forward, on real images decoded once
    spec = get_backbone('efficientnet_lite0')
    net = spec.build(True).eval().to(memory_format=torch.channels_last)
    tf = spec.transform()
    from PIL import Image
    ids = np.random.default_rng(0).choice(len(data.image_paths), a.n_images, replace=False)
    x = torch.stack([tf(Image.open(data.image_paths[i]).convert('RGB')) for i in ids]).contiguous(memory_format=torch.channels_last)
    feats, times = {}, {'fp32': [], 'bf16': []}
    with torch.inference_mode():
        for r in range(a.rounds):
            for p in ('fp32', 'bf16'):
                t0, ys = time.perf_counter(), []
                for b in range(0, len(x), 32):
                    with torch.autocast('cpu', torch.bfloat16, enabled=p == 'bf16'): ys.append(net(x[b:b + 32]).float())
                times[p].append(time.perf_counter() - t0); feats[p] = torch.cat(ys)
    top1 = {p: imagenet_top5(net, feats[p].mean((2, 3)))[:, 0] for p in feats}
    out['extraction'] = {p: {'images_per_s': [round(a.n_images / t, 1) for t in times[p]]} for p in times}
    out['extraction']['ratio_median'] = round(float(np.median(np.array(times['fp32']) / np.array(times['bf16']))), 2)
    out['extraction']['imagenet_top1_agreement'] = float((top1['fp32'] == top1['bf16']).float().mean())
    out['extraction']['max_rel_diff'] = float((feats['bf16'] - feats['fp32']).abs().max() / feats['fp32'].abs().max())
    print('extraction', out['extraction'], flush=True)

    # SCEN stage 1 (same seed, same batches), and the dense pass of one trained SCEN
    s1 = {'fp32': [], 'bf16': []}
    for r in range(a.rounds):
        for p in ('fp32', 'bf16'):
            c = dataclasses.replace(cfg.scen, stage1_iters=a.iters, stage2_iters=1, bf16=p == 'bf16')
            tr = fit_scen(data, maps, c)
            s1[p].append(tr.history['stage1_s'] / a.iters)
            last = tr
    out['stage1'] = {p: {'s_per_iter': [round(v, 4) for v in s1[p]]} for p in s1}
    out['stage1']['ratio_median'] = round(float(np.median(np.array(s1['fp32']) / np.array(s1['bf16']))), 2)
    print('stage1', out['stage1'], flush=True)
    pid = np.asarray(data.splits['test_unseen'].ids)[:a.n_pass]
    dp, xs = {'fp32': [], 'bf16': []}, {}
    for r in range(a.rounds):
        for p in ('fp32', 'bf16'):
            last.cfg = dataclasses.replace(last.cfg, bf16=p == 'bf16'); last.cache = None
            t0 = time.perf_counter(); xs[p] = scen_pass(last, maps, pid).x; dp[p].append(time.perf_counter() - t0)
    out['dense_pass'] = {p: {'s': [round(v, 3) for v in dp[p]]} for p in dp}
    out['dense_pass']['ratio_median'] = round(float(np.median(np.array(dp['fp32']) / np.array(dp['bf16']))), 2)
    out['dense_pass']['max_rel_diff_x'] = float((xs['bf16'] - xs['fp32']).abs().max() / xs['fp32'].abs().max())
    print('dense_pass', out['dense_pass'], flush=True)
    out['machine_after'] = machine()
    RESULTS.mkdir(exist_ok=True)
    write_json(RESULTS / 'precision_speed.json', out)


if __name__ == '__main__':
    main()
