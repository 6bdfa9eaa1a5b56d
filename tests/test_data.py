"Tests of scegg.data: real shared files (skipped when absent), xlsa17 fixtures, CUB-mini and bad input."
import os, pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.io as sio

os.environ.setdefault('SCEGG_PROGRESS', '0')
from scegg.core import SceggError
from scegg.data import (ZSLDataset, Split, load_xlsa17, make_validation_split, read_att_splits, load_word_vectors,
                        xlsa17_paths, default_shared_data)
from scegg.datasets import check_dataset, load_cub_mini, load_dataset
from scegg.fixtures import make_cub_fixture, make_cub_subset, make_xlsa17_fixture

SHARED = Path(os.environ.get('SCEGG_SHARED_DATA') or Path(__file__).resolve().parents[2]/'shared'/'data')
needs_shared = pytest.mark.skipif(not (SHARED/'CUB'/'att_splits.mat').is_file(), reason='../shared/data absent')


# ---------------------------------------------------------------- real att_splits.mat and word vectors
@needs_shared
@pytest.mark.parametrize('ds,C,K,tv,ts,tu,ns,nu', [('CUB', 200, 312, 7057, 1764, 2967, 150, 50),
                                                   ('SUN', 717, 102, 10320, 2580, 1440, 645, 72),
                                                   ('AWA2', 50, 85, 23527, 5882, 7913, 40, 10)])
def test_real_att_splits_counts(ds, C, K, tv, ts, tu, ns, nu):
    a = read_att_splits(SHARED/ds/'att_splits.mat')
    assert a.att.shape == (C, K) and a.original_att.shape == (C, K) and len(a.class_names) == C
    assert [len(a.locs[k]) for k in ('trainval', 'test_seen', 'test_unseen')] == [tv, ts, tu]
    assert (len(a.class_lists['seen']), len(a.class_lists['unseen'])) == (ns, nu)
    assert a.release == 'xlsa17-2019' and a.extras == {}
    np.testing.assert_allclose(np.linalg.norm(a.att, axis=1), 1, atol=1e-6)
    # locs are 0-based, disjoint, and cover all images
    allv = np.concatenate(list(a.locs.values()))
    assert allv.min() == 0 and len(np.unique(allv)) == tv + ts + tu == allv.max() + 1


@needs_shared
def test_real_release_detection():
    a = read_att_splits(SHARED/'SUN'/'xlsa17_2018_with_train_val_loc'/'att_splits.mat')
    assert a.release == 'xlsa17-2018' and (len(a.extras['train_loc']), len(a.extras['val_loc'])) == (11600, 1300)
    b = read_att_splits(SHARED/'AWA2'/'xlsa17_2018_with_train_val_loc'/'att_splits.mat')
    # the 2018 train/val locs cover trainval + test_seen: the reason they must not define validation
    assert len(b.extras['train_loc']) + len(b.extras['val_loc']) == 23527 + 5882
    assert read_att_splits(SHARED/'AWA1'/'att_splits.mat').release == 'xlsa17-2018'


@needs_shared
def test_real_awa_negative_to_zero():
    a = read_att_splits(SHARED/'AWA2'/'att_splits.mat')
    assert (a.original_att < 0).sum() == 4
    b = read_att_splits(SHARED/'AWA2'/'att_splits.mat', awa_negative_to_zero=True)
    assert (b.original_att < 0).sum() == 0 and (b.att < 0).sum() == 0
    np.testing.assert_allclose(np.linalg.norm(b.att, axis=1), 1, atol=1e-6)


@needs_shared
@pytest.mark.parametrize('ds,K', [('CUB', 312), ('SUN', 102), ('AWA2', 85)])
def test_real_word_vectors(ds, K):
    w = load_word_vectors(SHARED/ds/f'{ds}_attribute.pkl', K)
    assert w.shape == (K, 300) and w.dtype == np.float32 and np.isfinite(w).all()


# ---------------------------------------------------------------- real CUB-mini
@pytest.fixture(scope='module')
def cub_mini():
    if not (SHARED/'CUB'/'mini_dev'/'classes.txt').is_file(): pytest.skip('../shared/data absent')
    return load_cub_mini(SHARED/'CUB'/'mini_dev', SHARED/'CUB')


