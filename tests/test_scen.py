"SCEN (scegg.scen): longer checks than the notebook's: resume in both stages, ablation switches, learning."
import dataclasses, math, os
from pathlib import Path

import numpy as np
import pytest
import torch

from scegg.core import SceggError
from scegg.scen import (SCENConfig, LEN, GEN, SCEN, L_LCE, L_GCE, semantic_consistency_loss, MinMaxScaler,
                        ClassBalancedSampler, fit_scen, dense_features, attention_maps, scen_zsl_eval,
                        toy_benchmark, _per_class_acc)


@pytest.fixture(autouse=True)
def _one_thread():
    # tiny tensors: on a shared CPU, intra-op threads cost far more than they save
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope='module')
def small():
    return toy_benchmark(n_seen=6, n_unseen=3, K=6, D=8, per_class=6, seed=2)


TINY = SCENConfig(batch_size=8, stage1_iters=30, stage2_iters=30, lr=1e-3, cls_hidden=16, checkpoint_every=7, seed=5)


def _state(tr): return {k: v.clone() for k, v in tr.scen.state_dict().items()}


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a: assert torch.equal(a[k], b[k]), k


class _Crash(Exception): pass


def _crash(stage, n):
    def cb(s, it, loss):
        if s == stage and it == n: raise _Crash
    return cb


def test_hand_computed_len():
    "K=2, D=3, R=2, E=2, C=3 worked out by hand (see the notebook for the derivation)."
    m = LEN(torch.tensor([[2., 0], [0, 5]]), torch.tensor([[3., 4], [1, 0], [0, 2]]), 3)
    with torch.no_grad():
        m.W_att.copy_(torch.tensor([[math.log(3), 0, 0], [0, 0, 1.25 * math.log(2)]]))
        m.W_emb.copy_(torch.tensor([[1., 2, 0], [0, 0, 3]]))
        o = m(torch.tensor([[2., 0], [0, 3], [0, 4]])[None])
    torch.testing.assert_close(o.alpha[0], torch.tensor([[.75, .25], [1 / 3, 2 / 3]]))
    torch.testing.assert_close(o.H[0], torch.tensor([[.75, .15, .2], [1 / 3, .4, 8 / 15]]))
    torch.testing.assert_close(o.scores[0], torch.tensor([1.05, 1.6]))
    torch.testing.assert_close(o.logits[0], torch.tensor([1.91, 1.05, 1.6]))


@pytest.mark.parametrize('B,K,D,R,C', [(1, 1, 4, 1, 2), (3, 5, 7, 49, 9), (8, 312, 16, 196, 200)])
def test_shapes_and_attention(B, K, D, R, C):
    s = SCEN(torch.randn(K, 6), torch.rand(C, K), D, cls_hidden=8)
    with torch.no_grad():
        s.len_.W_att.normal_()
        o = s(torch.randn(B, D, R))
    assert o.alpha.shape == (B, K, R) and o.H.shape == (B, K, D) and o.scores.shape == (B, K)
    assert o.logits.shape == (B, C)
    torch.testing.assert_close(o.alpha.sum(-1), torch.ones(B, K))
    assert s.gen.compress(o.H, 'mlp').shape == (B, D) and s.gen(o.H).shape == (B, C)


def test_seen_losses_ignore_unseen_logits_and_scr_does_not():
    g = torch.Generator().manual_seed(0)
    logits, seen, y = torch.randn(5, 7, generator=g), torch.tensor([0, 2, 3, 6]), torch.tensor([0, 2, 6, 6, 3])
    bumped = logits.clone(); bumped[:, [1, 4, 5]] += torch.randn(5, 3, generator=g) * 10
    for loss in (L_LCE, L_GCE):
        assert torch.equal(loss(logits, y, seen), loss(bumped, y, seen))
        # equals plain CE over the seen columns with labels mapped into the restricted index
        torch.testing.assert_close(loss(logits, y, seen),
                                   torch.nn.functional.cross_entropy(logits[:, seen], torch.tensor([0, 1, 3, 3, 2])))
    target = torch.randn(5, 7, generator=g)
    assert semantic_consistency_loss(bumped, target) != semantic_consistency_loss(logits, target)


