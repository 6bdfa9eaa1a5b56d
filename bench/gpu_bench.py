"""One section of the GPU benchmark (see gpu.sh): extraction images/s, SCEN stage-1 iterations/s, stage-3 epoch.

Needs only torch, torchvision, numpy and Pillow (no nbdev, scipy or pandas) and no network: ResNet-101 has
random weights (`pretrained=False`; speed does not depend on them), images are generated JPEGs, maps are a
fabricated store. Each figure is merged into the results JSON as soon as it is measured.

    python bench/gpu_bench.py SECTION --results FILE [--cpu-dry-run] [--compile]
    SECTION: setup | extract | scen | stage3
"""
import argparse, json, math, os, sys, tempfile, time
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault('SCEGG_PROGRESS', '0')
HERE = Path(__file__).resolve().parent
SUN_TRAINVAL, B = 10320, 64


def record(path, key, value):
    "Merge {key: value} into the JSON file at `path` at once (atomic rename)."
    path = Path(path)
    d = json.loads(path.read_text()) if path.exists() else {}
    d[key] = value
    tmp = path.with_suffix('.tmp'); tmp.write_text(json.dumps(d, indent=1, default=str)); tmp.replace(path)
    print(key, json.dumps(value, default=str), flush=True)


def sync(dev):
    if dev.type == 'cuda': torch.cuda.synchronize(dev)


def work_dir(a):
    p = Path(a.work); p.mkdir(parents=True, exist_ok=True); return p


def setup(a, dev):
    info = dict(torch=torch.__version__, python=sys.version.split()[0], cpu_count=os.cpu_count(),
                load_average=[round(v, 2) for v in os.getloadavg()], device=str(dev), dry_run=a.cpu_dry_run,
                torch_threads=torch.get_num_threads())
    try:
        import torchvision; info['torchvision'] = torchvision.__version__
    except ImportError as e: info['torchvision'] = f'missing: {e}'
    if dev.type == 'cuda':
        p = torch.cuda.get_device_properties(dev)
        info.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1), sms=p.multi_processor_count)
    for m in ('scegg.features', 'scegg.scen', 'scegg.eggn', 'scegg.dist'):
        __import__(m)
    info['imports'] = 'scegg.features, scegg.scen, scegg.eggn, scegg.dist import with torch+torchvision+numpy+Pillow'
    record(a.results, 'machine', info)


def extract(a, dev):
    from PIL import Image
    from scegg.features import extract_features, get_backbone
    n, size = (8, 64) if a.cpu_dry_run else (a.images, 448)
    folder = work_dir(a) / 'jpg'; folder.mkdir(exist_ok=True)
    g = np.random.default_rng(0)
    paths = []
    for i in range(n):  # CUB-like JPEGs, decoded and resized by the workers
        p = folder / f'{i:05d}.jpg'
        if not p.exists(): Image.fromarray(g.integers(0, 256, (375, 500, 3), dtype=np.uint8)).save(p, quality=90)
        paths.append(str(p))
    spec = get_backbone('resnet101', size)
    workers = 0 if a.cpu_dry_run else min(12, os.cpu_count() or 1)
    bs = 4 if a.cpu_dry_run else 128
    variants = [('fp32', False, False, False), ('bf16+channels_last', True, True, False)]
    if a.compile: variants.append(('bf16+channels_last+compile', True, True, True))
    for name, amp, cl, comp in variants:
        net = spec.build(pretrained=False).to(dev)
        if cl: net = net.to(memory_format=torch.channels_last)
        if comp: net = torch.compile(net)
        # warm-up (cudnn autotune, compile) on a small batch of its own store
        extract_features(paths[:bs], work_dir(a) / f'warm-{name}', backbone='resnet101', image_size=size, device=dev,
                         batch_size=bs, chunk_size=bs, num_workers=workers, amp=amp, channels_last=cl, model=net, pretrained=False)
        sync(dev); t = time.perf_counter()
        extract_features(paths, work_dir(a) / f'store-{name}', backbone='resnet101', image_size=size, device=dev,
                         batch_size=bs, chunk_size=256, num_workers=workers, amp=amp, channels_last=cl, model=net, pretrained=False)
        sync(dev); dt = time.perf_counter() - t
        record(a.results, f'extract_{name}', dict(images=n, image_size=size, batch_size=bs, workers=workers, pin_memory=dev.type == 'cuda',
                                                  seconds=round(dt, 2), images_per_s=round(n / dt, 1),
                                                  cub_11788_images_min=round(11788 / (n / dt) / 60, 1)))


