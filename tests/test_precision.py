"""One precision switch for the whole run (`RunConfig.precision`): what it turns on, its identity, its feature store."""
import dataclasses, json

import pytest
import torch

from scegg.core import SceggError, config_hash
from scegg.config import make_config, run_hash, ADDED_LATER
from scegg.pipeline import extract_command, train
from conftest import cli, one_line_error


def test_bf16_switches_every_stage_and_is_part_of_the_identity():
    fp, bf = make_config('smoke'), make_config('smoke', {'precision': 'bf16'})
    assert (fp.precision, fp.scen.bf16, fp.eggn.bf16) == ('fp32', False, False)
    assert (bf.precision, bf.scen.bf16, bf.eggn.bf16) == ('bf16', True, True)
    assert run_hash(bf) != run_hash(fp) != run_hash(make_config('smoke', {'eggn.bf16': True}))
    # at fp32 the settings added later are left out: run caches made before them keep their hashes
    d = dataclasses.asdict(fp)
    d.pop('precision'); d['scen'].pop('bf16'); d['eggn'].pop('bf16')
    for k in ('fast_critic', 'fused_adam', 'keep_heap'): d['eggn'].pop(k)
    d['scen'].pop('fused_stage1')                                  # speed only: never in a run's identity
    assert run_hash(fp) == config_hash(d)
    assert ADDED_LATER[''] == {'precision': 'fp32'} and ADDED_LATER['scen'] == {'bf16': False, 'fused_stage1': False}


def test_unknown_precision_is_refused_before_anything_is_written(tmp_path, capsys):
    with pytest.raises(SceggError, match="precision 'fp16' is unknown; expected one of fp32, bf16"):
        make_config('smoke', {'precision': 'fp16'})
    code, _, err = cli(capsys, 'train', 'synthetic', '--preset', 'smoke', '--set', 'precision=half', '--out', tmp_path / 'r')
    assert code != 0 and "precision 'half'" in one_line_error(err) and not (tmp_path / 'r').exists()


def test_the_extract_command_names_the_precision():
    assert '--precision bf16' in extract_command(make_config('cub-cpu', {'precision': 'bf16'}))
    assert '--precision' not in extract_command(make_config('cub-cpu'))


def test_a_bf16_run_end_to_end(tmp_path, data_home):
    "Smoke size: a bf16 run reads its own bf16 feature store, keeps fp32 weights and gives finite metrics."
    res = train(make_config('smoke', {'precision': 'bf16'}), tmp_path / 'run')
    assert res['config']['precision'] == 'bf16' and res['config']['scen']['bf16'] and res['config']['eggn']['bf16']
    stores = sorted(p.name for p in (data_home / 'features').rglob('manifest.json') for p in [p.parent])
    assert stores and all(s.endswith('-bf16') for s in stores), stores
    for p in (data_home / 'features').rglob('manifest.json'):
        assert json.loads(p.read_text())['precision'] == 'bf16'
    v = res['protocols']['validation']
    assert all(0 <= v[k] <= 1 for k in ('czsl_acc', 'U', 'S', 'H'))
    sd = torch.load(tmp_path / 'run' / 'test' / 'scen' / 'scen.pt', map_location='cpu', weights_only=False)['model']
    assert all(t.dtype == torch.float32 for t in sd.values() if t.is_floating_point())