def test_cub_mini_counts(cub_mini):
    d = cub_mini
    assert (d.n_classes, len(d.image_paths), len(d.seen), len(d.unseen)) == (73, 4292, 47, 26)
    s = {k: len(v) for k, v in d.splits.items()}
    assert s['trainval'] + s['test_seen'] + s['test_unseen'] == 4292
    assert s['val_train'] + s['val_seen'] + s['val_unseen'] == s['trainval']
    assert set(d.splits['test_unseen'].classes) == set(d.unseen) and set(d.splits['trainval'].classes) == set(d.seen)
    assert (len(d.val_seen_classes), len(d.val_unseen_classes)) == (32, 15)
    assert d.att.shape == (73, 312) and d.word_vectors.shape == (312, 300)
    assert d.attribute_names[0] == 'has_bill_shape::curved_(up_or_down)' and d.caveat and 'ImageNet' in d.caveat
    assert all(Path(p).is_file() for p in d.image_paths[::97])
    assert d.summary()['splits']['trainval'] == s['trainval']


def test_cub_mini_att_matches_att_splits(cub_mini):
    "Each CUB-mini attribute row equals the original_att column of the same class in the real att_splits.mat."
    a = read_att_splits(SHARED/'CUB'/'att_splits.mat')
    col = {n.split('.', 1)[1]: i for i, n in enumerate(a.class_names)}
    for i, n in enumerate(cub_mini.class_names):
        np.testing.assert_allclose(cub_mini.original_att[i], a.original_att[col[n]], atol=1e-4)
        np.testing.assert_allclose(cub_mini.att[i], a.att[col[n]], atol=1e-6)
    # and the seen/unseen split is xlsa17 trainclasses1 / valclasses1
    tc = {l.split('.', 1)[1] for l in (SHARED/'CUB'/'trainclasses1.txt').read_text().split()}
    assert {cub_mini.class_names[i] for i in cub_mini.seen} <= tc


def test_cub_mini_validation_touches_no_test_image(cub_mini):
    _no_validation_leak(cub_mini)
    v = cub_mini.validation_view()
    assert v.name == 'CUB-mini:val' and v.n_classes == 47 and v.image_paths == cub_mini.image_paths


def test_load_dataset_cub_mini_default(cub_mini):
    if os.environ.get('SCEGG_SHARED_DATA') is None and default_shared_data() != SHARED:
        pytest.skip('default shared data location differs')
    d = load_dataset('cub-mini')
    assert d.n_classes == 73 and d.splits['test_unseen'].ids.tolist() == cub_mini.splits['test_unseen'].ids.tolist()


def _no_validation_leak(d):
    test = np.concatenate([d.splits['test_seen'].ids, d.splits['test_unseen'].ids])
    for k in ('val_train', 'val_seen', 'val_unseen'):
        assert not np.isin(d.splits[k].ids, test).any(), k
        assert np.isin(d.splits[k].ids, d.splits['trainval'].ids).all(), k
    assert not np.isin(d.splits['val_unseen'].classes, d.splits['val_train'].classes).any()
    assert np.intersect1d(d.splits['val_train'].ids, d.splits['val_seen'].ids).size == 0
    assert set(d.splits['val_unseen'].classes) == set(d.val_unseen_classes)
    assert set(d.splits['val_train'].classes) == set(d.val_seen_classes)