def scen(a, dev):
    from _common import fake_data  # bench/ is on sys.path when this file runs as a script
    from scegg.fixtures import fabricate_store
    from scegg.scen import SCENConfig, fit_scen
    n, shape, iters = (300, (64, 4, 4), 4) if a.cpu_dry_run else (a.maps, (2048, 14, 14), a.scen_iters)
    store = fabricate_store(work_dir(a) / 'maps', n, shape) if not (work_dir(a) / 'maps' / 'manifest.json').exists() \
        else __import__('scegg.features').features.FeatureStore(work_dir(a) / 'maps')
    data = fake_data(n, 312, 200, 150)  # CUB's K and classes
    for name, amp in (('fp32', False), ('bf16', True)):
        cfg = SCENConfig(stage1_iters=iters, stage2_iters=iters, checkpoint_every=10**9)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            fit_scen(data, store, SCENConfig(stage1_iters=2, stage2_iters=2), device=dev)  # warm-up
            sync(dev)
            t = fit_scen(data, store, cfg, device=dev)
        h = t.history
        record(a.results, f'scen_stage1_{name}', dict(maps=n, K=312, C=200, batch=64, iters=iters,
               stage1_s=round(h['stage1_s'], 2), stage1_it_per_s=round(iters / h['stage1_s'], 2),
               paper_2000_iters_s=round(2000 / (iters / h['stage1_s']), 1), stage2_it_per_s=round(iters / max(h['stage2_s'], 1e-9), 1),
               note='autocast around fit_scen; maps (B, D, R) have no channels_last layout'))


def stage3(a, dev):
    from scegg.eggn import EGGNConfig, train_eggn
    from scegg.scen import CLS_g
    K, D, C, Cs = (16, 32, 40, 30) if a.cpu_dry_run else (102, 2048, 717, 645)
    N = 200 if a.cpu_dry_run else SUN_TRAINVAL
    hidden = 64 if a.cpu_dry_run else 4096
    g = torch.Generator().manual_seed(0)
    x = torch.rand(N, D, generator=g)
    seen, unseen = torch.arange(Cs), torch.arange(Cs, C)
    y = seen[torch.arange(N) % Cs]
    att = torch.nn.functional.normalize(torch.rand(C, K, generator=g), dim=1)
    guide = CLS_g(D, C).to(dev)
    for name, amp in (('fp32', False), ('bf16', True)):
        cfg = EGGNConfig(epochs=2, hidden=hidden, a1=0.0)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            r = train_eggn(x, y, att, seen, unseen, cfg, guide=guide, device=dev)
        sec = r.history[-1]['seconds']
        steps = 2 * math.ceil(N / B)
        record(a.results, f'stage3_epoch_{name}', dict(N=N, K=K, D=D, C=C, seen=Cs, hidden=hidden, generator_steps=steps,
               epoch_s=round(sec, 2), per_generator_step_ms=round(1000 * sec / steps, 2),
               sun_50_epochs_min=round(50 * sec / 60, 1), note='second epoch timed; x~ cached on the device'))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('section', choices=['setup', 'extract', 'scen', 'stage3'])
    ap.add_argument('--results', required=True)
    ap.add_argument('--work', default=os.path.join(tempfile.gettempdir(), 'scegg-gpu-bench'))
    ap.add_argument('--cpu-dry-run', action='store_true')
    ap.add_argument('--compile', action='store_true')
    ap.add_argument('--images', type=int, default=1024)
    ap.add_argument('--maps', type=int, default=1024)
    ap.add_argument('--scen-iters', type=int, default=50)
    a = ap.parse_args()
    dev = torch.device('cpu' if a.cpu_dry_run or not torch.cuda.is_available() else 'cuda')
    if dev.type == 'cpu': torch.set_num_threads(min(2, os.cpu_count() or 1))
    else: torch.backends.cudnn.benchmark = True; torch.backends.cuda.matmul.allow_tf32 = True; torch.backends.cudnn.allow_tf32 = True
    try: globals()[a.section](a, dev)
    except Exception as e:
        record(a.results, f'{a.section}_error', f'{type(e).__name__}: {e}'); raise


if __name__ == '__main__':
    main()
