"""The rules a reported number rests on, each checked by pytest (the notebooks check some too, but only at smoke size
under `nbdev-test`): the MinMax scaler is fitted on trainval alone, the GZSL classifier trains on trainval and the
synthetic unseen features, the validation protocol picks its epochs on the validation curves and reads the test
curves once at exactly those epochs, `bf16` is part of a run's identity, and the paired interval uses Student's t."""
import dataclasses, math, os

import numpy as np
import pytest
import torch

os.environ.setdefault('SCEGG_PROGRESS', '0')
from scegg import pipeline
from scegg.classify import zsl_curves, train_final_classifier, harmonic_mean, per_class_accuracy
from scegg.core import config_hash
from scegg.pipeline import protocol_results
from scegg.config import run_hash, make_config, SPEED_ONLY
from scegg.tables import paired_differences
from scegg.scen import SCENConfig, fit_scen, dense_features, toy_benchmark


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope='module')
def toy():
    return toy_benchmark(n_seen=6, n_unseen=3, K=6, D=8, per_class=6, seed=2)


# ---------------------------------------------------------------------------------------------- the MinMax scaler
def _beyond_trainval(x_tv, x_other):
    "Whether some column of x_other leaves trainval's range: only then can a fit on more than trainval show."
    return bool(((x_other < x_tv.min(0).values) | (x_other > x_tv.max(0).values)).any())


def test_scen_scaler_is_fitted_on_trainval_only(toy):
    "SC-EGG: x~ = (g - min) / (max - min) with min and max per dimension over the trainval images, nothing else."
    data, maps = toy
    tr = fit_scen(data, maps, SCENConfig(batch_size=8, stage1_iters=5, stage2_iters=5, cls_hidden=16, seed=5))
    ids = {k: data.splits[k].ids for k in ('trainval', 'test_seen', 'test_unseen')}
    with torch.no_grad():
        g = {k: tr.scen.gen.compress(tr.scen.len_(maps.maps(v)).H, tr.cfg.runtime_compression) for k, v in ids.items()}
    assert _beyond_trainval(g['trainval'], torch.cat([g['test_seen'], g['test_unseen']]))
    torch.testing.assert_close(tr.scaler.min, g['trainval'].min(0).values, atol=1e-6, rtol=0)
    torch.testing.assert_close(tr.scaler.min + tr.scaler.scale, g['trainval'].max(0).values, atol=1e-6, rtol=0)
    x_tv = dense_features(tr, maps, ids['trainval'])
    torch.testing.assert_close(x_tv.min(0).values, torch.zeros(x_tv.shape[1]), atol=1e-5, rtol=0)
    torch.testing.assert_close(x_tv.max(0).values, torch.ones(x_tv.shape[1]), atol=1e-5, rtol=0)


def test_baseline_scaler_is_fitted_on_trainval_only(toy):
    "TF-VAEGAN baseline: pooled backbone features scaled by trainval's per-dimension min and max."
    data, maps = toy
    cfg = make_config('smoke', {'method': 'tf-vaegan'})
    xs, *_ = pipeline.view_features(data, maps, cfg, torch.device('cpu'), evaluate=False)
    pooled = {k: maps.pooled(data.splits[k].ids) for k in ('trainval', 'test_seen', 'test_unseen')}
    assert _beyond_trainval(pooled['trainval'], torch.cat([pooled['test_seen'], pooled['test_unseen']]))
    lo, hi = pooled['trainval'].min(0).values, pooled['trainval'].max(0).values
    for k, (x, y) in xs.items():
        torch.testing.assert_close(x, (pooled[k] - lo) / (hi - lo), atol=1e-6, rtol=0, msg=k)
        assert torch.equal(y, torch.as_tensor(np.asarray(data.splits[k].labels), dtype=torch.long)), k