# ---------------------------------------------------------------- xlsa17 loader on generated fixtures
@pytest.mark.parametrize('ds', ['CUB', 'SUN', 'AWA2', 'AWA1', 'APY'])
def test_xlsa17_fixture_roundtrip(tmp_path, ds):
    make_xlsa17_fixture(tmp_path, ds, n_classes=8, n_unseen=2, n_val_unseen=2, per_class=5)
    d = load_dataset(ds, tmp_path)
    assert isinstance(d, ZSLDataset) and d.name == ds
    assert (d.n_classes, len(d.seen), len(d.unseen), len(d.image_paths)) == (8, 6, 2, 40)
    # 4 trainval + 1 test_seen image per seen class; val: 4 val-train classes, one held-out image each (20 % of 4)
    assert {k: len(v) for k, v in d.splits.items()} == dict(trainval=24, test_seen=6, test_unseen=10,
                                                             val_train=12, val_seen=4, val_unseen=8)
    assert all(Path(p).is_file() for p in d.image_paths)
    assert all(f'img_{l}_' in Path(p).name for p, l in zip(d.image_paths, d.image_labels))
    _no_validation_leak(d)
    s, problems = check_dataset(ds, tmp_path, verify_images=True)
    assert problems == [] and s['images'] == 40


def test_xlsa17_image_layout(tmp_path):
    make_xlsa17_fixture(tmp_path, 'AWA2', n_classes=4, n_unseen=1, n_val_unseen=1, per_class=3)
    d = load_xlsa17(tmp_path, 'AWA2')
    assert all(p.startswith(str(tmp_path/'AWA2'/'Animals_with_Attributes2'/'JPEGImages') + '/') for p in d.image_paths)
    make_xlsa17_fixture(tmp_path, 'SUN', n_classes=4, n_unseen=1, n_val_unseen=1, per_class=3)
    assert load_xlsa17(tmp_path, 'SUN').image_paths[0].startswith(str(tmp_path/'SUN'/'images') + '/')


def test_xlsa17_release_and_extras(tmp_path):
    make_xlsa17_fixture(tmp_path, 'CUB', release='2018')
    d = load_xlsa17(tmp_path, 'CUB')
    assert d.release == 'xlsa17-2018' and {'train_loc', 'val_loc'} <= set(d.extras)
    # validation is built from the class files, not from val_loc (which overlaps test_seen)
    assert np.isin(d.extras['val_loc'], d.splits['test_seen'].ids).any()
    _no_validation_leak(d)


def test_validation_view(tmp_path):
    make_xlsa17_fixture(tmp_path, 'CUB')
    d = load_xlsa17(tmp_path, 'CUB')
    v = d.validation_view()
    old = np.concatenate([d.val_seen_classes, d.val_unseen_classes])
    assert v.class_names == [d.class_names[i] for i in old]
    np.testing.assert_array_equal(v.att, d.att[old])
    assert v.seen.tolist() == list(range(len(d.val_seen_classes)))
    assert v.unseen.tolist() == list(range(len(d.val_seen_classes), len(old)))
    for new, src in (('trainval', 'val_train'), ('test_seen', 'val_seen'), ('test_unseen', 'val_unseen')):
        np.testing.assert_array_equal(v.splits[new].ids, d.splits[src].ids)
        np.testing.assert_array_equal(old[v.splits[new].labels], d.splits[src].labels)
    assert all(len(v.splits[k]) == 0 for k in ('val_train', 'val_seen', 'val_unseen'))
    assert len(v.image_labels) == len(d.image_labels)
    outside = ~np.isin(d.image_labels, old)
    assert (v.image_labels[outside] == -1).all() and (old[v.image_labels[~outside]] == d.image_labels[~outside]).all()
    with pytest.raises(SceggError, match='no validation classes'): v.validation_view()


def test_make_validation_split_properties():
    ids = np.arange(1000, 1050); lab = np.repeat(np.arange(5), 10)
    v = make_validation_split(ids, lab, [0, 1, 2], [4], holdout=0.3, seed=1)
    assert len(v['val_seen']) == 9 and len(v['val_train']) == 21 and len(v['val_unseen']) == 10
    assert set(v['val_unseen'].labels) == {4} and 3 not in set(v['val_train'].labels)
    w = make_validation_split(ids, lab, [0, 1, 2], [4], holdout=0.3, seed=2)
    assert v['val_seen'].ids.tolist() != w['val_seen'].ids.tolist()   # the seed matters
    assert make_validation_split(ids, lab, [0, 1, 2], [4], holdout=0.3, seed=1)['val_seen'].ids.tolist() == v['val_seen'].ids.tolist()


