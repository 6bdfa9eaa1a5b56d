"""Stage 3 (EGGN) on cached x~ versus recomputing x~ from the maps for every sampled batch (released code).

SCEN is frozen in stage 3, so scegg computes x~ for trainval once (`dense_features`) and `train_eggn` indexes
it. The released code reads the batch's 64 maps and reruns attention for every critic and generator step
(6 batches per generator step). Both ways run here with identical GAN work, in one process, same threads:
  (a) cached: `train_eggn` on the precomputed x~;
  (b) naive: the same `train_eggn`, but x is a tensor subclass whose `x[idx]` reads the maps of `idx` from the
      store and runs LEN + mean compression + MinMax (the same `TrainedSCEN.features` code) for every batch.
Sizes are SUN's: K=102, D=2048, R=14x14, C=717 (645 seen), hidden 4096, batch 64, critic_iters 5, a1=0 (SUN:
the feedback module is skipped exactly). A fabricated store of --maps maps stands in for SUN's 14,340 images.
To time a fixed number of generator steps, EGGN trains on 64*--steps images of distinct seen classes (one
epoch = 2*steps generator steps); the second epoch is timed (the first warms up), and the per-step time is
extrapolated to SUN's epoch of 2*ceil(10,320/64) = 324 generator steps.

    python bench/stage3_cache.py [--maps 2000] [--steps 3] [--threads 2] [--hidden 4096]
"""
import argparse, math, os, shutil, tempfile, time
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault('SCEGG_PROGRESS', '0')
from scegg.core import write_json
from scegg.fixtures import fabricate_store
from scegg.scen import SCENConfig, fit_scen, dense_features
from scegg.eggn import EGGNConfig, EGGN, train_eggn, gradient_penalty, weighted_l1, vae_loss
import scegg.eggn as eggn_mod
from _common import machine, RESULTS, fake_data

SUN_TRAINVAL = 10320