# ---------------------------------------------------------------------------------------------- the GZSL classifier
def _separable(seed=0, n_seen=4, n_unseen=3, D=10, n=12):
    "Class means far apart: a classifier that never saw a seen class cannot name it."
    g = torch.Generator().manual_seed(seed)
    C = n_seen + n_unseen
    mu = torch.rand(C, D, generator=g)
    draw = lambda cls: (mu[cls].repeat_interleave(n, 0) + 0.02 * torch.randn(len(cls) * n, D, generator=g),
                        cls.repeat_interleave(n))
    seen, unseen = torch.arange(n_seen), torch.arange(n_seen, C)
    return seen, unseen, draw(seen), draw(unseen), draw(seen), draw(unseen)   # trainval, syn, test_seen, test_unseen


def test_gzsl_classifier_trains_on_trainval_and_synthetic_features():
    """The GZSL curves are those of one classifier over all classes trained on [trainval; synthetic unseen] (seed
    + 1), and it recognises the seen test images; the CZSL curve is the unseen-only classifier's."""
    seen, unseen, (x_tv, y_tv), (x_syn, y_syn), (x_ts, y_ts), (x_tu, y_tu) = _separable()
    kw = dict(lr=5e-2, epochs=6, batch_size=16)
    c = zsl_curves(x_syn, y_syn, x_tv, y_tv, x_ts, y_ts, x_tu, y_tu, seen, unseen, seed=3, **kw)
    gz = train_final_classifier(torch.cat([x_tv, x_syn]), torch.cat([y_tv, y_syn]), torch.cat([seen, unseen]),
                                dict(U=(x_tu, y_tu), S=(x_ts, y_ts)), seed=4, **kw)
    cz = train_final_classifier(x_syn, y_syn, unseen, dict(acc=(x_tu, y_tu)), seed=3, **kw)
    for k in ('U', 'S'): assert c[k] == pytest.approx(gz[k], abs=1e-9), k
    assert c['czsl_acc'] == pytest.approx(cz['acc'], abs=1e-9)
    assert c['H'] == pytest.approx([harmonic_mean(u, s) for u, s in zip(gz['U'], gz['S'])], abs=1e-12)
    assert c['S'][-1] > 0.9, c['S']   # seen classes are learnt from trainval; without it S would be 0


# ---------------------------------------------------------------------------------------------- the validation protocol
def _curves(n_gan, n_clf, seed):
    "Per GAN epoch, classifier-epoch curves of distinct values (so reading a neighbouring epoch always shows)."
    g = np.random.default_rng(seed)
    out = []
    for _ in range(n_gan):
        U, S, acc = (g.permutation(n_clf) / 100 + g.uniform(.1, .8, n_clf) for _ in range(3))
        out.append(dict(czsl_acc=list(acc), U=list(U), S=list(S), H=[harmonic_mean(u, s) for u, s in zip(U, S)]))
    return out


@pytest.mark.parametrize('seed', [0, 1, 2, 3])
def test_validation_protocol_reads_test_once_at_the_validation_epochs(seed):
    test_c, val_c = _curves(6, 5, seed), _curves(6, 5, 100 + seed)
    # hand selection: the GAN epoch of the best validation H, then that epoch's best validation classifier epochs
    ge = max(range(6), key=lambda e: (max(val_c[e]['H']), -e))
    gz = max(range(5), key=lambda i: (val_c[ge]['H'][i], -i))
    cz = max(range(5), key=lambda i: (val_c[ge]['czsl_acc'][i], -i))
    v = protocol_results(test_c, val_c)['validation']
    assert (v['gan_epoch'], v['gzsl_clf_epoch'], v['czsl_clf_epoch']) == (ge, gz, cz)
    assert v['H'] == test_c[ge]['H'][gz] and v['U'] == test_c[ge]['U'][gz] and v['S'] == test_c[ge]['S'][gz]
    assert v['czsl_acc'] == test_c[ge]['czsl_acc'][cz]
    assert v['val_H'] == max(max(c['H']) for c in val_c) and v['val_czsl_acc'] == val_c[ge]['czsl_acc'][cz]
    # the paper protocol, by contrast, takes the best test numbers
    p = protocol_results(test_c, val_c)['paper']
    assert p['H'] == max(max(c['H']) for c in test_c) and p['czsl_acc'] == max(max(c['czsl_acc']) for c in test_c)


