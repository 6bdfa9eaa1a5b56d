"Class order of restricted views: every per-class row follows the view's own class axis, not sorted class ids."
import dataclasses
import numpy as np
from scegg.data import load_xlsa17, make_validation_split, subset_classes
from scegg.fixtures import make_xlsa17_fixture


def test_validation_view_keeps_interleaved_class_order(tmp_path):
    # CUB-mini's validation classes are interleaved (not sorted); the fixture's are sorted, so make them interleaved
    make_xlsa17_fixture(tmp_path, 'CUB')
    d = load_xlsa17(tmp_path, 'CUB')
    vs = np.sort(d.val_seen_classes)[::-1].copy()          # descending: the view's order differs from sorted ids
    vu = np.sort(d.val_unseen_classes)[::-1].copy()
    assert len(vs) >= 2
    tv = d.splits['trainval']
    sp = make_validation_split(tv.ids, tv.labels, vs, vu, seed=0)
    d2 = dataclasses.replace(d, val_seen_classes=vs, val_unseen_classes=vu, splits={**d.splits, **sp})
    v = d2.validation_view()
    order = np.concatenate([vs, vu])
    assert not np.array_equal(order, np.sort(order))
    np.testing.assert_array_equal(v.att, d.att[order])
    np.testing.assert_array_equal(v.original_att, d.original_att[order])
    assert v.class_names == [d.class_names[i] for i in order]
    # an image's attribute row is the same in the view as in the benchmark
    for k in ('trainval', 'test_seen', 'test_unseen'):
        s = v.splits[k]
        np.testing.assert_array_equal(v.att[s.labels], d.att[d.image_labels[s.ids]])


def test_subset_classes_att_follows_given_order(tmp_path):
    make_xlsa17_fixture(tmp_path, 'CUB')
    d = load_xlsa17(tmp_path, 'CUB')
    seen, unseen = np.array([5, 1, 3]), np.array([4, 0])
    pick = lambda cls: np.flatnonzero(np.isin(d.image_labels, cls))
    from scegg.data import Split
    splits = {'trainval': Split('trainval', pick(seen), d.image_labels[pick(seen)]),
              'test_seen': Split('test_seen', pick(seen)[:2], d.image_labels[pick(seen)[:2]]),
              'test_unseen': Split('test_unseen', pick(unseen), d.image_labels[pick(unseen)])}
    v = subset_classes(d, seen, unseen, splits)
    np.testing.assert_array_equal(v.att, d.att[[5, 1, 3, 4, 0]])
    np.testing.assert_array_equal(v.att[v.splits['trainval'].labels], d.att[d.image_labels[pick(seen)]])
