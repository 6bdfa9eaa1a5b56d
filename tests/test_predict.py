"""A trained run used elsewhere: `scegg.predict` and `scegg predict` on a smoke run, and on a small real CUB-mini run."""
import dataclasses, os, sys
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault('SCEGG_PROGRESS', '0')
from scegg import pipeline
from scegg.core import SceggError
from scegg.classify import per_class_accuracy
from scegg.datasets import load_dataset
from scegg.predict import load_trained, predict, read_class_file
from scegg.cli import main
from conftest import shared_data

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def smoke(tmp_path_factory):
    "A finished smoke run, its data set and feature store (about 2 s)."
    base = tmp_path_factory.mktemp('predict')
    old = os.environ.get('SCEGG_DATA'); os.environ['SCEGG_DATA'] = str(base / 'data')
    try:
        r = pipeline.train('smoke', base / 'run')
        data = load_dataset('synthetic', preset='smoke')
        store = pipeline.ensure_store(data, pipeline.make_config('smoke'))
        yield base / 'run', r, data, store
    finally:
        if old is None: os.environ.pop('SCEGG_DATA', None)
        else: os.environ['SCEGG_DATA'] = old


def _maps(store, ids):
    return store.maps(ids).reshape(len(ids), *store.shape)


def test_saved_classifiers_reproduce_the_runs_last_curve_point(smoke):
    "CZSL accuracy and GZSL U, S of predictions on the test splits equal the last point of results.json's test curves."
    run_dir, r, data, store = smoke
    run = load_trained(run_dir)
    last = r['curves']['test'][-1]
    tu, ts = data.splits['test_unseen'], data.splits['test_seen']
    cz = predict(run, maps=_maps(store, tu.ids))
    assert cz.class_names == [data.class_names[i] for i in data.unseen]
    assert cz.probs.shape == (len(tu.ids), len(data.unseen))
    torch.testing.assert_close(cz.probs.sum(1), torch.ones(len(tu.ids)))
    assert per_class_accuracy(torch.as_tensor(data.unseen)[cz.probs.argmax(1)], tu.labels) == pytest.approx(last['czsl_acc'][-1], abs=1e-9)
    gz_u, gz_s = (predict(run, maps=_maps(store, s.ids), gzsl=True) for s in (tu, ts))
    assert gz_u.class_names == data.class_names
    assert per_class_accuracy(gz_u.probs.argmax(1), tu.labels) == pytest.approx(last['U'][-1], abs=1e-9)
    assert per_class_accuracy(gz_s.probs.argmax(1), ts.labels) == pytest.approx(last['S'][-1], abs=1e-9)
    # attention: one K x H x W map per image, each a distribution over the regions; the global map is their mean
    K, (D, H, W) = len(data.attribute_names), store.shape
    assert cz.alpha.shape == (len(tu.ids), K, H, W) and cz.global_map.shape == (len(tu.ids), H, W)
    torch.testing.assert_close(cz.alpha.sum((2, 3)), torch.ones(len(tu.ids), K))
    torch.testing.assert_close(cz.global_map, cz.alpha.mean(1))


def test_images_give_the_stores_predictions(smoke):
    "Images through the run's backbone and transform give what their stored (fp16) maps give."
    run_dir, r, data, store = smoke
    ids = data.splits['test_unseen'].ids[:5]
    a = predict(run_dir, images=[data.image_paths[i] for i in ids])
    b = predict(run_dir, maps=_maps(store, ids))
    torch.testing.assert_close(a.probs, b.probs, atol=2e-3, rtol=0)
    assert [t[0][0] for t in a.top(5)] == [t[0][0] for t in b.top(5)]
    assert all(len(t) == 3 and t[0][1] >= t[-1][1] for t in a.top(5))   # 3 unseen classes: top-5 gives 3, best first


