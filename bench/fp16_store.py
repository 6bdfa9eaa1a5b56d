"""Effect of the fp16 feature store (released code: fp32 maps in hdf5) on one synthetic-preset run.

The same synthetic benchmark, backbone and seed are run twice through `scegg.pipeline.train`: once on the maps as
the feature store keeps them (fp16 on disk), once on the same backbone's maps kept in fp32 (computed here in
memory, never rounded). Everything else is identical, so the difference in the results is the store's precision.
A control run (`fp32+noise`) adds to the fp32 maps the same rounding errors, shuffled across entries: a
perturbation of the same size that is not fp16's. If it moves the metrics as much as fp16 does, the difference
measures how strongly a run reacts to any tiny change of its input, not a property of fp16.
Usage: python bench/fp16_store.py [--seeds 0] [--preset synthetic]
Writes bench/results/fp16_store.json (maps' rounding error, both runs' metrics under both protocols, machine).
"""
import argparse, sys, tempfile, time
from pathlib import Path
import numpy as np, torch
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, RESULTS
import scegg.pipeline as pl
from scegg.core import ArrayMaps, write_json
from scegg.features import get_backbone, ImageFiles

p = argparse.ArgumentParser()
p.add_argument('--preset', default='synthetic')
p.add_argument('--seeds', type=int, nargs='+', default=[0])
p.add_argument('--out', default=str(RESULTS / 'fp16_store.json'))
a = p.parse_args()


@torch.inference_mode()
def fp32_maps(data, cfg):
    spec = get_backbone(cfg.backbone, cfg.image_size)
    net = spec.build(True)
    loader = torch.utils.data.DataLoader(ImageFiles([str(q) for q in data.image_paths], range(len(data.image_paths)),
                                                 spec.transform()), batch_size=64)
    return ArrayMaps(torch.cat([net(x).float() for x in loader]))


def metrics(r):
    return {proto: {k: round(float(v), 4) for k, v in r['protocols'][proto].items() if isinstance(v, (int, float))}
            for proto in r['protocols']}


rows = []
with tempfile.TemporaryDirectory() as tmp:
    for seed in a.seeds:
        cfg = pl.make_config(a.preset, {'seed': seed, 'features_dir': str(Path(tmp) / 'features')})
        data = pl.load_run_data(cfg)
        store = pl.ensure_store(data, cfg, 'cpu')
        m32 = fp32_maps(data, cfg)
        ids = np.arange(len(store))
        m16 = store.maps(ids)
        ref = m32.maps(ids)
        err = (m16 - ref).abs()
        assert torch.equal(m16, ref.half().float()), 'the store does not hold the fp32 maps rounded to fp16'
        rec = dict(seed=seed, preset=a.preset, maps_shape=list(store.shape), n_images=len(store),
                   max_abs_rounding=float(err.max()), max_rel_rounding=float((err / ref.abs().clamp_min(1e-6)).max()),
                   mean_abs_rounding=float(err.mean()), map_abs_mean=float(ref.abs().mean()))
        g = torch.Generator().manual_seed(seed)
        noise = (store.maps(ids) - ref).flatten()[torch.randperm(ref.numel(), generator=g)].view(m32.arr.shape)
        m32n = ArrayMaps(m32.arr + noise)
        orig = pl.ensure_store
        for name, maps in (('fp16', store), ('fp32', m32), ('fp32+noise', m32n)):
            pl.ensure_store = lambda data, cfg, dev, maps=maps: maps
            t = time.perf_counter()
            try: r = pl.train(cfg, out=Path(tmp) / f'run-{name}-{seed}', resume=False, force=True)
            finally: pl.ensure_store = orig
            rec[name] = dict(metrics=metrics(r), seconds=round(time.perf_counter() - t, 1))
        for other in ('fp16', 'fp32+noise'):
            rec[f'diff_{other}_minus_fp32'] = {proto: {k: round(rec[other]['metrics'][proto][k] - v, 4)
                                                       for k, v in rec['fp32']['metrics'][proto].items()}
                                               for proto in rec['fp32']['metrics']}
        print(rec)
        rows.append(rec)
write_json(a.out, dict(rows=rows, machine=machine('cpu'),
                       command='python bench/fp16_store.py ' + ' '.join(sys.argv[1:])))
print('wrote', a.out)
