"Feature store and extraction: end-to-end checks, and EfficientNet-Lite0 on real CUB-mini images."
import json
from pathlib import Path
import numpy as np, pytest, torch
from PIL import Image
from scegg.core import SceggError
from scegg.features import (IMAGENET_BIRDS, FeatureStore, extract_features, fabricate_store, get_backbone,
                            imagenet_top5, open_store, store_dir)


def _images(folder, n):
    rng = np.random.default_rng(1)
    paths = []
    for i in range(n):
        p = Path(folder) / f'{i:03d}.png'
        Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(p)  # not square: resize + crop
        paths.append(str(p))
    return paths


def test_store_layout_and_manifest(tmp_path):
    paths = _images(tmp_path, 7)
    out = store_dir(tmp_path, 'toy', 'simple_cnn')
    s = extract_features(paths, out, backbone='simple_cnn', batch_size=3, chunk_size=3, dataset_name='toy')
    assert out == tmp_path / 'features' / 'toy' / 'simple_cnn-64px'
    m = json.loads((out / 'manifest.json').read_text())
    assert (m['backbone'], m['image_size'], m['shape'], m['n_images'], m['chunk_size'], m['dtype'], m['chunks']) == \
        ('simple_cnn', 64, [64, 8, 8], 7, 3, 'float16', [0, 1, 2])
    assert [np.load(out / f'chunk-{c:05d}.npy').shape[0] for c in range(3)] == [3, 3, 1]
    assert np.load(out / 'chunk-00000.npy').dtype == np.float16
    assert s.maps([6, 0]).shape == (2, 64, 64) and s.pooled([6, 0]).shape == (2, 64)


def test_two_backbones_never_collide(tmp_path):
    assert store_dir(tmp_path, 'd', 'simple_cnn') != store_dir(tmp_path, 'd', 'efficientnet_lite0')
    assert store_dir(tmp_path, 'd', 'resnet101', 224) != store_dir(tmp_path, 'd', 'resnet101')


def test_store_refuses_other_backbone_in_same_folder(tmp_path):
    paths = _images(tmp_path, 3)
    extract_features(paths, tmp_path / 's', backbone='simple_cnn', chunk_size=2)
    with pytest.raises(SceggError, match='another backbone'):
        extract_features(paths, tmp_path / 's', backbone='efficientnet_lite0', chunk_size=2)


def test_corrupt_chunk_is_reported(tmp_path):
    s = fabricate_store(tmp_path, 5, shape=(2, 2, 2), chunk_size=2)
    np.save(tmp_path / 'chunk-00001.npy', np.zeros((2, 3), np.float16))
    with pytest.raises(SceggError, match='chunk-00001.npy holds'):
        FeatureStore(tmp_path).maps([2])


def test_unknown_backbone_lists_known():
    with pytest.raises(SceggError, match='efficientnet_lite0.*resnet101.*simple_cnn'):
        get_backbone('alexnet')


def test_resnet101_offline_error_says_where_weights_go(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path))  # empty cache
    import torch.hub
    monkeypatch.setattr(torch.hub, 'load_state_dict_from_url', lambda *a, **k: (_ for _ in ()).throw(OSError('offline')))
    with pytest.raises(SceggError, match='resnet101-63fe2227.pth'):
        get_backbone('resnet101').build(pretrained=True)


def test_pooled_memory_is_batched(tmp_path):
    "pooled over many ids equals the mean of maps, computed in batches."
    s = fabricate_store(tmp_path, 300, shape=(3, 2, 2), chunk_size=64)
    ids = np.arange(299, -1, -1)
    want = s.maps(ids).mean(-1)
    assert torch.allclose(s.pooled(ids, batch_size=7), want)


def test_cub_mini_efficientnet_birds(shared, tmp_path):
    imgs = sorted((shared / 'CUB' / 'mini_dev' / 'images').glob('*/*.jpg'))
    if not imgs: pytest.skip('no CUB-mini images')
    cub = imgs[::max(1, len(imgs) // 8)][:8]
    s = extract_features(cub, tmp_path / 'cub', backbone='efficientnet_lite0', batch_size=8, dataset_name='CUB-mini')
    assert (len(s), s.shape) == (8, (1280, 7, 7))
    top5 = imagenet_top5(get_backbone('efficientnet_lite0').build(), s.pooled(range(8))).tolist()
    hits = [any(i in IMAGENET_BIRDS for i in t) for t in top5]
    assert all(hits), f'top-5 ImageNet classes without a bird: {top5}'
    assert sum(t[0] in IMAGENET_BIRDS for t in top5) >= 6  # the top-1 class is a bird for most


def test_unreadable_image_in_worker_names_file(tmp_path):
    paths = _images(tmp_path, 6)
    Path(paths[4]).write_bytes(b'not an image')
    with pytest.raises(SceggError, match=r'^cannot read image .*004\.png'):
        extract_features(paths, tmp_path / 's', backbone='simple_cnn', batch_size=2, chunk_size=2, num_workers=2)
    assert FeatureStore(tmp_path / 's').complete_chunks() == [0, 1]