@pytest.mark.parametrize('scorer', ['classifier', 'scen'])
def test_new_class_set_scores_exactly_those_classes(smoke, scorer):
    "Attribute vectors of a subset of classes (raw values, any order): the columns are exactly those classes."
    run_dir, r, data, store = smoke
    sub = [int(data.unseen[2]), int(data.seen[1]), int(data.unseen[0])]
    names = [data.class_names[i] for i in sub]
    ids = data.splits['test_unseen'].ids[:7]
    p = predict(run_dir, maps=_maps(store, ids), att=data.original_att[sub], class_names=names, scorer=scorer)
    assert p.class_names == names and p.probs.shape == (7, 3)
    torch.testing.assert_close(p.probs.sum(1), torch.ones(7))
    g = predict(run_dir, maps=_maps(store, ids), att=data.original_att[sub], class_names=names, gzsl=True, scorer=scorer)
    assert sorted(g.class_names) == sorted(set(names) | {data.class_names[i] for i in data.seen})
    assert g.probs.shape == (7, len(g.class_names))


def test_scen_scorer_is_scens_local_logits(smoke):
    "scorer='scen' is the softmax of SCEN's local class logits l_c = sum_i a_ci s_i over the given classes."
    from scegg.scen import scen_local_logits
    run_dir, r, data, store = smoke
    run = load_trained(run_dir)
    ids, sub = data.splits['test_unseen'].ids[:6], [int(c) for c in data.unseen]
    p = predict(run, maps=_maps(store, ids), att=data.att[sub], class_names=[data.class_names[i] for i in sub], scorer='scen')
    torch.testing.assert_close(p.probs, scen_local_logits(run.scen, store, ids)[:, sub].softmax(1), atol=1e-5, rtol=0)


def test_class_file(smoke, tmp_path):
    "A class file mixes run classes by name and new classes with their K values; a wrong width is one line."
    run_dir, r, data, store = smoke
    run = load_trained(run_dir)
    K = len(data.attribute_names)
    f = tmp_path / 'classes.txt'
    f.write_text(f'# a comment\n{data.class_names[4]}\nnew_bird ' + ','.join(['0.5'] * K) + '\n')
    names, att = read_class_file(f, run)
    assert names == [data.class_names[4], 'new_bird'] and att.shape == (2, K)
    np.testing.assert_allclose(att[0], data.att[4], atol=1e-6)
    f.write_text('bad 1 2 3\n')
    with pytest.raises(SceggError, match=f"3 attribute values for 'bad'; the run's classes have {K} attributes"):
        read_class_file(f, run)
    with pytest.raises(SceggError, match=f'the attribute matrix has 5 columns; the run.s classes have {K} attributes'):
        predict(run, maps=_maps(store, [0]), att=np.ones((2, 5)))


