import os, time
os.environ.setdefault('SCEGG_PROGRESS', '0')
import pytest, torch, torch.nn as nn
torch.set_num_threads(1)  # tiny models: one thread is fastest, and avoids oversubscription on a shared CPU
from scegg.core import SceggError
from scegg.eggn import (EGGNConfig, EGGN, train_eggn, synthesize, evaluate_epoch, fabricated_zsl, weighted_l1,
                        vae_loss, update_lambda, generator_step, GeneratorDraws, _optimisers)

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
    opts = _optimisers(m, cfg)
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
