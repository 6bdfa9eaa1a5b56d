"The synthetic benchmark: determinism, counts, zero-shot structure, masks, pointing game, a learnability check."
import dataclasses, json, time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scegg.core import SceggError
from scegg.synthetic import (PARTS, VALUES, DIFFICULTIES, SYNTH_PRESETS, SynthConfig, PartMasks, _make_classes,
                             _area_downsample, load_synthetic, make_synthetic, pointing_game, render_image, _PAINT)

SMOKE = SYNTH_PRESETS['smoke']
P, V = len(PARTS), len(VALUES)


def _files(root: Path) -> dict:
    return {f.relative_to(root).as_posix(): f.read_bytes() for f in sorted(root.rglob('*')) if f.is_file() and f.name != 'meta.json'}


@pytest.fixture(scope='module')
def smoke(tmp_path_factory):
    return load_synthetic(tmp_path_factory.mktemp('syn') / 'smoke', 'smoke')


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a, b = make_synthetic(tmp_path / 'a', SMOKE), make_synthetic(tmp_path / 'b', SMOKE)
    fa, fb = _files(a), _files(b)
    assert len(fa) == 48 + 6 and fa == fb
    c = _files(make_synthetic(tmp_path / 'c', dataclasses.replace(SMOKE, seed=1)))
    assert not np.array_equal(np.load(a / 'class_attributes.npy'), np.load(tmp_path / 'c' / 'class_attributes.npy'))
    pngs = lambda f: sorted(v for k, v in f.items() if k.endswith('.png'))
    assert not set(pngs(fa)) & set(pngs(c))


def test_counts_and_splits(smoke):
    n, C, K = 6, 8, P * V
    assert (len(smoke.class_names), len(smoke.attribute_names), len(smoke.image_paths)) == (C, K, C * n)
    assert smoke.att.shape == smoke.original_att.shape == (C, K) and smoke.word_vectors.shape == (K, 16)
    assert (len(smoke.seen), len(smoke.unseen)) == (5, 3) and not set(smoke.seen) & set(smoke.unseen)
    sp = smoke.splits
    # 80/20 of each seen class's 6 images: round(0.2 * 6) = 1 test image per class
    assert len(sp['test_seen']) == 5 and len(sp['trainval']) == 25 and len(sp['test_unseen']) == 18
    for c in smoke.seen: assert (sp['test_seen'].labels == c).sum() == 1
    assert set(sp['test_unseen'].labels) == set(smoke.unseen)
    all_ids = np.concatenate([sp[k].ids for k in ('trainval', 'test_seen', 'test_unseen')])
    assert sorted(all_ids) == list(range(48))
    val = np.concatenate([sp[k].ids for k in ('val_train', 'val_seen', 'val_unseen')])
    assert sorted(val) == sorted(sp['trainval'].ids)          # the validation split touches no test image
    assert len(smoke.val_unseen_classes) == 2 and set(smoke.val_unseen_classes) <= set(smoke.seen)
    np.testing.assert_array_equal(smoke.image_labels[sp['trainval'].ids], sp['trainval'].labels)
    assert all(Path(p).exists() for p in smoke.image_paths)
    assert smoke.name == 'synthetic' and 'not evidence' in smoke.caveat


def test_attributes_normalised_and_continuous(smoke):
    np.testing.assert_allclose(np.linalg.norm(smoke.att, axis=1), 1, atol=1e-6)
    blocks = smoke.original_att.reshape(-1, P, V)
    np.testing.assert_allclose(blocks.sum(-1), 1, atol=1e-5)  # one distribution over values per part
    lo = DIFFICULTIES['easy'].p_main[0]
    assert (blocks.max(-1) >= lo - 1e-6).all() and ((blocks > 0) & (blocks < lo)).any()


@pytest.mark.parametrize('seed', [0, 1, 2, 3])
@pytest.mark.parametrize('preset', ['default', 'hard', 'smoke'])
def test_unseen_classes_recombine_seen_values(preset, seed):
    cfg = dataclasses.replace(SYNTH_PRESETS[preset], seed=seed)
    main, unseen, probs = _make_classes(cfg, np.random.default_rng(seed))
    seen = np.setdiff1d(np.arange(cfg.n_classes), unseen)
    assert len(unseen) == cfg.n_unseen
    for u in unseen:
        for p in range(P): assert main[u, p] in main[seen, p], (u, p)
        assert not (main[seen] == main[u]).all(1).any()
    d = (main[:, None] != main[None]).sum(-1) + P * np.eye(len(main), dtype=int)
    assert d.min() >= cfg.min_distance
    np.testing.assert_array_equal(probs.argmax(-1), main)