def test_cli_predict_prints_top5_and_writes_figures(smoke, tmp_path, capsys):
    run_dir, r, data, store = smoke
    imgs = [data.image_paths[i] for i in data.splits['test_unseen'].ids[:2]]
    assert main(['predict', str(run_dir), *imgs, '--gzsl', '--out', str(tmp_path / 'fig')]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f'{imgs[0]}  (GZSL, {len(data.class_names)} classes)'
    ranks = [l.split()[0] for l in out[1:6]]
    probs = [float(l.split()[-1]) for l in out[1:6]]
    assert ranks == ['1.', '2.', '3.', '4.', '5.'] and probs == sorted(probs, reverse=True)
    for im in imgs:
        png = tmp_path / 'fig' / f'{Path(im).parent.name}-{Path(im).stem}.attention.png'   # folder (class) and name
        assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n' and png.stat().st_size > 5000


def test_cli_predict_errors_are_one_line(smoke, tmp_path, capsys):
    run_dir, r, data, store = smoke
    img = data.image_paths[0]
    (tmp_path / 'half').mkdir(); (tmp_path / 'half' / 'config.json').write_text((run_dir / 'config.json').read_text())
    (tmp_path / 'bad.jpg').write_bytes(b'not an image')
    (tmp_path / 'w.txt').write_text('x 1 2\n')
    cases = [([str(tmp_path / 'nope'), img], 'does not exist'),
             ([str(tmp_path / 'half'), img], 'is an unfinished run (no results.json)'),
             ([str(run_dir), str(tmp_path / 'bad.jpg')], 'cannot read image'),
             ([str(run_dir), img, '--attributes', str(tmp_path / 'w.txt')], "2 attribute values for 'x'")]
    for argv, phrase in cases:
        assert main(['predict', *argv, '--out', str(tmp_path / 'o')]) == 2, argv
        out, err = capsys.readouterr()
        assert out == '' and len(err.strip().splitlines()) == 1 and phrase in err, err
        assert err.startswith('scegg: error: ')
    assert not (tmp_path / 'o').exists()   # nothing written for a refused command


# ---------------------------------------------------------------- a small real CUB-mini run
SLOW = os.environ.get('SCEGG_SLOW', '0') == '1'


def _cub_subset(mini: Path, out: Path, n_seen: int, n_unseen: int, per_seen: int, per_unseen: int):
    "A CUB-mini-layout folder of a few classes of `mini` (images linked, not copied) and its seen/unseen class files."
    cub = mini.parent
    strip = lambda n: n.split('.', 1)[1] if n[:3].isdigit() else n
    lines = lambda p: [l.split(',', 1) for l in p.read_text().splitlines() if l.strip()]
    classes = {int(i): n.strip() for i, n in lines(mini / 'classes.txt')}
    tr = {strip(l) for l in (cub / 'trainclasses1.txt').read_text().split()}
    va = {strip(l) for l in (cub / 'valclasses1.txt').read_text().split()}
    seen = [c for c in sorted(classes) if classes[c] in tr][:n_seen]
    unseen = [c for c in sorted(classes) if classes[c] in va][:n_unseen]
    lab = {int(i): int(c) for i, c in lines(mini / 'image_class_labels.txt')}
    split = {int(i): s.strip() for i, s in lines(mini / 'train_test_split.txt')}
    quota = {**{(c, '1'): per_seen for c in seen}, **{(c, '0'): 2 for c in seen}, **{(c, '*'): per_unseen for c in unseen}}
    count, rows = {}, []
    for i, rel in lines(mini / 'images.txt'):
        i, rel = int(i), rel.strip()
        c = lab[i]
        key = (c, split[i] if c in seen else '*')     # seen: trainval ('1') and test_seen ('0'); unseen: any image
        if count.get(key, 0) >= quota.get(key, 0): continue
        count[key] = count.get(key, 0) + 1
        rows.append((len(rows), rel, c, split[i]))
    (out / 'images').mkdir(parents=True)
    for _, rel, _, _ in rows:
        (out / 'images' / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / 'images' / rel).symlink_to((mini / 'images' / rel).resolve())
    (out / 'classes.txt').write_text(''.join(f'{c}, {classes[c]}\n' for c in sorted(seen + unseen)))
    (out / 'images.txt').write_text(''.join(f'{i}, {rel}\n' for i, rel, _, _ in rows))
    (out / 'image_class_labels.txt').write_text(''.join(f'{i}, {c}\n' for i, _, c, _ in rows))
    (out / 'train_test_split.txt').write_text(''.join(f'{i}, {s}\n' for i, _, _, s in rows))
    (out.parent / 'seen.txt').write_text(''.join(classes[c] + '\n' for c in seen))
    (out.parent / 'unseen.txt').write_text(''.join(classes[c] + '\n' for c in unseen))
    return out.parent / 'seen.txt', out.parent / 'unseen.txt'


@pytest.mark.skipif(not SLOW, reason='slow (10 min on 2 busy CPU cores, load 13: extracts 190 real images, trains SCEN and EGGN): set SCEGG_SLOW=1')
def test_cub_mini_run_predicts_unseen_birds(shared, tmp_path, capsys):
    "Train a tiny real CUB-mini run (30 seen birds, 4 images each), then classify 40 images of 4 bird species it never saw."
    mini = shared / 'CUB' / 'mini_dev'
    if not (mini / 'classes.txt').is_file(): pytest.skip(f'CUB-mini not found at {mini}')
    seen_f, unseen_f = _cub_subset(mini, tmp_path / 'sub' / 'mini', 30, 4, 4, 10)
    opts = {'cub_root': str(shared / 'CUB'), 'seen_classes_file': str(seen_f), 'unseen_classes_file': str(unseen_f)}
    cfg = pipeline.make_config('cub-mini', {'root': str(tmp_path / 'sub' / 'mini'), 'features_dir': str(tmp_path / 'features'), 'eszsl': False,
                                            'scen.stage1_iters': 100, 'scen.stage2_iters': 100, 'scen.cls_hidden': 256,
                                            'eggn.epochs': 20, 'eggn.batch_size': 16, 'eggn.hidden': 256, 'eggn.syn_num': 50})
    cfg = dataclasses.replace(cfg, data_options=opts)
    pipeline.train(cfg, tmp_path / 'run', protocols=('paper',))
    data = pipeline.load_run_data(cfg)
    tu = data.splits['test_unseen']
    assert len(tu.ids) == 40 and len(data.unseen) == 4
    imgs = [data.image_paths[i] for i in tu.ids]
    p = predict(tmp_path / 'run', images=imgs)
    assert p.class_names == [data.class_names[i] for i in data.unseen]
    assert p.probs.shape == (40, 4) and p.alpha.shape == (40, 312, 7, 7) and p.global_map.shape == (40, 7, 7)
    torch.testing.assert_close(p.probs.sum(1), torch.ones(40))
    acc = lambda p: float((torch.as_tensor(data.unseen)[p.probs.argmax(1)] == torch.as_tensor(tu.labels)).float().mean())
    # chance is 0.25; measured: 0.78 (final classifier), 0.65 (SCEN's scores)
    assert acc(p) > 0.4, f'top-1 accuracy {acc(p):.2f} on unseen birds does not beat chance (0.25) clearly'
    assert acc(predict(tmp_path / 'run', images=imgs, scorer='scen')) > 0.4
    # a new class set: two of the unseen birds, by their raw CUB attribute vectors
    two = [int(data.unseen[1]), int(data.unseen[3])]
    q = predict(tmp_path / 'run', images=imgs[:10], att=data.original_att[two], class_names=[data.class_names[i] for i in two])
    assert q.class_names == [data.class_names[i] for i in two] and q.probs.shape == (10, 2)
    assert main(['predict', str(tmp_path / 'run'), imgs[0], '--out', str(tmp_path / 'fig')]) == 0
    assert (tmp_path / 'fig' / f'{Path(imgs[0]).parent.name}-{Path(imgs[0]).stem}.attention.png').read_bytes()[:4] == b'\x89PNG'
    assert capsys.readouterr().out.splitlines()[1].startswith('  1. ')


@pytest.mark.parametrize('scorer', ['scen', 'classifier'])
def test_gzsl_given_classes_each_column_scores_its_named_class(smoke, scorer):
    """gzsl=True with given attribute vectors: column j of `probs` is scored with the attribute row of
    `class_names[j]` (seen classes from the run, given ones from `att`), not merely a column per name."""
    from scegg.predict import fit_classifier
    run_dir, r, data, store = smoke
    run = load_trained(run_dir)
    sub = [int(data.unseen[2]), int(data.unseen[0])]
    given = {data.class_names[i]: data.original_att[i] for i in sub}
    ids = data.splits['test_unseen'].ids[:6]
    p = predict(run, maps=_maps(store, ids), att=np.stack(list(given.values())), class_names=list(given), gzsl=True,
                scorer=scorer)
    assert sorted(p.class_names) == sorted(set(given) | {data.class_names[i] for i in data.seen})
    known = {data.class_names[int(i)]: run.att[int(i)] for i in data.seen}
    rows = torch.stack([known[n] if n in known else torch.nn.functional.normalize(torch.as_tensor(given[n]).float(), dim=0)
                        for n in p.class_names])                      # the row each column should be scored with
    if scorer == 'scen':   # l_c = sum_i a_ci s_i over the named classes' rows, in the names' order
        expected = (p.attribute_scores @ rows.T).softmax(1)
    else:                  # a classifier over exactly those rows, in that order (same seed as predict's)
        clf = fit_classifier(run, rows, seed=0)
        with torch.no_grad():
            g, _ = run.scen.compressed(_maps(store, ids).flatten(2))
            expected = clf(run.eggn.transform(run.scen.scaler.transform(g))).softmax(1)
    torch.testing.assert_close(p.probs, expected, atol=1e-5, rtol=0)
    assert not torch.allclose(p.probs, p.probs[:, torch.arange(len(rows)).roll(len(sub))], atol=1e-3)   # order matters
