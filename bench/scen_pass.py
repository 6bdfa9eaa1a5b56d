"""Time of the map passes after SCEN stage 1 (x~, local logits, SCEN's own evaluation), today's way vs one pass.

Before (commit 17d89a1): `fit_scen` encodes trainval for stage 2 (LEN + compress, H formed), then the pipeline runs
`dense_features` on trainval, test_seen and test_unseen (LEN again) and `scen_zsl_eval` runs LEN once more on
both test splits. After: `fit_scen`'s pass (H never formed) is kept and `scen_pass` encodes only the test ids;
x~ and SCEN's metrics come from it. Both ways run in the same process on the same trained SCEN; their outputs
are compared (max abs difference of x~ and of the local logits; SCEN metrics).

Stage 1 is timed for `--stage1-time-iters` iterations and scaled to the preset's `stage1_iters` (per-iteration
cost does not depend on the iteration number).

    python bench/scen_pass.py --preset cub-mini --n 5902          # fabricated store, D 1280 x 7 x 7 (EfficientNet-Lite0)
    python bench/scen_pass.py --preset synthetic                   # the synthetic preset's data and simple_cnn store
Writes bench/results/scen_pass-<preset>.json.
"""
import argparse, os, shutil, sys, tempfile, time
from pathlib import Path
import numpy as np
import torch
os.environ.setdefault('SCEGG_PROGRESS', '0')
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, RESULTS, fake_data
from scegg.core import write_json
from scegg.scen import fit_scen, dense_features, scen_pass, scen_zsl_eval, encode_all, batch_slices
from scegg.classify import per_class_accuracy
from scegg.config import make_config


@torch.no_grad()
def old_encode_all(scen, maps, ids, how, bs):
    "Commit 17d89a1's `_encode_all`: LEN forms H (B, K, D), then the compression."
    ids = np.asarray(ids)
    xs, ls = [], []
    for sl in batch_slices(len(ids), bs):
        o = scen.len_(maps.maps(ids[sl]))
        xs.append(scen.gen.compress(o.H, how)); ls.append(o.logits)
    return torch.cat(xs), torch.cat(ls)


def old_scen_zsl_eval(trained, maps, data):
    "Commit 17d89a1's `scen_zsl_eval`: LEN over both test splits again."
    acc = lambda p, y: float(per_class_accuracy(p, y))   # what scen_zsl_eval scores with
    unseen = torch.as_tensor(np.asarray(data.unseen), dtype=torch.long)
    tu, ts = data.splits['test_unseen'], data.splits['test_seen']
    bs = trained.cfg.eval_batch_size
    lu, ls = old_encode_all(trained.scen, maps, tu.ids, 'mean', bs)[1], old_encode_all(trained.scen, maps, ts.ids, 'mean', bs)[1]
    yu, ys = torch.as_tensor(np.asarray(tu.labels)), torch.as_tensor(np.asarray(ts.labels))
    U, S = acc(lu.argmax(1), yu), acc(ls.argmax(1), ys)
    return {'czsl_acc': acc(unseen[lu[:, unseen].argmax(1)], yu), 'U': U, 'S': S, 'H': 2 * U * S / (U + S) if U + S > 0 else 0.0}


