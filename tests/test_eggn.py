import os, time
os.environ.setdefault('SCEGG_PROGRESS', '0')
import pytest, torch, torch.nn as nn
torch.set_num_threads(1)  # tiny models: one thread is fastest, and avoids oversubscription on a shared CPU
from scegg.core import SceggError
from scegg.eggn import (EGGNConfig, EGGN, train_eggn, synthesize, evaluate_epoch, fabricated_zsl, weighted_l1,
                        vae_loss, update_lambda, generator_step, GeneratorDraws, make_optimisers)

SMALL = dict(hidden=64, batch_size=32, syn_num=50, classifier_epochs=10, classifier_lr=1e-2, lr=1e-2)
MECH = {**SMALL, 'critic_iters': 2}  # mechanics tests: fewer critic steps, same code path


def _eval(res, dz, cfg, seed=0):
    return evaluate_epoch(res, dz['x_trainval'], dz['y_trainval'], dz['att'], dz['seen'], dz['unseen'],
                          dict(test_seen=dz['test_seen'], test_unseen=dz['test_unseen']), cfg, seed=seed)


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_smoke_beats_chance(seed):
    dz = fabricated_zsl(seed=seed)
    cfg = EGGNConfig(**SMALL, epochs=3, seed=seed)
    res = train_eggn(dz['x_trainval'], dz['y_trainval'], dz['att'], dz['seen'], dz['unseen'], cfg)
    c = _eval(res, dz, cfg)
    chance = 1 / len(dz['unseen'])
    assert c['czsl_acc'][-1] >= 3 * chance, c


def test_same_seed_same_result():
    dz = fabricated_zsl(seed=3)
    cfg = EGGNConfig(**MECH, epochs=1, seed=5)
    r1 = train_eggn(dz['x_trainval'], dz['y_trainval'], dz['att'], dz['seen'], dz['unseen'], cfg)
    r2 = train_eggn(dz['x_trainval'], dz['y_trainval'], dz['att'], dz['seen'], dz['unseen'], cfg)
    for (k, a), b in zip(r1.model.state_dict().items(), r2.model.state_dict().values()):
        assert torch.equal(a, b), k
    quick = EGGNConfig(**{**MECH, 'classifier_epochs': 2})
    assert _eval(r1, dz, quick) == _eval(r2, dz, quick)
    r3 = train_eggn(dz['x_trainval'], dz['y_trainval'], dz['att'], dz['seen'], dz['unseen'],
                    EGGNConfig(**MECH, epochs=1, seed=6))
    assert not torch.equal(r1.model.generator.fc1.weight, r3.model.generator.fc1.weight)


def test_guide_never_changes_and_generator_does():
    dz = fabricated_zsl(seed=0)
    C, D = len(dz['att']), dz['x_trainval'].shape[1]
    guide = nn.Sequential(nn.Linear(D, 16), nn.LeakyReLU(0.01), nn.Linear(16, C))
    before = {k: v.clone() for k, v in guide.state_dict().items()}
    cfg = EGGNConfig(**MECH, epochs=1, seed=0)
    init = EGGN(cfg, D, dz['att'].shape[1], generator=torch.Generator().manual_seed(cfg.seed))
    res = train_eggn(dz['x_trainval'], dz['y_trainval'], dz['att'], dz['seen'], dz['unseen'], cfg, guide=guide)
    for k, v in guide.state_dict().items(): assert torch.equal(v, before[k]), k
    assert all(p.requires_grad for p in guide.parameters())  # flags restored
    assert not torch.equal(res.model.generator.fc1.weight, init.generator.fc1.weight)
    # the guidance term is used: a different guide gives a different generator
    res0 = train_eggn(dz['x_trainval'], dz['y_trainval'], dz['att'], dz['seen'], dz['unseen'], cfg)
    assert not torch.equal(res.model.generator.fc1.weight, res0.model.generator.fc1.weight)
    res_off = train_eggn(dz['x_trainval'], dz['y_trainval'], dz['att'], dz['seen'], dz['unseen'],
                         EGGNConfig(**MECH, epochs=1, seed=0, use_guidance=False), guide=guide)
    assert torch.equal(res_off.model.generator.fc1.weight, res0.model.generator.fc1.weight)


