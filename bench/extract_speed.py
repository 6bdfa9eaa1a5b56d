"""EfficientNet-Lite0 extraction speed at 224 px on real CUB images: breakdown and end to end, by setting.

Breakdown (each measured alone, in this process): JPEG decode + resize + crop + normalise (`spec.transform()` on
PIL images, one core), the network's forward per setting (fp32 NCHW = today, fp32 channels_last, opt-in bf16
autocast with and without channels_last), and the write (fp16 conversion, finiteness check, np.save of a chunk).
End to end: `extract_features` into a temporary store for each setting; the maps are compared with today's
(fp32 NCHW, num_workers 0) in units of fp16 storage rounding (max |a - b| / fp16 spacing at max |map|).
PIL's draft mode is not used: these JPEGs already have a 216-224 px short side, so DCT-domain downscaling
(factors 1/2, 1/4, 1/8) never applies.

    python bench/extract_speed.py [--n 256] [--threads 2] [--batch 32] [--images /work/shared/data/CUB/full]
Writes bench/results/extract_speed.json (load average, threads, torch version with every figure).
"""
import argparse, os, resource, shutil, sys, tempfile, time
from pathlib import Path
import numpy as np
import torch
from PIL import Image
os.environ.setdefault('SCEGG_PROGRESS', '0')
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, RESULTS, Peak
from scegg.core import write_json
from scegg.features import get_backbone, extract_features, write_chunk, imagenet_top5

load = lambda: [round(v, 2) for v in os.getloadavg()]