def cub_like(n, seed=0):
    "fake_data(n) with CUB's split shares: 59.9 % trainval (seen), 15.0 % test_seen, 25.2 % test_unseen."
    from collections import namedtuple
    d = fake_data(n, seed=seed)
    g = np.random.default_rng(seed)
    Split = namedtuple('Split', 'name ids labels')
    n_tv, n_ts = int(n * 7057 / 11788), int(n * 1764 / 11788)
    ids = g.permutation(n)
    tv, ts, tu = ids[:n_tv], ids[n_tv:n_tv + n_ts], ids[n_tv + n_ts:]
    d.splits = {'trainval': Split('trainval', tv, d.seen[np.arange(len(tv)) % len(d.seen)]),
                'test_seen': Split('test_seen', ts, d.seen[np.arange(len(ts)) % len(d.seen)]),
                'test_unseen': Split('test_unseen', tu, d.unseen[np.arange(len(tu)) % len(d.unseen)])}
    return d


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--preset', default='cub-mini', choices=['cub-mini', 'synthetic'])
    ap.add_argument('--n', type=int, default=5902, help='fabricated maps (cub-mini only)')
    ap.add_argument('--stage1-time-iters', type=int, default=20)
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--tmp', default=tempfile.gettempdir())
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cfg = make_config(a.preset)
    work = Path(tempfile.mkdtemp(prefix='scegg-scenpass-', dir=a.tmp))
    try:
        if a.preset == 'cub-mini':
            from scegg.fixtures import fabricate_store
            t = time.perf_counter()
            maps = fabricate_store(work / 'store', a.n, shape=(1280, 7, 7))
            print(f'fabricated {a.n} maps 1280x7x7 in {time.perf_counter() - t:.1f} s', flush=True)
            data = cub_like(a.n)
        else:
            from scegg.pipeline import load_run_data, ensure_store
            cfg.features_dir = str(work / 'features')
            data = load_run_data(cfg)
            maps = ensure_store(data, cfg)
        scfg = cfg.scen.__class__(**{**cfg.scen.__dict__, 'stage1_iters': a.stage1_time_iters, 'stage2_iters': 0,
                                     'checkpoint_every': 10**9})
        tv = data.splits['trainval'].ids
        trained = fit_scen(data, maps, scfg)
        s1 = trained.history['stage1_s'] / a.stage1_time_iters * cfg.scen.stage1_iters
        print(f'stage 1: {trained.history["stage1_s"]:.1f} s for {a.stage1_time_iters} it -> {s1:.1f} s for the '
              f'preset\'s {cfg.scen.stage1_iters} (batch {cfg.scen.batch_size})', flush=True)
        how, bs = scfg.runtime_compression, scfg.eval_batch_size
        all_ids = np.concatenate([np.asarray(data.splits[k].ids) for k in ('trainval', 'test_seen', 'test_unseen')])
        # before
        t = time.perf_counter(); old_encode_all(trained.scen, maps, tv, how, bs); old_fit = time.perf_counter() - t
        t = time.perf_counter()
        x_old = {k: dense_features(trained, maps, data.splits[k].ids) for k in ('trainval', 'test_seen', 'test_unseen')}
        m_old = old_scen_zsl_eval(trained, maps, data)
        old_post = time.perf_counter() - t
        # after
        t = time.perf_counter(); cache = encode_all(trained.scen, maps, tv, how, 'cpu', bs); new_fit = time.perf_counter() - t
        trained.cache = cache
        t = time.perf_counter()
        sp = scen_pass(trained, maps, all_ids)
        x_new = {k: trained.scaler.transform(sp.x[sp.rows(data.splits[k].ids)]) for k in x_old}
        m_new = scen_zsl_eval(trained, maps, data, cached=sp)
        new_post = time.perf_counter() - t
        l_ref = old_encode_all(trained.scen, maps, all_ids, 'mean', bs)[1]
        dx = max(float((x_old[k] - x_new[k]).abs().max()) for k in x_old)
        dl = float((l_ref - sp.logits).abs().max())
        load = [round(v, 2) for v in os.getloadavg()]
        old_total, new_total = old_fit + old_post, new_fit + new_post
        rows = [dict(way='before (17d89a1)', fit_scen_trainval_pass_s=round(old_fit, 2), after_fit_s=round(old_post, 2),
                     total_s=round(old_total, 2), share_of_stage1=round(old_total / s1, 3), metrics=m_old),
                dict(way='after (one pass)', fit_scen_trainval_pass_s=round(new_fit, 2), after_fit_s=round(new_post, 2),
                     total_s=round(new_total, 2), share_of_stage1=round(new_total / s1, 3), metrics=m_new)]
        for r in rows: print(r)
        print(f'images {len(all_ids)} (trainval {len(tv)}); stage 1 {s1:.1f} s; speed-up {old_total / new_total:.2f}x; '
              f'max |x~ diff| {dx:.2e}, max |logit diff| {dl:.2e}; load {load}; {torch.get_num_threads()} threads')
        out = RESULTS / f'scen_pass-{a.preset}.json'
        write_json(out, dict(rows=rows, stage1_s_preset=round(s1, 2), stage1_s_measured=round(trained.history['stage1_s'], 2),
                             stage1_iters_measured=a.stage1_time_iters, stage1_iters_preset=cfg.scen.stage1_iters,
                             batch_size=cfg.scen.batch_size, images=int(len(all_ids)), trainval=int(len(tv)),
                             map_shape=list(maps.shape), speedup=round(old_total / new_total, 2),
                             max_abs_diff_x=dx, max_abs_diff_logits=dl, metrics_equal=m_old == m_new,
                             load_average=load, machine=machine(), args=vars(a)))
        print('wrote', out)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    main()
