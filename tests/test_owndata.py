"""Bring your own data set: a made-up scene set (6 classes, K=7 attributes of its own, generated images)
through check, extract, train, reproduce and predict from the command line, at smoke size; and the loader's errors."""
import json
from pathlib import Path

import numpy as np
import pytest

from scegg.cli import main
from scegg.core import SceggError
from scegg.datasets import load_dataset, canonical_dataset
from scegg.fixtures import make_image_set_fixture
from scegg.owndata import load_image_set, attribute_table_vectors
from scegg.config import make_config, differs_from_paper


def _flags(root, name='scenes'): return ['--root', str(root), '--name', name]


def test_end_to_end_scenes(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv('SCEGG_DATA', str(tmp_path / 'data'))
    monkeypatch.chdir(tmp_path)
    root = make_image_set_fixture(tmp_path / 'my-scenes')
    F = _flags(root)
    assert main(['data', 'check', 'image-set', *F]) == 0
    s = json.loads(capsys.readouterr().out)
    assert (s['name'], s['classes'], s['attributes'], s['seen'], s['unseen']) == ('scenes', 6, 7, 4, 2)
    assert 'CUB' not in s['caveat'] and 'word vectors: derived from the attribute table' in s['caveat']
    assert main(['data', 'extract', 'image-set', *F, '--backbone', 'simple_cnn']) == 0
    assert 'features/scenes/' in capsys.readouterr().out
    assert main(['train', 'image-set', *F, '--preset', 'own-smoke', '--out', 'runs/scenes']) == 0
    out, err = capsys.readouterr()
    r = json.loads((tmp_path / 'runs/scenes/results.json').read_text())
    assert r['dataset'] == 'scenes' and 'CUB' not in r['caveat']
    assert r['protocols']['validation']['fixed_schedule'] is True   # 2 validation-unseen classes: the stated fallback
    assert r['differs_from_paper']['dataset'] == ['image-set', 'SUN']   # compared with the released (SUN) configuration
    assert 'sc-egg [fixed schedule]' in out   # the summary says which selection it shows
    assert main(['predict', 'runs/scenes', str(root / 'images/forest/forest_000.png'), '--out', 'preds']) == 0
    out = capsys.readouterr().out
    assert 'forest' in out and (tmp_path / 'preds/forest-forest_000.attention.png').is_file()   # FOLDER-NAME: never two figures of one name
    assert main(['reproduce', '--preset', 'own-smoke', *F, '--out', 'outputs', '--notebooks', 'table1']) == 0
    t1 = (tmp_path / 'outputs/own-smoke/table1.md').read_text()
    assert '| scenes |' in t1 and 'CUB' not in t1 and '(paper, ' not in t1
    # --cached-only of another name: one error before any notebook runs
    assert main(['reproduce', '--preset', 'own-smoke', *_flags(root, 'other'), '--out', 'outputs', '--cached-only']) == 2
    assert 'none of the 2 Table 1 runs of other is finished' in capsys.readouterr().err


def test_progress_lines_for_eggn(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv('SCEGG_DATA', str(tmp_path / 'data')); monkeypatch.setenv('SCEGG_PROGRESS', '1')
    root = make_image_set_fixture(tmp_path / 's', n_classes=4, per_class=4)
    assert main(['train', 'image-set', *_flags(root), '--preset', 'own-smoke', '--set', 'method=tf-vaegan',
                 '--set', 'eszsl=false', '--out', str(tmp_path / 'run')]) == 0
    err = capsys.readouterr().err
    assert 'tf-vaegan [test]: pooled backbone features' in err and 'EGGN [test] GAN epoch 2/2' in err


def test_mat_table_word_vectors_and_names(tmp_path):
    root = make_image_set_fixture(tmp_path / 'm', table='mat', word_vectors=True)
    ds = load_dataset('Image_Set', root, name='m')   # any case, '_' for '-'
    assert canonical_dataset('image_set') == 'image-set'
    assert ds.attribute_names[:2] == ['has_water', 'has_vegetation'] and ds.word_vectors.shape == (7, 8)
    assert 'word vectors' not in ds.caveat
    (root / 'attributes.txt').unlink()
    with pytest.raises(SceggError, match='holds 7 attributes but no names'): load_image_set(root)


@pytest.mark.parametrize('text,msg', [
    ('class,a,b\nharbour,1,0\n', "class 'meadow' has no row"),
    ('class,a,b\nharbour,1,0\nmeadow,1\n', "row 3 ('meadow') has 1 values; expected 2"),
    ('class,a,b\nharbour,1,0\nmeadow,1,abc\n', "row 3, column 'b' is 'abc'; expected a number"),
    ('1,2,3\n4,5,6\n', 'the first row is numbers; expected a header'),
])
def test_table_errors_are_one_line(tmp_path, text, msg):
    root = make_image_set_fixture(tmp_path / 'e', n_classes=3, n_unseen=1)
    (root / 'attributes.csv').write_text(text)
    (root / 'unseen.txt').write_text('meadow\n') if 'no row' not in msg else None
    with pytest.raises(SceggError) as e: load_image_set(root)
    assert '\n' not in str(e.value)
    if 'no row' in msg: assert "names 'kitchen', which has no row in attributes.csv" in str(e.value)
    else: assert msg in str(e.value) and 'attributes.csv' in str(e.value)


def test_word_vector_errors(tmp_path):
    root = make_image_set_fixture(tmp_path / 'w')
    (root / 'word_vectors.csv').write_text('has_water,1,2\n')
    with pytest.raises(SceggError, match="no row for attribute 'has_vegetation'"): load_image_set(root)
    np.save(root / 'wv.npy', np.ones((5, 3)))
    with pytest.raises(SceggError, match=r'shape \(5, 3\); expected 7 x E'): load_image_set(root, word_vectors=root / 'wv.npy')
    ds = load_image_set(root, word_vectors='attributes')
    assert ds.extras['word_vectors'] == 'attributes' and ds.word_vectors.shape == (7, len(ds.seen))


def test_fallback_uses_seen_rows_only():
    att = np.random.default_rng(0).uniform(size=(5, 4))
    a, b = att.copy(), att.copy(); b[4] = 99   # an unseen class's row changes nothing
    np.testing.assert_array_equal(attribute_table_vectors(a, [0, 1, 2]), attribute_table_vectors(b, [0, 1, 2]))


def test_cub_mini_flags_name_the_generic_set(tmp_path):
    from scegg.cli import build_parser, _data_options
    a = build_parser().parse_args(['data', 'check', 'CUB', '--class-attributes', 'x.csv'])
    with pytest.raises(SceggError, match='image-set'): _data_options(a)
    assert make_config('own-small').dataset == 'image-set'
    assert differs_from_paper(make_config('own-small'))['backbone'] == ['efficientnet_lite0', 'resnet101']


def test_cub_mini_without_word_vectors(shared):
    ds = load_dataset('CUB-mini', word_vectors='attributes')
    assert ds.word_vectors.shape == (312, len(ds.seen)) and 'derived from the attribute table' in ds.caveat


def test_sun_attributes_for_scenes_of_ones_own(shared, tmp_path):
    from scegg.owndata import read_attribute_table
    names = read_attribute_table(shared / 'SUN' / 'att_splits.mat')[0][:15]
    root = tmp_path / 'sun15'
    for c in names:
        (root / 'images' / c).mkdir(parents=True)
        for j in range(3): (root / 'images' / c / f'{j}.jpg').write_bytes(b'')
    (root / 'unseen.txt').write_text('\n'.join(names[-5:]))
    ds = load_image_set(root, class_attributes=shared / 'SUN' / 'att_splits.mat', name='sun15')
    assert (ds.n_classes, ds.n_attributes, len(ds.seen), len(ds.val_unseen_classes)) == (15, 102, 10, 5)
    assert 'fixed schedule' not in ds.caveat   # 5 validation-unseen classes: epochs are chosen on the view


def test_default_fallback_is_identity_plus_table(tmp_path):
    ds = load_image_set(make_image_set_fixture(tmp_path / 'd'))
    K, Cs = ds.n_attributes, len(ds.seen)
    assert ds.extras['word_vectors'] == 'attributes+identity' and ds.word_vectors.shape == (K, K + Cs)
    np.testing.assert_allclose(ds.word_vectors[:, :K], np.eye(K))
    assert 'attributes+identity' in ds.caveat