def test_minmax_guard_and_no_clip():
    xtr = torch.tensor([[1., -2, 3], [3., 2, 3]])
    sc = MinMaxScaler().fit(xtr)
    torch.testing.assert_close(sc.transform(xtr), torch.tensor([[0., 0, 0], [1., 1, 0]]))
    torch.testing.assert_close(sc.transform(torch.tensor([[5., -4, 4]])), torch.tensor([[2., -.5, 1]]))
    assert torch.isnan(MinMaxScaler(guard=False).fit(xtr).transform(xtr)[:, 2]).all()


def test_sampler_fill_and_release():
    labels = torch.arange(10).repeat_interleave(3)
    rel = ClassBalancedSampler(labels, torch.arange(10), 64, fill=False, generator=torch.Generator().manual_seed(0))
    b = rel.sample()
    assert len(b) == 60 and torch.equal(torch.bincount(labels[b], minlength=10), torch.full((10,), 6))
    fil = ClassBalancedSampler(labels, torch.arange(10), 64, generator=torch.Generator().manual_seed(0))
    cnt = torch.bincount(labels[fil.sample()], minlength=10)
    assert cnt.sum() == 64 and set(cnt.tolist()) == {6, 7}
    big = ClassBalancedSampler(torch.arange(100).repeat_interleave(2), torch.arange(100), 64)
    b = big.sample()
    assert len(b) == 64 and len(torch.unique(b // 2)) == 64


def test_stage2_freezes_stage1(small):
    data, maps = small
    a = _state(fit_scen(data, maps, dataclasses.replace(TINY, stage2_iters=0)))
    b = _state(fit_scen(data, maps, dataclasses.replace(TINY, stage2_iters=3)))
    for k in a:
        if k.startswith('cls_g'): assert not torch.equal(a[k], b[k]), k
        else: assert torch.equal(a[k], b[k]), k


def test_same_seed_same_result_other_seed_differs(small):
    data, maps = small
    a, b = fit_scen(data, maps, TINY), fit_scen(data, maps, TINY)
    _assert_same(_state(a), _state(b))
    assert a.history['stage1_loss'] == b.history['stage1_loss']
    c = fit_scen(data, maps, dataclasses.replace(TINY, seed=6))
    assert not torch.equal(c.scen.len_.W_emb, a.scen.len_.W_emb)


@pytest.mark.parametrize('stage,at', [('stage1', 10), ('stage1', 30), ('stage2', 16), ('stage2', 30)])
def test_resume_bit_identical(small, tmp_path, stage, at):
    data, maps = small
    ref = fit_scen(data, maps, TINY)
    with pytest.raises(_Crash):
        fit_scen(data, maps, TINY, checkpoint_dir=tmp_path, callback=_crash(stage, at))
    assert (tmp_path / 'scen.pt').exists() and not list(tmp_path.glob('.*tmp'))
    seen_steps = []
    r = fit_scen(data, maps, TINY, checkpoint_dir=tmp_path, resume=True, callback=lambda s, i, l: seen_steps.append((s, i)))
    _assert_same(_state(r), _state(ref))
    assert r.history['stage1_loss'] == ref.history['stage1_loss']
    assert r.history['stage2_loss'] == ref.history['stage2_loss']
    torch.testing.assert_close(r.scaler.min, ref.scaler.min, rtol=0, atol=0)
    # it restarted after the last checkpoint (every 7 iterations), not from the beginning
    assert seen_steps[0] == (stage, 7 * ((at - 1) // 7) + 1)
    # a finished run resumes without training
    again = []
    fit_scen(data, maps, TINY, checkpoint_dir=tmp_path, resume=True, callback=lambda *a: again.append(a))
    assert again == []


def test_resume_refuses_other_settings(small, tmp_path):
    data, maps = small
    fit_scen(data, maps, dataclasses.replace(TINY, stage1_iters=2, stage2_iters=2), checkpoint_dir=tmp_path)
    with pytest.raises(SceggError, match='different settings'):
        fit_scen(data, maps, dataclasses.replace(TINY, stage1_iters=3, stage2_iters=2), checkpoint_dir=tmp_path, resume=True)


def test_config_errors(small):
    data, maps = small
    with pytest.raises(SceggError, match="'mean' or 'mlp'"):
        fit_scen(data, maps, dataclasses.replace(TINY, runtime_compression='sum'))
    with pytest.raises(SceggError, match='no loss'):
        fit_scen(data, maps, dataclasses.replace(TINY, use_lce=False, use_gce=False))


def test_ablations_and_guide(small):
    data, maps = small
    ids = data.splits['test_unseen'].ids
    for over in [dict(use_lce=False), dict(use_gce=False), dict(runtime_compression='mlp'), dict(cls_g_loss='ce'),
                 dict(fill_batch=False, batch_size=32)]:
        tr = fit_scen(data, maps, dataclasses.replace(TINY, stage1_iters=5, stage2_iters=5, **over))
        x = dense_features(tr, maps, ids, batch_size=4)
        assert x.shape == (len(ids), 8) and torch.isfinite(x).all()
        with torch.no_grad(): out = tr.guide(x)
        assert out.shape == (len(ids), len(data.att))
        if over == dict(cls_g_loss='ce'):
            # the ablation's guide is CLS_g on x~, trained by CE over the seen classes (not the stage-1 classifier)
            assert len(tr.history['stage2_loss']) == 5
            with torch.no_grad(): torch.testing.assert_close(out, tr.scen.cls_g(x))
        if over == dict(runtime_compression='mlp'):
            with torch.no_grad():
                torch.testing.assert_close(x, tr.scaler.transform(tr.scen.gen.compress(tr.scen(maps.maps(ids)).H, 'mlp')))


def test_attention_maps_shapes(small):
    data, maps = small
    tr = fit_scen(data, maps, dataclasses.replace(TINY, stage1_iters=10, stage2_iters=1))
    am = attention_maps(tr, maps, [0, 3, 5])
    assert am['alpha'].shape == (3, 6, 3, 3) and am['global_map'].shape == (3, 3, 3) and am['scores'].shape == (3, 6)
    torch.testing.assert_close(am['alpha'].sum((2, 3)), torch.ones(3, 6))
    # trained attention is no longer uniform
    assert am['alpha'].std() > 1e-4


def test_per_class_accuracy_by_hand():
    assert _per_class_acc(torch.tensor([1, 1, 0, 2]), torch.tensor([1, 0, 0, 2])) == pytest.approx((1 + .5 + 1) / 3)


def test_learns_on_toy_benchmark():
    "300 iterations: SCEN's own CZSL accuracy >= 3x chance and better than the untrained V, W_att, W_emb."
    data, maps = toy_benchmark(seed=1)
    cfg = SCENConfig(batch_size=32, stage1_iters=300, stage2_iters=20, lr=1e-3, cls_hidden=32, seed=3)
    chance = 1 / len(data.unseen)
    trained = scen_zsl_eval(fit_scen(data, maps, cfg), maps, data)
    untrained = scen_zsl_eval(fit_scen(data, maps, dataclasses.replace(cfg, stage1_iters=0)), maps, data)
    assert trained['czsl_acc'] >= 3 * chance
    assert trained['czsl_acc'] > untrained['czsl_acc'] + 0.2
    assert trained['H'] > untrained['H']


def _have_synthetic():
    root = Path(__file__).resolve().parents[1] / 'scegg'
    return (root / 'synthetic.py').exists() and (root / 'features.py').exists()


@pytest.mark.skipif(os.environ.get('SCEGG_SLOW', '0') != '1', reason='slow (about 20 s): set SCEGG_SLOW=1')
@pytest.mark.skipif(not _have_synthetic(), reason='scegg.synthetic / scegg.features not built yet')
def test_learns_on_synthetic_benchmark(tmp_path):
    "The built-in synthetic benchmark through the simple_cnn backbone: SCEN's CZSL accuracy well above chance."
    from scegg.synthetic import load_synthetic
    from scegg.features import extract_features
    data = load_synthetic(tmp_path / 'syn', preset='default', images_per_class=30, word_dim=32)
    store = extract_features(data.image_paths, tmp_path / 'maps', backbone='simple_cnn', pretrained=False)
    cfg = SCENConfig(batch_size=32, stage1_iters=600, stage2_iters=100, lr=1e-3, cls_hidden=128, seed=0)
    r = scen_zsl_eval(fit_scen(data, store, cfg), store, data)
    print(r)
    assert r['czsl_acc'] >= 2 / len(data.unseen)