def test_feedback_steps_only_when_a1_nonzero():
    dz = fabricated_zsl(seed=0)
    D, K = dz['x_trainval'].shape[1], dz['att'].shape[1]
    init = EGGN(EGGNConfig(**MECH, seed=0), D, K, generator=torch.Generator().manual_seed(0))
    off = train_eggn(dz['x_trainval'], dz['y_trainval'], dz['att'], dz['seen'], dz['unseen'], EGGNConfig(**MECH, epochs=1, seed=0))
    on = train_eggn(dz['x_trainval'], dz['y_trainval'], dz['att'], dz['seen'], dz['unseen'], EGGNConfig(**MECH, epochs=1, seed=0, a1=0.5))
    assert torch.equal(off.model.feedback.fc1.weight, init.feedback.fc1.weight)
    assert not torch.equal(on.model.feedback.fc1.weight, init.feedback.fc1.weight)


def test_resume_is_bit_identical(tmp_path):
    dz = fabricated_zsl(seed=1)
    args = (dz['x_trainval'], dz['y_trainval'], dz['att'], dz['seen'], dz['unseen'])
    full = train_eggn(*args, EGGNConfig(**MECH, epochs=2, seed=1))
    train_eggn(*args, EGGNConfig(**MECH, epochs=1, seed=1), checkpoint_dir=tmp_path)
    assert (tmp_path / 'eggn_last.pt').exists()
    resumed = train_eggn(*args, EGGNConfig(**MECH, epochs=2, seed=1), checkpoint_dir=tmp_path, resume=True)
    assert [h['epoch'] for h in resumed.history] == [0, 1]
    assert resumed.lambda_gp == full.lambda_gp
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    with pytest.raises(SceggError, match='other EGGN settings'):
        train_eggn(*args, EGGNConfig(**{**MECH, 'lr': 1e-3}, epochs=2, seed=1), checkpoint_dir=tmp_path, resume=True)


