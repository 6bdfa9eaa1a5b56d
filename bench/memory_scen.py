"""Memory of SCEN stages 1-2 and of `dense_features` over fabricated stores of two sizes.

For each size (default 2,000 and 8,000 fabricated 2048x14x14 fp16 maps; K=312 fake word vectors, C=200 fake
classes, 150 seen, every map in trainval), peak anonymous RSS (RssAnon, sampled every 2 ms) above the level
at entry during
  (a) `fit_scen` with a few stage-1 iterations (sampling is random, so RSS does not depend on their number)
      and stage 2, whose `encode_all` is a full pass over all trainval maps, then a few CLS_g iterations;
  (b) `dense_features` over all ids (a second full pass).
The maps are read through memory maps: they show up in RssFile (page cache, reclaimable), not in RssAnon.
What does grow with N is the output: x~ and the local logits, N * (2048 + 200) * 4 bytes.

    python bench/memory_scen.py [--small 2000 --large 8000] [--iters 10] [--threads 2] [--tmp /tmp]
"""
import argparse, os, shutil, tempfile, time, types
from collections import namedtuple
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault('SCEGG_PROGRESS', '0')
from scegg.core import write_json
from scegg.fixtures import fabricate_store
from scegg.scen import SCENConfig, fit_scen, dense_features
from _common import Peak, machine, MB, RESULTS, fake_data

AWA2 = 37322


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--small', type=int, default=2000)
    ap.add_argument('--large', type=int, default=8000)
    ap.add_argument('--iters', type=int, default=10, help='stage-1 and stage-2 iterations')
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--tmp', default=tempfile.gettempdir())
    ap.add_argument('--out', default=str(RESULTS / 'memory_scen.json'))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    free = shutil.disk_usage(a.tmp).free
    need = a.large * 2048 * 196 * 2 * 1.05
    print(f'{free / 2**30:.1f} GiB free in {a.tmp}; the large store needs {need / 2**30:.1f} GiB')
    if need > 0.8 * free: raise SystemExit('not enough disk space; pass --tmp or smaller --small/--large')
    rows = []
    for n in (a.small, a.large):
        work = Path(tempfile.mkdtemp(prefix='scegg-memscen-', dir=a.tmp))
        try:
            store = fabricate_store(work / 'store', n)
            data = fake_data(n)
            cfg = SCENConfig(stage1_iters=a.iters, stage2_iters=a.iters, checkpoint_every=10**9)
            with Peak() as p: trained = fit_scen(data, store, cfg)
            rows.append(p.row(phase=f'fit_scen: stage 1 ({a.iters} it) + stage 2 (encode all trainval + {a.iters} it)', n_maps=n))
            print(rows[-1], flush=True)
            with Peak() as p: x = dense_features(trained, store, np.arange(n))
            rows.append(p.row(phase='dense_features, all ids', n_maps=n, output_mb=round(x.numel() * 4 / MB, 1),
                              maps_per_s=round(n / p.seconds, 1)))
            print(rows[-1], flush=True)
            del trained, x, store
        finally:
            shutil.rmtree(work, ignore_errors=True)
    # growth between the two sizes and a linear projection to AwA2
    summary = {}
    for ph in dict.fromkeys(r['phase'] for r in rows):
        s, l = [r for r in rows if r['phase'] == ph]
        dn = l['n_maps'] - s['n_maps']
        # the larger of the two differences (growth above entry, absolute peak), as MB per map
        slope = max(l['rss_anon_growth_mb'] - s['rss_anon_growth_mb'], l['rss_anon_peak_mb'] - s['rss_anon_peak_mb']) / dn
        summary[ph] = dict(growth_small_to_large_mb=round(l['rss_anon_growth_mb'] - s['rss_anon_growth_mb'], 1),
                           peak_difference_mb=round(l['rss_anon_peak_mb'] - s['rss_anon_peak_mb'], 1),
                           peak_anon_small_mb=s['rss_anon_peak_mb'], peak_anon_large_mb=l['rss_anon_peak_mb'],
                           page_cache_share_large=round(l['rss_file_peak_mb'] / (l['rss_file_peak_mb'] + l['rss_anon_peak_mb']), 2),
                           mb_per_1000_maps=round(slope * 1000, 1),
                           awa2_projected_peak_anon_mb=round(l['rss_anon_peak_mb'] + slope * (AWA2 - l['n_maps']), 0),
                           target_met=max(l['rss_anon_growth_mb'] - s['rss_anon_growth_mb'],
                                          l['rss_anon_peak_mb'] - s['rss_anon_peak_mb']) < 300)
        print(ph, summary[ph])
    write_json(a.out, dict(rows=rows, summary=summary, awa2_images=AWA2, awa2_store_gb=round(AWA2 * 2048 * 196 * 2 / 2**30, 1),
                           machine=machine(), args=vars(a)))
    print('wrote', a.out)


if __name__ == '__main__':
    main()