def test_split_checks():
    with pytest.raises(SceggError, match='3 ids but 2 labels'): Split('x', [1, 2, 3], [0, 1])


# ---------------------------------------------------------------- CUB-mini built from an official-layout CUB
def test_make_cub_subset_and_load(tmp_path):
    cub = make_cub_fixture(tmp_path/'CUB', n_classes=6, per_class=4)
    mini = make_cub_subset(cub, tmp_path/'mini', ['Bird_A', '002.Bird_B', 'Bird_D', 'Bird_E', 'Bird_F'])
    assert (mini/'images'/'Bird_A'/'0000.jpg').is_symlink()
    d = load_cub_mini(mini, cub)
    # trainclasses1 = A, B, C; valclasses1 = D, E, F; C was not copied
    assert d.class_names == ['Bird_A', 'Bird_B', 'Bird_D', 'Bird_E', 'Bird_F']
    assert (d.seen.tolist(), d.unseen.tolist()) == ([0, 1], [2, 3, 4])
    assert len(d.image_paths) == 20 and len(d.splits['test_unseen']) == 12
    assert len(d.splits['trainval']) == 4 and len(d.splits['test_seen']) == 4
    assert len(d.val_unseen_classes) == 0 and d.val_seen_classes.tolist() == [0, 1]   # 2 seen classes: no third one
    copy = make_cub_subset(cub, tmp_path/'mini2', ['Bird_A'], copy=True, max_per_class=2)
    assert not (copy/'images'/'Bird_A'/'0000.jpg').is_symlink() and len((copy/'images.txt').read_text().split('\n')) == 3
    with pytest.raises(SceggError, match="'Bird_Z' is not in"): make_cub_subset(cub, tmp_path/'m3', ['Bird_Z'])
    # custom class files, names without prefix
    (tmp_path/'s.txt').write_text('Bird_A\nBird_B\nBird_D\n'); (tmp_path/'u.txt').write_text('005.Bird_E\n')
    d2 = load_cub_mini(mini, cub, seen_classes_file=tmp_path/'s.txt', unseen_classes_file=tmp_path/'u.txt')
    assert d2.class_names == ['Bird_A', 'Bird_B', 'Bird_D', 'Bird_E'] and (d2.image_labels == -1).sum() == 4


def test_cub_mini_bad_input(tmp_path):
    cub = make_cub_fixture(tmp_path/'CUB')
    mini = make_cub_subset(cub, tmp_path/'mini', ['Bird_A', 'Bird_B', 'Bird_C', 'Bird_D'])
    with pytest.raises(SceggError, match='is not a folder'): load_cub_mini(tmp_path/'nope', cub)
    (mini/'classes.txt').write_text('0, Bird_A\n1, Not_A_Bird\n')
    with pytest.raises(SceggError, match="'Not_A_Bird', which is not a CUB class"): load_cub_mini(mini, cub)
    (mini/'classes.txt').write_text('0, Bird_A\nBird_B\n')
    with pytest.raises(SceggError, match='line 2 is .*expected "<id>, <value>"'): load_cub_mini(mini, cub)
    c = cub/'CUB_200_2011'/'attributes'/'class_attribute_labels_continuous.txt'
    c.write_text('1 2 nan 4 5\n' * 4)
    mini = make_cub_subset(cub, tmp_path/'mini', ['Bird_A', 'Bird_B', 'Bird_C', 'Bird_D'])
    with pytest.raises(SceggError, match='1 NaN or infinite|4 NaN or infinite'): load_cub_mini(mini, cub)
    c.write_text('1 2 3 4 5\n' * 3)
    with pytest.raises(SceggError, match='has 3 rows; expected one per CUB class \\(4\\)'): load_cub_mini(mini, cub)


# ---------------------------------------------------------------- bad xlsa17 input: one clear sentence each
@pytest.fixture
def fx(tmp_path):
    make_xlsa17_fixture(tmp_path, 'CUB')
    return tmp_path, xlsa17_paths(tmp_path, 'CUB')