class RecomputedFeatures(torch.Tensor):
    "x~ whose rows are recomputed from the feature maps each time they are indexed with a LongTensor."
    provider = None
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.Tensor.__getitem__ and isinstance(args[1], torch.Tensor) and args[1].dtype == torch.long:
            return cls.provider(args[1])
        with torch._C.DisableTorchFunctionSubclass():
            out = func(*args, **kwargs)
        keep = func in (torch.Tensor.float, torch.Tensor.to, torch.Tensor.contiguous)
        return out.as_subclass(cls) if keep and isinstance(out, torch.Tensor) else out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--maps', type=int, default=2000)
    ap.add_argument('--steps', type=int, default=3, help='generator steps per feedback pass (epoch = 2x)')
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--hidden', type=int, default=4096)
    ap.add_argument('--tmp', default=tempfile.gettempdir())
    ap.add_argument('--out', default=str(RESULTS / 'stage3_cache.json'))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    K, D, C, Cs, B = 102, 2048, 717, 645, 64
    work = Path(tempfile.mkdtemp(prefix='scegg-s3-', dir=a.tmp))
    try:
        store = fabricate_store(work / 'store', a.maps)
        data = fake_data(a.maps, K, C, Cs)  # every seen class has an image
        seen, unseen, att, ids = data.seen, data.unseen, data.att, data.splits['trainval'].ids
        labels = data.splits['trainval'].labels
        trained = fit_scen(data, store, SCENConfig(stage1_iters=0, stage2_iters=0))  # random LEN; cost is what counts
        t = time.perf_counter()
        x_all = dense_features(trained, store, ids)
        cache_s = time.perf_counter() - t
        # 64*steps images of distinct classes: exactly `steps` generator steps per pass
        n = B * a.steps
        sub = ids[:n]
        y_sub = torch.as_tensor(labels[sub])
        seen_sub = torch.unique(y_sub)
        unseen_sub = torch.as_tensor(np.setdiff1d(np.arange(C), seen_sub.numpy()))
        cfg = EGGNConfig(epochs=2, hidden=a.hidden, a1=0.0)
        att_t = torch.as_tensor(att)
        fetch = {'s': 0.0, 'n': 0}
        def provider(idx):
            t0 = time.perf_counter()
            with torch.no_grad(): out = trained.features(store.maps(sub[idx.cpu().numpy()]))
            fetch['s'] += time.perf_counter() - t0; fetch['n'] += 1
            return out
        RecomputedFeatures.provider = provider
        # sampling time, measured inside train_eggn
        samp = {'s': 0.0}
        orig = eggn_mod.ClassBalancedSampler.sample
        def timed(self):
            t0 = time.perf_counter(); r = orig(self); samp['s'] += time.perf_counter() - t0; return r
        eggn_mod.ClassBalancedSampler.sample = timed

        def run(x, guide=True):
            samp['s'] = 0.0; fetch.update(s=0.0, n=0)
            r = train_eggn(x, y_sub, att_t, seen_sub, unseen_sub, cfg, guide=trained.guide if guide else None)
            return r.history[1]['seconds'], samp['s'], fetch['s'], fetch['n']
        x_cached = x_all[:n].clone()
        x_naive = x_cached.clone().as_subclass(RecomputedFeatures)
        steps_epoch = 2 * a.steps
        res = {}
        for name, x, guide in (('cached', x_cached, True), ('naive', x_naive, True), ('cached_no_guidance', x_cached, False)):
            sec, s_samp, s_fetch, n_fetch = run(x, guide)
            # both epochs ran; counters cover both, so halve them for the timed (second) epoch
            res[name] = dict(epoch_seconds=round(sec, 2), per_generator_step_s=round(sec / steps_epoch, 3),
                             sun_epoch_s=round(sec / steps_epoch * 2 * math.ceil(SUN_TRAINVAL / B), 1),
                             sampling_s=round(s_samp / 2, 3), feature_fetch_s=round(s_fetch / 2, 2),
                             feature_fetches=n_fetch // 2, load_average=[round(v, 2) for v in os.getloadavg()])
            print(name, res[name], flush=True)
        eggn_mod.ClassBalancedSampler.sample = orig

        # critic / generator split: one critic step and one generator step of train_eggn's code, timed alone
        model = EGGN(cfg, D, K); opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        xr, a_b = x_cached[:B], att_t[y_sub[:B]]
        def critic_step():
            with torch.no_grad():
                mu, lv = model.encoder(xr, a_b); fake = model.generate(mu + torch.exp(0.5 * lv) * torch.randn_like(mu), a_b)
            (weighted_l1(model.decoder(xr)[0], a_b) * 0.01).backward()
            gp, _ = gradient_penalty(model.critic, xr, fake, a_b, 10.0)
            (model.critic(fake, a_b).mean() - model.critic(xr, a_b).mean() + gp).backward(); opt.step(); opt.zero_grad()
        def generator_step(guide):
            mu, lv = model.encoder(xr, a_b); recon = model.generate(mu + torch.exp(0.5 * lv) * torch.randn_like(mu), a_b)
            loss = vae_loss(recon, xr, mu, lv) - model.critic(recon, a_b).mean() + 0.01 * weighted_l1(model.decoder(recon)[0], a_b)
            if guide:
                yu = unseen_sub[torch.randint(len(unseen_sub), (B,))]
                loss = loss + torch.nn.functional.cross_entropy(trained.guide(recon), y_sub[:B])
                xu = model.generate(torch.randn(B, model.latent), att_t[yu])
                loss = loss + 0.001 * torch.nn.functional.cross_entropy(trained.guide(xu), yu)
            loss.backward(); opt.step(); opt.zero_grad()
        def tm(f, reps=3):
            f(); t0 = time.perf_counter()
            for _ in range(reps): f()
            return (time.perf_counter() - t0) / reps
        crit = tm(critic_step); gen_g = tm(lambda: generator_step(True)); gen_n = tm(lambda: generator_step(False))
        per_step = res['cached']['per_generator_step_s']
        breakdown = dict(critic_steps_s=round(cfg.critic_iters * crit, 3), generator_step_without_guidance_s=round(gen_n, 3),
                         guidance_s=round(gen_g - gen_n, 3), sampling_s=round(res['cached']['sampling_s'] / steps_epoch, 4),
                         measured_per_generator_step_s=per_step)
        speedup = res['naive']['epoch_seconds'] / res['cached']['epoch_seconds']
        fetch_per_batch = res['naive']['feature_fetch_s'] / max(res['naive']['feature_fetches'], 1)
        out = dict(sizes=dict(K=K, D=D, R=196, C=C, seen=Cs, hidden=a.hidden, batch=B, critic_iters=cfg.critic_iters,
                              a1=cfg.a1, maps_in_store=a.maps, generator_steps_timed=steps_epoch,
                              sun_epoch_generator_steps=2 * math.ceil(SUN_TRAINVAL / B)),
                   cache_build_s=round(cache_s, 2), cache_build_maps=a.maps,
                   cache_build_sun_trainval_s=round(cache_s / a.maps * SUN_TRAINVAL, 1),
                   naive_fetch_per_batch_s=round(fetch_per_batch, 3),
                   results=res, speedup_cached_vs_naive=round(speedup, 2),
                   cached_breakdown_per_generator_step=breakdown, machine=machine())
        print(f'cached {res["cached"]["epoch_seconds"]} s vs naive {res["naive"]["epoch_seconds"]} s for {steps_epoch} generator '
              f'steps: {speedup:.2f}x; SUN epoch ~{res["cached"]["sun_epoch_s"]} s vs ~{res["naive"]["sun_epoch_s"]} s; '
              f'x~ cache for SUN trainval ~{out["cache_build_sun_trainval_s"]} s once')
        print('cached breakdown per generator step:', breakdown)
        write_json(a.out, out); print('wrote', a.out)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    main()
