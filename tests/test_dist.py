"""Two gloo ranks under torchrun give the single process's feature store and SCEN loss curve."""
import json, os, socket, subprocess, sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scegg.core import read_json
from scegg.features import extract_features, open_store
from scegg.scen import SCENConfig, fit_scen, toy_benchmark

ROOT = Path(__file__).resolve().parents[1]


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def _torchrun(*args, n=2, timeout=60):
    env = {**os.environ, 'SCEGG_PROGRESS': '0', 'OMP_NUM_THREADS': '1', 'PYTHONPATH': str(ROOT)}
    cmd = [sys.executable, '-m', 'torch.distributed.run', f'--nproc_per_node={n}', '--master_addr=127.0.0.1',
           f'--master_port={_free_port()}', '-m', 'scegg.dist', *map(str, args)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


def test_two_rank_extraction_equals_single_process(tmp_path):
    g = np.random.default_rng(0)
    paths = []
    for i in range(22):  # 6 chunks of 4 (the last one short): ranks 0 and 1 own 3 each
        p = tmp_path / f'{i:03d}.png'
        Image.fromarray(g.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(p); paths.append(str(p))
    (tmp_path / 'list.txt').write_text('\n'.join(paths))
    one = extract_features(paths, tmp_path / 'one', backbone='simple_cnn', chunk_size=4, batch_size=4)
    _torchrun('extract', '--images', tmp_path / 'list.txt', '--out', tmp_path / 'two', '--backbone', 'simple_cnn',
              '--chunk-size', 4, '--batch-size', 4)
    two = open_store(tmp_path / 'two', paths, 'simple_cnn')
    m = read_json(tmp_path / 'two' / 'manifest.json')
    assert m['complete'] and m['chunks'] == list(range(6))
    ids = np.arange(22)
    assert torch.equal(one.maps(ids), two.maps(ids))


def test_two_rank_scen_matches_single_process_loss_curve(tmp_path):
    cfg = SCENConfig(stage1_iters=25, stage2_iters=10, batch_size=16)
    ref = fit_scen(*toy_benchmark(), cfg)
    _torchrun('scen', '--toy', '--out', tmp_path, '--stage1-iters', 25, '--stage2-iters', 10, '--batch-size', 16)
    h = json.loads((tmp_path / 'history.json').read_text())
    assert h['world_size'] == 2
    a, b = np.array(h['stage1_loss']), np.array(ref.history['stage1_loss'])
    assert len(a) == 25 and b[0] > b[-1]  # the loss moves, so agreement is not trivial
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(h['stage2_loss'], ref.history['stage2_loss'], rtol=1e-3, atol=1e-6)
    ck = torch.load(tmp_path / 'scen.pt', weights_only=False)
    assert ck['stage'] == 'done'
    for k, v in ref.scen.state_dict().items(): torch.testing.assert_close(ck['model'][k], v, rtol=1e-3, atol=1e-5)
