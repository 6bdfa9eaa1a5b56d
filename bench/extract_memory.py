"""Memory (and speed) of feature extraction and of a full pass over a feature store.

Peak anonymous memory (RssAnon, sampled every 2 ms in a thread) during
  (a) `extract_features` with simple_cnn on small generated PNGs, at two data-set sizes, and
  (b) a full pass `iter_batches(all ids, 64)` over fabricated stores of 2048x14x14 fp16 maps, at two sizes.
If the store reads through memory maps as intended, (b) stays flat as the store grows; only the file-backed
pages (page cache, RssFile) grow. Optionally (--throughput) also EfficientNet-Lite0 extraction speed on CUB-mini.

    python bench/extract_memory.py [--small 2000 --large 8000] [--throughput] [--tmp /tmp]

Prints a table and writes bench/results/extract_memory.json (with machine info).
"""
import argparse, json, os, shutil, sys, tempfile, threading, time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

os.environ.setdefault('SCEGG_PROGRESS', '0')
from scegg.core import provenance, write_json
from scegg.features import extract_features
from scegg.fixtures import fabricate_store
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Peak  # RssAnon/RssFile peak sampler shared by the memory benchmarks

HERE = Path(__file__).resolve().parent
MB = 2**20


def make_pngs(folder, n, size=64):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = folder / f'{i:06d}.png'
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(p, compress_level=1)
        paths.append(str(p))
    return paths


def du(path): return sum(f.stat().st_size for f in Path(path).rglob('*') if f.is_file())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--small', type=int, default=2000, help='fabricated 2048x14x14 maps, small store')
    ap.add_argument('--large', type=int, default=8000, help='fabricated 2048x14x14 maps, large store')
    ap.add_argument('--images', type=int, nargs=2, default=[1000, 4000], help='generated 64px images for (a)')
    ap.add_argument('--throughput', action='store_true', help='also time efficientnet_lite0 on CUB-mini images')
    ap.add_argument('--n-cub', type=int, default=256)
    ap.add_argument('--tmp', default=tempfile.gettempdir())
    ap.add_argument('--threads', type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    free = shutil.disk_usage(args.tmp).free
    need = args.large * 2048 * 196 * 2 * 1.05
    if need > free * 0.8:
        args.small, args.large = 1000, 4000
        print(f'only {free / 2**30:.1f} GiB free in {args.tmp}: using 1,000 and 4,000 maps')
    rows = []
    work = Path(tempfile.mkdtemp(prefix='scegg-bench-', dir=args.tmp))
    try:
        # (a) extraction
        for n in args.images:
            paths = make_pngs(work / f'img{n}', n)
            with Peak() as p:
                extract_features(paths, work / f'ext{n}', backbone='simple_cnn', batch_size=64, chunk_size=256)
            rows.append(p.row(phase='extract simple_cnn 64px', n_images=n, store_mb=round(du(work / f'ext{n}') / MB, 1),
                              images_per_s=round(n / p.seconds, 1)))
            shutil.rmtree(work / f'img{n}'); shutil.rmtree(work / f'ext{n}')
        # (b) a full pass over fabricated 2048x14x14 stores
        for n in (args.small, args.large):
            t = time.perf_counter()
            s = fabricate_store(work / f'fab{n}', n)
            made = time.perf_counter() - t
            with Peak() as p:
                total = 0.0
                for _, m in s.iter_batches(batch_size=64): total += float(m[:, 0, 0].sum())
            rows.append(p.row(phase='full pass 2048x14x14, batch 64', n_images=n, store_mb=round(du(s.path) / MB, 1),
                              fabricate_seconds=round(made, 1), maps_per_s=round(n / p.seconds, 1)))
            del s
            shutil.rmtree(work / f'fab{n}')
        # EfficientNet-Lite0 throughput on real images
        if args.throughput:
            shared = Path(os.environ.get('SCEGG_SHARED_DATA', HERE.parents[1] / 'shared' / 'data'))
            cub = sorted((shared / 'CUB' / 'mini_dev' / 'images').glob('*/*.jpg'))[:args.n_cub]
            if cub:
                extract_features(cub[:32], work / 'warm', backbone='efficientnet_lite0', batch_size=32)
                with Peak() as p:
                    extract_features(cub, work / 'cub', backbone='efficientnet_lite0', batch_size=32)
                rows.append(p.row(phase='extract efficientnet_lite0 224px CUB-mini, batch 32', n_images=len(cub),
                                  store_mb=round(du(work / 'cub') / MB, 1), images_per_s=round(len(cub) / p.seconds, 2)))
            else: print(f'no CUB-mini images under {shared}; skipping the throughput figure')
    finally:
        shutil.rmtree(work, ignore_errors=True)

    cols = ['phase', 'n_images', 'store_mb', 'seconds', 'rss_anon_start_mb', 'rss_anon_peak_mb', 'rss_anon_growth_mb', 'rss_file_peak_mb']
    print(' | '.join(cols + ['rate']))
    for r in rows:
        print(' | '.join(str(r.get(c, '')) for c in cols) + ' | ' + str(r.get('images_per_s', r.get('maps_per_s', ''))))
    machine = {**provenance('cpu'), 'load_average': os.getloadavg(), 'torch_threads': torch.get_num_threads()}
    out = HERE / 'results' / 'extract_memory.json'
    write_json(out, {'rows': rows, 'machine': machine, 'args': vars(args)})
    print(f'wrote {out}')


if __name__ == '__main__':
    main()