def ulps(a: np.ndarray, b: np.ndarray) -> float:
    "max |a - b| in units of fp16's spacing at the largest |value| (1.0 = one storage rounding step of the biggest entries)."
    a, b = a.astype(np.float32), b.astype(np.float32)
    m = np.float16(max(np.abs(a).max(), np.abs(b).max()))
    return float(np.abs(a - b).max() / np.float32(np.spacing(m)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--images', default='/work/shared/data/CUB/full')
    ap.add_argument('--n', type=int, default=256)
    ap.add_argument('--batch', type=int, default=32)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--workers', type=int, default=1)
    ap.add_argument('--settings', nargs='+', default=['today', 'channels_last', 'heap_reuse', 'bf16', 'default'])
    ap.add_argument('--out', default=str(RESULTS / 'extract_speed.json'))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    root = Path(a.images)
    lines = (root / 'images.txt').read_text().split('\n')
    names = [l.split(maxsplit=1)[1] for l in lines if l.strip()]
    step = max(len(names) // a.n, 1)   # spread over the classes
    paths = [str(root / 'images' / n) for n in names[::step][:a.n]]
    spec = get_backbone('efficientnet_lite0')
    res = dict(n_images=len(paths), batch=a.batch, threads=a.threads, torch_version=torch.__version__)

    # 1. decode + resize + crop + normalise, one process, one image at a time
    tf = spec.transform()
    t = time.perf_counter()
    xs = []
    for p in paths:
        with Image.open(p) as im: xs.append(tf(im.convert('RGB')))
    dec = time.perf_counter() - t
    res['decode_images_per_s_one_core'] = round(len(paths) / dec, 1)
    print(f'decode+resize+normalise: {len(paths) / dec:.1f} images/s on one core; load {load()}', flush=True)
    x = torch.stack(xs[:a.batch])

    # 2. forward per setting
    net = spec.build(True)
    fwd = {}
    with torch.inference_mode():
        ref = net(x)
        for name, cl, amp in (('fp32 NCHW (today)', False, False), ('fp32 channels_last', True, False),
                              ('bf16 autocast NCHW', False, True), ('bf16 autocast channels_last', True, True)):
            m = net.to(memory_format=torch.channels_last if cl else torch.contiguous_format)
            xi = x.contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format)
            with torch.autocast('cpu', torch.bfloat16, enabled=amp):
                m(xi)
                t = time.perf_counter()
                for _ in range(3): y = m(xi)
            dt = (time.perf_counter() - t) / 3
            y16, r16 = y.float().half().numpy(), ref.half().numpy()
            fwd[name] = dict(images_per_s=round(a.batch / dt, 1), max_fp16_ulps_vs_today=round(ulps(y16, r16), 2),
                             max_abs_diff=float((y.float() - ref).abs().max()), load_average=load())
            print(f'forward {name:28s} {a.batch / dt:6.1f} images/s; maps vs today: {fwd[name]["max_fp16_ulps_vs_today"]} '
                  f'fp16 steps, max abs diff {fwd[name]["max_abs_diff"]:.3g} (max |map| {float(ref.abs().max()):.3g}); load {load()}', flush=True)
        net.to(memory_format=torch.contiguous_format)
    res['forward'] = fwd

    # 3. write: fp16 conversion, finiteness check and np.save of one 256-map chunk
    big = torch.cat([ref] * (256 // len(ref) + 1))[:256]
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        for c in range(3): write_chunk(Path(d), c, big.float().half().numpy())
        wr = (time.perf_counter() - t) / 3
    res['write_images_per_s'] = round(256 / wr, 1)
    print(f'write: {256 / wr:.0f} images/s (fp16 + check + np.save of a 256-map chunk); load {load()}', flush=True)

    # 4. end to end
    settings = dict(today=dict(channels_last=False, num_workers=0, keep_heap=False),
                    workers=dict(channels_last=False, num_workers=a.workers, keep_heap=False),
                    channels_last=dict(channels_last=True, num_workers=a.workers, keep_heap=False),
                    heap_reuse=dict(channels_last=True, num_workers=a.workers, keep_heap=True),
                    bf16=dict(channels_last=True, num_workers=a.workers, amp=True),
                    default=dict())
    e2e, maps = {}, {}
    work = Path(tempfile.mkdtemp(prefix='scegg-extract-'))
    try:
        for s in a.settings:
            f0 = resource.getrusage(resource.RUSAGE_SELF)
            with Peak() as pk:
                st = extract_features(paths, work / s, 'efficientnet_lite0', batch_size=a.batch, chunk_size=256, **settings[s])
            maps[s] = st.maps(np.arange(len(paths))).numpy()
            e2e[s] = pk.row(setting=s, options=settings[s], images_per_s=round(len(paths) / pk.seconds, 1),
                            max_fp16_ulps_vs_today=round(ulps(maps[s], maps['today']), 2) if 'today' in maps else None)
            f1 = resource.getrusage(resource.RUSAGE_SELF)   # this process (the decoding worker is another one)
            e2e[s].update(minor_faults=f1.ru_minflt - f0.ru_minflt, user_s=round(f1.ru_utime - f0.ru_utime, 1),
                          sys_s=round(f1.ru_stime - f0.ru_stime, 1))
            print(f'extract_features {s:14s} {settings[s]}: {len(paths) / pk.seconds:.1f} images/s, peak RssAnon '
                  f'+{e2e[s]["rss_anon_growth_mb"]} MB, {e2e[s]["minor_faults"]} page faults, {e2e[s]["sys_s"]} s in the kernel; maps vs today {e2e[s]["max_fp16_ulps_vs_today"]} fp16 steps; load {load()}', flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    res['end_to_end'] = e2e
    # accuracy effect of the opt-in bf16 maps: the network's own ImageNet classifier on the pooled stored maps
    if 'bf16' in maps and 'today' in maps:
        top = {k: imagenet_top5(net, torch.from_numpy(maps[k]).mean(-1)) for k in ('today', 'bf16')}
        pa, pb = torch.from_numpy(maps['today']).mean(-1), torch.from_numpy(maps['bf16']).mean(-1)
        res['bf16_effect'] = dict(imagenet_top1_agreement=float((top['today'][:, 0] == top['bf16'][:, 0]).float().mean()),
                                  imagenet_top5_same_set=float(torch.tensor([set(u.tolist()) == set(v.tolist())
                                                                             for u, v in zip(top['today'], top['bf16'])]).float().mean()),
                                  pooled_cosine_min=float(torch.nn.functional.cosine_similarity(pa, pb).min()),
                                  pooled_max_rel_diff=float(((pa - pb).abs().max(1).values / pa.abs().max(1).values).max()))
        print('bf16 effect:', res['bf16_effect'], flush=True)
    f = res['forward']['fp32 NCHW (today)']['images_per_s']
    res['limit'] = ('forward' if f < min(res['decode_images_per_s_one_core'], res['write_images_per_s']) else 'decode/write')
    res['machine'] = machine()
    write_json(a.out, res)
    print('limit:', res['limit'], '; wrote', a.out)


if __name__ == '__main__':
    main()