def test_validation_protocol_differs_from_test_selection():
    "The curves above are such that choosing on the test curves would pick other epochs (so the test can tell)."
    picks = []
    for seed in range(4):
        test_c, val_c = _curves(6, 5, seed), _curves(6, 5, 100 + seed)
        v = protocol_results(test_c, val_c)['validation']
        picks.append(v['H'] < max(max(c['H']) for c in test_c))
    assert any(picks)


@pytest.fixture(scope='module')
def smoke_run(tmp_path_factory):
    return pipeline.train('smoke', tmp_path_factory.mktemp('rules') / 'run')


def test_smoke_run_validation_numbers_come_from_its_curves(smoke_run):
    "End to end: a run's validation numbers are its test curves at the epochs its validation curves choose."
    r = smoke_run
    tc, vc = r['curves']['test'], r['curves']['validation']
    v = r['protocols']['validation']
    ge = v['gan_epoch']
    assert max(vc[ge]['H']) == max(max(c['H']) for c in vc) == v['val_H']
    assert vc[ge]['H'][v['gzsl_clf_epoch']] == v['val_H']
    assert vc[ge]['czsl_acc'][v['czsl_clf_epoch']] == max(vc[ge]['czsl_acc']) == v['val_czsl_acc']
    for k in ('U', 'S', 'H'): assert v[k] == tc[ge][k][v['gzsl_clf_epoch']], k
    assert v['czsl_acc'] == tc[ge]['czsl_acc'][v['czsl_clf_epoch']]


# ---------------------------------------------------------------------------------------------- a run's identity
def test_bf16_is_part_of_a_runs_identity():
    "bf16 changes the numbers, so it changes the hash; off, it is left out (runs cached before it existed stay valid)."
    c = make_config('smoke')
    on = make_config('smoke', {'eggn.bf16': True})
    assert 'bf16' not in SPEED_ONLY['eggn']
    assert run_hash(on) != run_hash(c)
    d_off, d_on = dataclasses.asdict(c), dataclasses.asdict(on)
    for d in (d_off, d_on):
        for part, keys in SPEED_ONLY.items():
            for k in keys: d[part].pop(k)
    d_off['eggn'].pop('bf16')
    for d in (d_off, d_on): d.pop('precision'); d['scen'].pop('bf16')   # added later still, at their old values
    assert run_hash(c) == config_hash(d_off)
    assert run_hash(on) == config_hash(d_on) and d_on['eggn']['bf16'] is True


# ---------------------------------------------------------------------------------------------- the paired interval
def _res(acc, h, seed):
    p = dict(czsl_acc=acc, U=.5, S=.5, H=h)
    return {'seed': seed, 'protocols': {'paper': p, 'validation': p}}


@pytest.mark.parametrize('diffs', [[5.0, 10.0], [5.0, 10.0, 15.0], [1.0, -2.0, 4.0, 0.5, 3.0]])
def test_paired_interval_uses_students_t(diffs):
    "95 % interval of the per-seed differences: mean -+ t(0.975, n - 1) s / sqrt(n), t from the table (not z = 1.96)."
    t975 = {1: 12.7062, 2: 4.3027, 4: 2.7764}[len(diffs) - 1]   # Student's t table
    a = [_res(.5 + d / 100, .4, s) for s, d in enumerate(diffs)]
    b = [_res(.5, .4 - d / 200, s) for s, d in enumerate(diffs)]
    df = paired_differences(a, b, 'validation')
    n, mean = len(diffs), sum(diffs) / len(diffs)
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    half = t975 * sd / math.sqrt(n)
    assert df.loc['mean', 'Acc'] == pytest.approx(mean, abs=1e-9)
    assert df.loc['std', 'Acc'] == pytest.approx(sd, abs=1e-9)
    assert df.loc['ci95 low', 'Acc'] == pytest.approx(mean - half, abs=1e-3 * sd)
    assert df.loc['ci95 high', 'Acc'] == pytest.approx(mean + half, abs=1e-3 * sd)
    assert df.loc['ci95 high', 'H'] - df.loc['mean', 'H'] == pytest.approx(t975 * sd / 2 / math.sqrt(n), rel=1e-4)
