"""A run's data-defining options (the loaders' split options) are part of its identity and of every record it writes:
the frozen table `DATA_DEFAULTS`, `effective_data_options`, `run_hash` and what a smoke run writes (issue 22)."""
import inspect, json, os

import pytest

os.environ.setdefault('SCEGG_PROGRESS', '0')
from scegg import config, pipeline
from scegg.config import (DATA_DEFAULTS, make_config, run_hash, effective_data_options, identity_data_options)
from scegg.datasets import load_cub_224
from scegg.runs import read_run_config

# The hashes every existing run cache is named by (before the data options were part of the identity).
OLD_HASHES = {'smoke': 'f27febc8dc78c178', 'synthetic': '164ec4ddd82f93b6', 'cub-mini': 'b5941d7fc93d16a6',
              'cub-cpu': '6e6fea7faaa277e8'}


def test_existing_run_hashes_stay():
    assert {p: run_hash(make_config(p)) for p in OLD_HASHES} == OLD_HASHES


def test_split_option_at_its_default_names_the_default_run_and_another_value_a_new_one():
    base = run_hash(make_config('cub-cpu'))
    # as the command line passes it: --set 'data_options={"split_seed": 0}'
    assert run_hash(make_config('cub-cpu', {'data_options': '{"split_seed": 0}'})) == base
    assert run_hash(make_config('cub-cpu', {'data_options': '{"split_seed": 0, "test_seen_share": 0.2}'})) == base
    one = run_hash(make_config('cub-cpu', {'data_options': '{"split_seed": 1}'}))
    assert one != base and one == run_hash(make_config('cub-cpu', {'data_options': {'split_seed': 1, 'seed': 0}}))
    assert run_hash(make_config('synthetic', {'data_options': {'holdout': 0.3}})) != OLD_HASHES['synthetic']


def test_a_changed_loader_default_gives_a_new_hash(monkeypatch):
    base = run_hash(make_config('cub-cpu'))
    now = config.loader_defaults
    monkeypatch.setattr(config, 'loader_defaults', lambda name, options=None: {**now(name, options), 'split_seed': 1})
    cfg = make_config('cub-cpu')
    assert effective_data_options(cfg)['split_seed'] == 1 and identity_data_options(cfg) == {'split_seed': 1}
    assert run_hash(cfg) != base
    assert run_hash(cfg) == run_hash(make_config('cub-cpu', {'data_options': {'split_seed': 1}}))
    assert DATA_DEFAULTS['CUB-224']['split_seed'] == 0   # the frozen table does not follow the loader


def test_frozen_table_holds_todays_loader_defaults_as_literals():
    sig = inspect.signature(load_cub_224).parameters
    assert DATA_DEFAULTS['CUB-224'] == {k: sig[k].default for k in ('test_seen_share', 'split_seed', 'holdout', 'seed')}
    assert DATA_DEFAULTS['CUB-224'] == {'test_seen_share': 0.2, 'split_seed': 0, 'holdout': 0.2, 'seed': 0}
    assert DATA_DEFAULTS['synthetic'] == {'holdout': 0.2, 'seed': 0, 'test_share': 0.2, 'val_unseen_share': 1 / 3}


def test_a_smoke_run_records_its_effective_data_options(tmp_path, monkeypatch):
    monkeypatch.setenv('SCEGG_DATA', str(tmp_path / 'data'))
    cfg = make_config('smoke')
    r = pipeline.train(cfg, out=tmp_path / 'run')
    want = {'preset': 'smoke', 'holdout': 0.2, 'seed': 0, 'test_share': 0.2, 'val_unseen_share': 1 / 3}
    assert r['data_options'] == want
    assert json.loads((tmp_path / 'run' / 'results.json').read_text())['data_options'] == want
    conf = json.loads((tmp_path / 'run' / 'config.json').read_text())
    assert conf['data_options'] == want and conf['config']['data_options'] == {'preset': 'smoke'}
    assert read_run_config(tmp_path / 'run') == cfg and r['config_hash'] == OLD_HASHES['smoke']