def test_eval_fn_history_and_synthesis():
    dz = fabricated_zsl(seed=0)
    cfg = EGGNConfig(**MECH, epochs=2, seed=0)
    seen_epochs = []
    res = train_eggn(dz['x_trainval'], dz['y_trainval'], dz['att'], dz['seen'], dz['unseen'], cfg,
                     eval_fn=lambda m, e: {'probe': e * 10}, on_epoch=lambda e, r: seen_epochs.append(e))
    assert [h['probe'] for h in res.history] == [0, 10] and seen_epochs == [0, 1]
    x, y = synthesize(res, dz['unseen'], 7, dz['att'], generator=torch.Generator().manual_seed(0))
    assert x.shape == (7 * len(dz['unseen']), 32) and (y == dz['unseen'].repeat_interleave(7)).all()
    assert 0 <= float(x.min()) and float(x.max()) <= 1
    xf, _ = synthesize(res, dz['unseen'], 7, dz['att'], a2=0.5, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(x, xf)
    assert res.model.transform(x).shape == (len(x), 32 + 16 + 64)


def test_bad_inputs_raise():
    dz = fabricated_zsl(seed=0)
    with pytest.raises(SceggError, match=r'\[0, 1\]'):
        train_eggn(dz['x_trainval'] * 3, dz['y_trainval'], dz['att'], dz['seen'], dz['unseen'], EGGNConfig(**MECH, epochs=1))
    with pytest.raises(SceggError, match='seen class'):
        train_eggn(dz['x_trainval'], dz['y_trainval'] + 10, dz['att'], dz['seen'], dz['unseen'], EGGNConfig(**MECH, epochs=1))


def test_losses_by_hand():
    # released WeightedL1 (models/utils.py:19-23): sum_k |e_k|^3 / ||e||, averaged over rows
    assert abs(float(weighted_l1(torch.tensor([[1., 2.]]), torch.zeros(1, 2))) - 9 / 5 ** 0.5) < 1e-6   # 4.0249
    assert abs(float(weighted_l1(torch.tensor([[1., 2.], [0., -3.]]), torch.zeros(2, 2))) - (9 / 5 ** 0.5 + 9) / 2) < 1e-5
    v = vae_loss(torch.tensor([[0.5]]), torch.tensor([[1.]]), torch.zeros(1, 1), torch.zeros(1, 1))
    assert abs(float(v) - 0.6931472) < 1e-5
    lam = 10.
    for _ in range(3): lam = update_lambda(lam, 2.0)
    assert abs(lam - 13.31) < 1e-9


def test_bad_settings_fail_before_work():
    dz = fabricated_zsl(seed=0)
    for bad, msg in [(dict(batch_size=0), 'eggn.batch_size=0'), (dict(syn_num=0), 'eggn.syn_num=0'),
                     (dict(classifier_epochs=0), 'eggn.classifier_epochs=0'), (dict(dec_lr=0.0), 'eggn.dec_lr=0.0')]:
        with pytest.raises(SceggError, match=msg):
            train_eggn(dz['x_trainval'], dz['y_trainval'], dz['att'], dz['seen'], dz['unseen'], EGGNConfig(**{**MECH, **bad}, epochs=1))
    res = train_eggn(dz['x_trainval'], dz['y_trainval'], dz['att'], dz['seen'], dz['unseen'], EGGNConfig(**MECH, epochs=0))
    with pytest.raises(SceggError, match='num=0'):
        synthesize(res, dz['unseen'], 0, dz['att'])


def _one_generator_step(cfg, dz, guide, a1=0.0):
    D, K = dz['x_trainval'].shape[1], dz['att'].shape[1]
    m = EGGN(cfg, D, K, generator=torch.Generator().manual_seed(0))
    opts = make_optimisers(m, cfg)
    g = torch.Generator().manual_seed(1)
    B = 8
    draws = GeneratorDraws(torch.arange(B), torch.randn(B, K, generator=g),
                           dz['unseen'][torch.randint(len(dz['unseen']), (B,), generator=g)], torch.randn(B, K, generator=g))
    before = m.generator.fc1.weight.detach().clone()
    t = generator_step(m, opts, dz['x_trainval'], dz['y_trainval'], dz['att'], draws, cfg, a1, guide)
    return t, m, before


@pytest.mark.parametrize('a1', [0.0, 0.5])
def test_guidance_weights_enter_the_generator_loss(a1):
    "Each guidance weight scales its own term of L_G: changing one changes the total by exactly (dw * term)."
    dz = fabricated_zsl(seed=0)
    C, D = len(dz['att']), dz['x_trainval'].shape[1]
    guide = nn.Sequential(nn.Linear(D, 16), nn.LeakyReLU(0.01), nn.Linear(16, C)).requires_grad_(False)
    base = EGGNConfig(**MECH, seed=0)
    t1, m1, _ = _one_generator_step(base, dz, guide, a1)
    for field, w in (('guide_unseen', 0.5), ('guide_seen', 3.0)):
        t2, m2, _ = _one_generator_step(EGGNConfig(**{**MECH, field: w}, seed=0), dz, guide, a1)
        for k in ('vae', 'guide_seen', 'guide_unseen', 'critic_fake_mean', 'recons'):
            assert torch.equal(t1[k], t2[k]), (field, k)    # same state, same draws: same terms
        expected = float(t1['total']) + (w - getattr(base, field)) * float(t1[field])
        assert abs(float(t2['total']) - expected) < 1e-5 * max(1.0, abs(expected)), (field, float(t2['total']), expected)
        assert not torch.equal(m1.generator.fc1.weight, m2.generator.fc1.weight), field
    # the unseen guidance term is a real cross-entropy over all C classes, not a constant
    assert float(t1['guide_unseen']) > 0


# ------------------------------------------------------------------ the fast paths against the plain ones
import resource
import torch.nn.functional as F
from scegg import eggn as eggn_mod
from scegg.eggn import Critic, critic_grads, gradient_penalty, heap_reuse


def _critic_autograd(critic, real, fake, att, alpha, lam, gammaD):
    "The straightforward version: the released critic loss (three critic passes, double backward) through autograd."
    critic.zero_grad(set_to_none=True)
    d_real = gammaD * critic(real, att).mean()
    d_fake = gammaD * critic(fake, att).mean()
    gp, m = gradient_penalty(critic, real, fake, att, lam, alpha=alpha)
    gp = gammaD * gp
    d_cost = d_fake - d_real + gp
    d_cost.backward()
    losses = dict(d_real=d_real, d_fake=d_fake, gp=gp, gp_m=m, d_cost=d_cost)
    return {k: v.detach() for k, v in losses.items()}, {n: p.grad.clone() for n, p in critic.named_parameters()}


def _random_critic(seed, dtype, D=12, K=5, h=40, B=7, near=None):
    g = torch.Generator().manual_seed(seed)
    critic = Critic(D, K, h).to(dtype)
    with torch.no_grad():
        for p in critic.parameters(): p.copy_(torch.randn(p.shape, generator=g, dtype=dtype) * 0.5)
    real = torch.rand(B, D, generator=g, dtype=dtype)
    fake = torch.rand(B, D, generator=g, dtype=dtype) if near is None else (real + near * torch.randn(B, D, generator=g, dtype=dtype)).clamp(0, 1)
    att = F.normalize(torch.rand(B, K, generator=g, dtype=dtype), dim=1)
    return critic, real, fake, att, torch.rand(B, 1, generator=g, dtype=dtype)


@pytest.mark.parametrize('dtype,tol', [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize('seed', [0, 1, 2])
def test_critic_grads_match_autograd(dtype, tol, seed):
    critic, real, fake, att, alpha = _random_critic(seed, dtype)
    lam, gammaD = (10.0, 1.0) if seed == 0 else (7.3, 2.5 * seed)
    ref_l, ref_g = _critic_autograd(critic, real, fake, att, alpha, lam, gammaD)
    critic.zero_grad(set_to_none=True)
    for _ in range(2):  # the second call writes into the gradients left by the first: overwritten, not accumulated
        ours = critic_grads(critic, real, fake, att, alpha, lam, gammaD)
        for k, v in ref_l.items(): torch.testing.assert_close(ours[k], v, atol=tol, rtol=tol, msg=k)
        for n, p in critic.named_parameters(): torch.testing.assert_close(p.grad, ref_g[n], atol=tol, rtol=tol, msg=n)
    # the penalty's own gradient is exercised: without it, the weights' gradients differ
    _, no_gp = _critic_autograd(critic, real, fake, att, alpha, 0.0, gammaD)
    assert float((no_gp['fc1.weight'] - ref_g['fc1.weight']).abs().max()) > 1e-3
    assert float((no_gp['fc2.weight'] - ref_g['fc2.weight']).abs().max()) > 1e-3


def test_critic_grads_exact_zeros_where_autograd_has_them():
    "Hidden units where every row's real and fake share the leaky-ReLU slope get exactly zero bias and attribute-column gradients, as with the released separate passes (oracle README caveat)."
    critic, real, fake, att, alpha = _random_critic(3, torch.float32, near=0.1)
    ref_l, ref_g = _critic_autograd(critic, real, fake, att, alpha, 10.0, 1.0)
    D = real.shape[1]
    with torch.no_grad():
        pr = critic.fc1(torch.cat([real, att], 1)) > 0; pf = critic.fc1(torch.cat([fake, att], 1)) > 0
    agree = (pr == pf).all(0)
    assert 0 < int(agree.sum()) < len(agree)
    assert (ref_g['fc1.bias'][agree] == 0).all() and (ref_g['fc1.weight'][agree, D:] == 0).all()
    critic.zero_grad(set_to_none=True)
    critic_grads(critic, real, fake, att, alpha, 10.0, 1.0)
    assert (critic.fc1.bias.grad[agree] == 0).all() and (critic.fc1.weight.grad[agree, D:] == 0).all()
    assert (critic.fc1.bias.grad[~agree] != 0).any() and (critic.fc2.bias.grad == 0).all()
    torch.testing.assert_close(critic.fc1.weight.grad, ref_g['fc1.weight'], atol=1e-5, rtol=1e-5)


def test_fused_adam_matches_per_tensor_loop():
    g = torch.Generator().manual_seed(0)
    shapes = [(30, 20), (30,), (1, 30)]
    init = [torch.randn(s, generator=g) for s in shapes]
    ps = {k: [nn.Parameter(t.clone()) for t in init] for k in ('loop', 'fused')}
    opt = dict(loop=torch.optim.Adam(ps['loop'], lr=1e-3, betas=(0.5, 0.999), foreach=False),
               fused=torch.optim.Adam(ps['fused'], lr=1e-3, betas=(0.5, 0.999), fused=True))
    for step in range(6):
        grads = [torch.randn(s, generator=g) * 10 ** -step for s in shapes]   # down to 1e-5: bias correction and eps matter
        for k in opt:
            for p, gr in zip(ps[k], grads): p.grad = gr.clone()
            opt[k].step()
    for a, b in zip(ps['loop'], ps['fused']):
        torch.testing.assert_close(a, b, atol=1e-7, rtol=1e-6)
        assert float((a.detach() - init[0 if a.shape == shapes[0] else 1 if a.shape == shapes[1] else 2]).abs().max()) > 1e-3  # it moved
        for key in ('exp_avg', 'exp_avg_sq'):
            torch.testing.assert_close(opt['loop'].state[a][key], opt['fused'].state[b][key], atol=1e-12, rtol=1e-6)
    m = EGGN(EGGNConfig(**SMALL), 8, 4)
    assert all(o.param_groups[0]['fused'] for o in make_optimisers(m, EGGNConfig(**SMALL)).values())
    assert not any(o.param_groups[0]['fused'] for o in make_optimisers(m, EGGNConfig(**SMALL, fused_adam=False)).values())


def test_fast_and_plain_training_agree():
    "One epoch with every fast path on (the defaults) against the released paths: same losses up to float rounding."
    dz = fabricated_zsl(seed=0)
    args = (dz['x_trainval'], dz['y_trainval'], dz['att'], dz['seen'], dz['unseen'])
    fast = train_eggn(*args, EGGNConfig(**MECH, epochs=1, seed=2))
    plain = train_eggn(*args, EGGNConfig(**MECH, epochs=1, seed=2, fast_critic=False, fused_adam=False, keep_heap=False))
    for k in ('loss_D', 'loss_G', 'wasserstein', 'gp_m'):
        assert fast.history[0][k] == pytest.approx(plain.history[0][k], rel=1e-3, abs=1e-4), k
    assert fast.lambda_gp == plain.lambda_gp


BLOCK = 40 * 2**20 // 4   # 40 MB of float32: above glibc's largest mmap threshold (32 MiB)


def _round_faults():
    "Page faults of one round: three 40 MB tensors, each filled and freed."
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(3):
        t = torch.ones(BLOCK)
        del t
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0


def _until_quiet(max_rounds=12, quiet=2_000):
    "Fault counts of rounds until two rounds in a row touch (almost) no fresh page, or `max_rounds`."
    counts = []
    while len(counts) < max_rounds and not (len(counts) >= 2 and max(counts[-2:]) < quiet):
        counts.append(_round_faults())
    return counts


@pytest.mark.skipif(eggn_mod._glibc() is None, reason='heap_reuse acts on glibc only')
def test_heap_reuse_avoids_fresh_pages():
    """Inside `heap_reuse`, blocks above glibc's mmap threshold come, once the heap has grown, from memory it holds.

    Why rounds until quiet, not one warm-up round: torch allocates with posix_memalign(64), and glibc (2.36) serves
    an aligned request of n bytes only from a free chunk of at least n + 64 + 32 bytes. A freed block of exactly n
    bytes that a small allocation (a tensor's bookkeeping, kept in glibc's tcache) separates from the heap's top
    cannot serve the next request of that size, so the heap grows by fresh pages, up to about 8 blocks here, until
    that small size's tcache bin is full. How long depends on the process's history: with one warm-up round the test
    failed 2 to 4 times in 8 when run alone (10,240 or 20,480 faults: one or two fresh 40 MB blocks), and passed after
    earlier tests had grown the heap. Outside `heap_reuse` no round is ever quiet: every block is a fresh mmap."""
    plain = [_round_faults() for _ in range(2)]
    with heap_reuse() as on:
        assert on
        counts = _until_quiet()
    with heap_reuse(False) as on: assert not on
    assert min(plain) > 20_000, plain
    assert max(counts[-2:]) < 2_000, counts   # a steady state with (almost) no fresh page


@pytest.mark.skipif(eggn_mod._glibc() is None, reason='heap_reuse acts on glibc only')
def test_nested_heap_reuse_stays_in_force_until_the_outer_exit(monkeypatch):
    "An inner use's exit leaves glibc as the outer use set it: blocks still come from the heap, settings unchanged."
    from scegg import core
    with heap_reuse():
        counts = _until_quiet()
        assert max(counts[-2:]) < 2_000, counts
        with heap_reuse() as inner: assert inner
        after_inner = [_round_faults() for _ in range(2)]   # the outer use is still in force: still no fresh pages
    assert max(after_inner) < 2_000, after_inner
    # the calls themselves: glibc is set on the outer entry and reset on the outer exit only
    libc, calls = eggn_mod._glibc(), []
    class Recording:
        def mallopt(self, *a): calls.append(('mallopt', *a)); return libc.mallopt(*a)
        def malloc_trim(self, *a): calls.append(('malloc_trim', *a)); return libc.malloc_trim(*a)
    monkeypatch.setattr(core, '_glibc', Recording)
    on = [('mallopt', core.M_MMAP_MAX, 0), ('mallopt', core.M_TRIM_THRESHOLD, 1 << 30)]
    with heap_reuse():
        assert calls == on
        with heap_reuse():
            with heap_reuse(): pass
            assert calls == on
        assert calls == on, calls                 # inner exits changed nothing
    assert calls[:2] == on and calls[2:] == [('mallopt', core.M_MMAP_MAX, 65536),
                                             ('mallopt', core.M_TRIM_THRESHOLD, 128 * 1024), ('malloc_trim', 0)]