def test_word_vectors_structured(smoke):
    wv = smoke.word_vectors / np.linalg.norm(smoke.word_vectors, axis=1, keepdims=True)
    cos = wv @ wv.T
    same_part = np.equal.outer(np.arange(24) // V, np.arange(24) // V) & ~np.eye(24, dtype=bool)
    unrelated = ~np.equal.outer(np.arange(24) // V, np.arange(24) // V) & ~np.equal.outer(np.arange(24) % V, np.arange(24) % V)
    assert cos[same_part].mean() > cos[unrelated].mean() + 0.2


def test_masks_align_with_drawn_parts(smoke):
    pm = smoke.part_masks
    assert pm.parts.shape == (48, 64, 64) and pm.mask(0).dtype == bool
    checked = 0
    for i in range(48):
        m, vals = pm.mask(i), pm.values(i)
        assert not (m.sum(0) > 1).any()                        # each pixel shows at most one part
        img = np.asarray(Image.open(smoke.image_paths[i]), np.float32) / 255
        for p in range(P):
            assert m[p].sum() > 20, (i, PARTS[p])            # every part visible
            pattern, colour, _ = _PAINT[VALUES[vals[p]]]
            if pattern == 'solid':                             # the pixels under the mask have the part's colour
                assert np.abs(np.median(img[m[p]], 0) - colour).max() < 0.2, (i, PARTS[p], VALUES[vals[p]])
                checked += 1
    assert checked > 50
    # head above the body centre on average, tail beside it: geometry as designed
    ys = lambda p: np.mean([np.nonzero(pm.mask(i)[p])[0].mean() for i in range(48)])
    assert ys(0) < ys(1)


def test_render_returns_mask_of_what_is_visible():
    rng = np.random.default_rng(5)
    img, parts = render_image(np.array([0, 1, 2, 3]), 64, DIFFICULTIES['easy'], rng)
    head = parts == 1
    assert np.abs(np.median(img[head].astype(float), 0) - np.array(_PAINT['red'][1]) * 255).max() < 40
    assert ((parts == 3) & (parts == 2)).sum() == 0 and (parts == 2).sum() > (parts == 1).sum()   # body largest


def test_skip_mismatch_and_interrupted_folder(tmp_path):
    root = make_synthetic(tmp_path / 's', SMOKE)
    meta = json.loads((root / 'meta.json').read_text())
    assert meta['version'] == 1 and meta['config']['difficulty'] == 'easy' and meta['n_images'] == 48
    t = (root / 'meta.json').stat().st_mtime_ns
    make_synthetic(root, SMOKE)
    assert (root / 'meta.json').stat().st_mtime_ns == t
    with pytest.raises(SceggError, match='different configuration'):
        make_synthetic(root, dataclasses.replace(SMOKE, difficulty='hard'))
    # an interrupted run: no meta.json, a leftover staging folder -> regenerated cleanly
    (root / 'meta.json').unlink()
    (root / '.images.partial' / 'junk').mkdir(parents=True)
    make_synthetic(root, SMOKE)
    assert not (root / '.images.partial').exists() and len(list((root / 'images').rglob('*.png'))) == 48
    with pytest.raises(SceggError, match='difficulty'):
        make_synthetic(tmp_path / 'x', dataclasses.replace(SMOKE, difficulty='medium'))
    with pytest.raises(SceggError, match='no setting'):
        load_synthetic(tmp_path / 'y', 'smoke', n_clases=3)


def test_load_through_data_layer_and_default_root(tmp_path, monkeypatch):
    from scegg.datasets import load_dataset
    ds = load_dataset('synthetic', tmp_path / 'z', preset='smoke', images_per_class=5)
    assert len(ds.image_paths) == 40
    monkeypatch.setenv('SCEGG_DATA', str(tmp_path / 'home'))
    ds = load_synthetic(None, 'smoke')
    assert Path(ds.root).is_relative_to(tmp_path / 'home' / 'synthetic')


class _Masks:
    "One 4x4 image, 2 parts, 2 values: part 0 fills the top-left 2x2 pixels, part 1 the bottom row."
    part_names = ['a', 'b']
    part_of_attribute = np.array([0, 0, 1, 1])
    def __init__(self):
        self.parts = np.zeros((1, 4, 4), np.uint8); self.parts[0, :2, :2] = 1; self.parts[0, 3, :] = 2
    def mask(self, i): return self.parts[i][None] == np.array([1, 2])[:, None, None]
    def attributes_present(self, i): return np.array([1, 2])      # a shows value 1, b value 0


def test_pointing_game_hand_computed():
    pm = _Masks()
    # 2x2 grid: part a covers cell (0,0) fully; part b covers half of cells (1,0) and (1,1) -> both inside
    share = _area_downsample(pm.mask(0), 2, 2)
    np.testing.assert_allclose(share, [[[1, 0], [0, 0]], [[0, 0], [.5, .5]]])
    alpha = np.zeros((1, 4, 2, 2), np.float32)
    alpha[0, 1, 0, 0] = 1          # attribute 1 (part a): hit
    alpha[0, 2, 0, 1] = 1          # attribute 2 (part b): miss
    r = pointing_game(alpha, [0], pm)
    assert (r['hits'], r['total'], r['score']) == (1, 2, 0.5)
    assert r['chance'] == pytest.approx((1 / 4 + 2 / 4) / 2)
    assert r['per_part'] == {'a': 1.0, 'b': 0.0}
    alpha[0, 2, 1, 1] = 2          # now b's top cell is inside
    assert pointing_game(alpha, [0], pm)['score'] == 1.0
    # top-2 chance for b (2 of 4 cells inside): 1 - C(2,2)/C(4,2) = 5/6
    assert pointing_game(alpha, [0], pm, top=2)['per_part_chance']['b'] == pytest.approx(5 / 6)
    with pytest.raises(SceggError, match='attributes'):
        pointing_game(alpha[:, :3], [0], pm)


def test_pointing_game_perfect_random_wrong(smoke):
    pm, ids = smoke.part_masks, np.arange(48)
    perfect = np.zeros((48, 24, 8, 8), np.float32)
    wrong = np.zeros_like(perfect)
    for i in ids:
        sh = _area_downsample(pm.mask(i), 8, 8).reshape(P, 64)
        bg = np.argmin(sh.sum(0))                                  # a cell no part touches
        for k in range(24):
            perfect[i, k].flat[sh[pm.part_of_attribute[k]].argmax()] = 1
            wrong[i, k].flat[bg] = 1
    assert pointing_game(perfect, ids, smoke)['score'] == 1.0
    assert pointing_game(wrong, ids, smoke)['score'] == 0.0
    r = pointing_game(np.random.default_rng(0).random((48, 24, 8, 8)), ids, smoke)
    assert abs(r['score'] - r['chance']) < 0.08 and 0.03 < r['chance'] < 0.4


def test_localised_features_transfer_to_unseen(tmp_path):
    "Sanity: per-part colour features (ground-truth masks) give zero-shot accuracy far above chance and above global ones."
    from sklearn.linear_model import Ridge
    ds = load_synthetic(tmp_path / 'mid', 'default', n_classes=16, n_unseen=4, images_per_class=20)
    X = np.stack([np.asarray(Image.open(p), np.float32) / 255 for p in ds.image_paths])
    pm = ds.part_masks
    parts = np.stack([np.concatenate([f(X[i][m], 0) for m in pm.mask(i) for f in (np.mean, np.std)]) for i in range(len(X))])
    glob = np.concatenate([X.mean((1, 2)), X.std((1, 2))], 1)
    tv, tu = ds.splits['trainval'], ds.splits['test_unseen']
    def zsl(F):
        F = (F - F[tv.ids].mean(0)) / (F[tv.ids].std(0) + 1e-6)
        A = Ridge(alpha=1.0).fit(F[tv.ids], ds.att[tv.labels]).predict(F[tu.ids])
        pred = ds.unseen[(A @ ds.att[ds.unseen].T).argmax(1)]
        return np.mean([np.mean(pred[tu.labels == c] == c) for c in ds.unseen])
    a_parts, a_glob = zsl(parts), zsl(glob)
    print(f'ZSL accuracy among 4 unseen classes: part features {a_parts:.2f}, global {a_glob:.2f}')
    assert a_parts > 0.7 and a_parts > a_glob + 0.15


def test_default_size_generation_time(tmp_path):
    t = time.perf_counter()
    ds = load_synthetic(tmp_path / 'default', 'default')
    print(f'default synthetic preset (2400 images, 64 px) generated and loaded in {time.perf_counter() - t:.1f} s')
    assert len(ds.image_paths) == 2400 and (len(ds.seen), len(ds.unseen)) == (30, 10)