def test_bad_missing_files(fx):
    root, P = fx
    P['res101'].unlink()
    with pytest.raises(SceggError, match=r'res101\.mat is missing; expected an xlsa17 res101\.mat'): load_xlsa17(root, 'CUB')
    make_xlsa17_fixture(root, 'CUB'); (P['dir']/'valclasses1.txt').unlink()
    with pytest.raises(SceggError, match='valclasses1.txt is missing'): load_xlsa17(root, 'CUB')
    make_xlsa17_fixture(root, 'CUB'); P['w2v'][0].unlink()
    with pytest.raises(SceggError, match='CUB_attribute.pkl is missing; expected attribute word vectors'): load_xlsa17(root, 'CUB')


def test_bad_foreign_and_truncated_mat(fx):
    root, P = fx
    good = P['att_splits'].read_bytes()
    P['att_splits'].write_text('this is a text file, not MATLAB')
    with pytest.raises(SceggError, match=r'att_splits\.mat could not be read as a MATLAB \.mat file'): load_xlsa17(root, 'CUB')
    P['att_splits'].write_bytes(good[:len(good) // 2])
    with pytest.raises(SceggError, match='could not be read as a MATLAB'): load_xlsa17(root, 'CUB')


def test_bad_missing_key(fx):
    root, P = fx
    m = sio.loadmat(P['att_splits']); del m['test_unseen_loc']
    sio.savemat(P['att_splits'], {k: v for k, v in m.items() if not k.startswith('__')})
    with pytest.raises(SceggError, match="has no key 'test_unseen_loc'"): load_xlsa17(root, 'CUB')
    make_xlsa17_fixture(root, 'CUB', images=False)
    r = sio.loadmat(P['res101']); sio.savemat(P['res101'], {'features': r['features'], 'labels': r['labels']})
    with pytest.raises(SceggError, match="res101.mat has no key 'image_files'"): load_xlsa17(root, 'CUB')


def test_bad_loc_out_of_range(fx):
    root, P = fx
    m = {k: v for k, v in sio.loadmat(P['att_splits']).items() if not k.startswith('__')}
    m['test_seen_loc'] = m['test_seen_loc'].copy(); m['test_seen_loc'][0, 0] = 46   # 45 rows in res101.mat
    sio.savemat(P['att_splits'], m)
    with pytest.raises(SceggError, match='test_seen_loc has index 46; expected at most 45'): load_xlsa17(root, 'CUB')
    m['test_seen_loc'][0, 0] = 0
    sio.savemat(P['att_splits'], m)
    with pytest.raises(SceggError, match='test_seen_loc has index 0; expected 1-based'): load_xlsa17(root, 'CUB')


def test_bad_labels_out_of_range(fx):
    root, P = fx
    r = {k: v for k, v in sio.loadmat(P['res101']).items() if not k.startswith('__')}
    r['labels'] = r['labels'].copy(); r['labels'][0, 0] = 10     # 9 classes
    sio.savemat(P['res101'], r)
    with pytest.raises(SceggError, match='labels run from 1 to 10; expected 1..9'): load_xlsa17(root, 'CUB')


@pytest.mark.parametrize('bad', [np.nan, np.inf])
def test_bad_nonfinite_attributes(fx, bad):
    root, P = fx
    m = {k: v for k, v in sio.loadmat(P['att_splits']).items() if not k.startswith('__')}
    m['original_att'][2, 3] = bad
    sio.savemat(P['att_splits'], m)
    with pytest.raises(SceggError, match='original_att has 1 NaN or infinite values'): load_xlsa17(root, 'CUB')


def test_bad_word_vector_rows(fx):
    root, P = fx
    with open(P['w2v'][0], 'wb') as f: pickle.dump(np.zeros((7, 300)), f)
    with pytest.raises(SceggError, match='has 7 rows; expected one per attribute \\(6\\)'): load_xlsa17(root, 'CUB')
    P['w2v'][0].write_text('not a pickle')
    with pytest.raises(SceggError, match='could not be read as a pickled array'): load_xlsa17(root, 'CUB')


def test_bad_class_files(fx):
    root, P = fx
    (P['dir']/'testclasses.txt').write_text('001.Bird_0\n')
    with pytest.raises(SceggError, match='testclasses.txt disagrees with the unseen classes'): load_xlsa17(root, 'CUB')
    (P['dir']/'testclasses.txt').write_text('999.Nobody\n')
    with pytest.raises(SceggError, match="names 1 classes not in att_splits.mat \\(e.g. '999.Nobody'\\)"): load_xlsa17(root, 'CUB')


def test_bad_dataset_name_and_root():
    with pytest.raises(SceggError, match="unknown dataset 'ImageNet'; expected one of CUB, SUN, AWA2, AWA1, APY, CUB-mini, CUB-224, synthetic"):
        load_dataset('ImageNet')
    with pytest.raises(SceggError, match='needs a data root'): load_dataset('SUN')


def test_check_dataset_reports_unreadable_and_missing_images(fx):
    root, P = fx
    d = load_xlsa17(root, 'CUB')
    Path(d.image_paths[0]).write_bytes(b'\xff\xd8 truncated jpeg')
    Path(d.image_paths[1]).unlink()
    s, problems = check_dataset('CUB', root, verify_images=True)
    assert s['images'] == 45 and len(problems) == 2
    assert problems[0] == f'1 of 45 images are missing, e.g. {d.image_paths[1]}'
    assert problems[1].startswith(d.image_paths[0]) and 'could not be read as an image' in problems[1]
    # without verification, only the missing file is reported
    assert check_dataset('CUB', root)[1] == [problems[0]]
    # a load failure becomes a single problem
    P['res101'].unlink()
    s, problems = check_dataset('CUB', root)
    assert len(problems) == 1 and 'res101.mat is missing' in problems[0]


# ---------------------------------------------------------------- images that only decoding finds; duplicated lines
def test_verify_images_decodes_and_lists_every_bad_image(fx):
    from PIL import Image
    root, P = fx
    d = load_xlsa17(root, 'CUB')
    for i in (0, 3, 7):   # a JPEG whose header is fine but whose scan data is cut: verify() passes it, decoding fails
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(d.image_paths[i], 'JPEG', quality=95)
        b = Path(d.image_paths[i]).read_bytes(); Path(d.image_paths[i]).write_bytes(b[:len(b) * 2 // 3])
    s, problems = check_dataset('CUB', root, verify_images=True)
    bad = [p for p in problems if 'could not be decoded' in p]
    assert [b.split(' could not')[0] for b in bad] == [d.image_paths[i] for i in (0, 3, 7)], problems


def _mini(tmp_path):
    cub = make_cub_fixture(tmp_path/'CUB', n_classes=6, per_class=4)
    return cub, make_cub_subset(cub, tmp_path/'mini', ['Bird_A', 'Bird_B', 'Bird_D', 'Bird_E', 'Bird_F'])


def test_cub_mini_duplicate_image_lines_rejected(tmp_path):
    cub, mini = _mini(tmp_path)
    lines = (mini/'images.txt').read_text().splitlines()
    (mini/'images.txt').write_text('\n'.join(lines + [lines[2]]) + '\n')                 # the same line twice
    with pytest.raises(SceggError, match=r"images.txt line 21 repeats image id 2 \(line 3\)"): load_cub_mini(mini, cub)
    iid, rel = lines[2].split(', ')
    (mini/'images.txt').write_text('\n'.join(lines + [f'99, {rel}']) + '\n')           # another id, the same file
    with pytest.raises(SceggError, match=rf"images.txt line 21 repeats image {rel} \(line 3\)"): load_cub_mini(mini, cub)
    lab = (mini/'image_class_labels.txt').read_text().splitlines()
    (mini/'images.txt').write_text('\n'.join(lines) + '\n')
    (mini/'image_class_labels.txt').write_text('\n'.join(lab + ['2, 3']) + '\n')       # a second label for image 2
    with pytest.raises(SceggError, match=r"image_class_labels.txt line 21 repeats image id 2"): load_cub_mini(mini, cub)
    (mini/'image_class_labels.txt').write_text('\n'.join(lab) + '\n')
    assert len(load_cub_mini(mini, cub).image_paths) == 20                                # the intact folder still loads
