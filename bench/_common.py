"Shared helpers of the benchmarks: machine record, RSS sampling, a fabricated dataset."
import os, threading, time
from pathlib import Path

import torch

MB = 2**20
RESULTS = Path(__file__).resolve().parent / 'results'


def machine(device='cpu') -> dict:
    "provenance() plus the load average and thread count at the time of the measurement."
    from scegg.core import provenance
    return {**provenance(device), 'load_average': [round(v, 2) for v in os.getloadavg()],
            'torch_threads': torch.get_num_threads()}


def status(key) -> int:
    "A field of /proc/self/status in bytes (RssAnon, RssFile, ...)."
    for line in Path('/proc/self/status').read_text().splitlines():
        if line.startswith(key + ':'): return int(line.split()[1]) * 1024
    return 0


class Peak:
    "Sample RssAnon and RssFile every 2 ms in a thread; the peaks above the level at entry."
    def __enter__(self):
        self.base_anon, self.base_file = status('RssAnon'), status('RssFile')
        self.anon, self.file, self._stop = self.base_anon, self.base_file, threading.Event()
        def run():
            while not self._stop.is_set():
                self.anon, self.file = max(self.anon, status('RssAnon')), max(self.file, status('RssFile'))
                time.sleep(0.002)
        self._t = threading.Thread(target=run, daemon=True); self._t.start()
        self.t0 = time.perf_counter()
        return self
    def __exit__(self, *a):
        self.seconds = time.perf_counter() - self.t0
        self._stop.set(); self._t.join()
    def row(self, **kw):
        return dict(**kw, seconds=round(self.seconds, 2), load_average=[round(v, 2) for v in os.getloadavg()],
                    rss_anon_start_mb=round(self.base_anon / MB, 1), rss_anon_peak_mb=round(self.anon / MB, 1),
                    rss_anon_growth_mb=round((self.anon - self.base_anon) / MB, 1),
                    rss_file_peak_mb=round(self.file / MB, 1))


def fake_data(n, K=312, C=200, n_seen=150, seed=0):
    "A dataset-like namespace for n fabricated maps: random L2-normalised attributes, every seen class has images."
    import types
    from collections import namedtuple
    import numpy as np
    g = np.random.default_rng(seed)
    Split = namedtuple('Split', 'name ids labels')
    seen = np.sort(g.permutation(C)[:n_seen])
    att = g.random((C, K)).astype(np.float32); att /= np.linalg.norm(att, axis=1, keepdims=True)
    ids = np.arange(n)
    return types.SimpleNamespace(att=att, word_vectors=g.normal(size=(K, 300)).astype(np.float32), seen=seen,
                                 unseen=np.setdiff1d(np.arange(C), seen),
                                 splits={'trainval': Split('trainval', ids, seen[ids % n_seen])})


def stage3_epoch_at_cub_cpu_sizes(n: int = 640):
    """`one_epoch(bf16)`: one stage-3 epoch (`train_eggn`, 1 GAN epoch, no evaluation) of the `cub-cpu` EGGN at CUB-224
    sizes (D 1280, K 312, hidden 1024, 150 seen / 50 unseen classes) on `n` random features, with a random guide."""
    import dataclasses
    from scegg.config import make_config
    from scegg.eggn import train_eggn
    cfg0 = make_config('cub-cpu').eggn
    D, K, C = 1280, 312, 200
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, D, generator=g); y = torch.arange(n) % 150
    att = torch.nn.functional.normalize(torch.rand(C, K, generator=g), dim=1)
    seen, unseen = torch.arange(150), torch.arange(150, 200)
    guide = torch.nn.Sequential(torch.nn.Linear(D, 1024), torch.nn.LeakyReLU(0.01), torch.nn.Linear(1024, C))
    return lambda bf16: train_eggn(x, y, att, seen, unseen, dataclasses.replace(cfg0, epochs=1, bf16=bf16), guide=guide)
