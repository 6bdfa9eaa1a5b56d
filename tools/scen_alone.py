"""SCEN alone on a data set's test splits: train (or resume) the SCEN stages of a run configuration and evaluate
SCEN's own local attribute classifier, without any generator.

    python tools/scen_alone.py SEED [PRESET] [OUT]      # default: cub-cpu, outputs/cub-cpu

SCEN is checkpointed in the reproduction run cache (OUT/runs/scen_cache/...), exactly where `scegg reproduce --preset
PRESET` looks for it, so the full runs resume from it. Writes OUT/scen_alone_seed<SEED>.json.
"""
import json, sys, time
from pathlib import Path
import torch
from scegg.core import write_json
from scegg.config import make_config, run_hash
from scegg.pipeline import load_run_data, ensure_store
from scegg.runs import scen_dir
from scegg.scen import fit_scen, scen_zsl_eval

seed = int(sys.argv[1])
preset = sys.argv[2] if len(sys.argv) > 2 else 'cub-cpu'
out = Path(sys.argv[3] if len(sys.argv) > 3 else f'outputs/{preset}')
runs = out / 'runs'
cfg = make_config(preset, {'seed': seed})
if cfg.threads: torch.set_num_threads(cfg.threads)
data = load_run_data(cfg)
maps = ensure_store(data, cfg, 'cpu')
d = scen_dir(cfg, data, runs / run_hash(cfg) / 'test', runs / 'scen_cache')
t = time.time(); trained = fit_scen(data, maps, cfg.scen, 'cpu', checkpoint_dir=d, resume=True); t_fit = time.time() - t
t = time.time(); metrics = scen_zsl_eval(trained, maps, data, 'cpu'); t_eval = time.time() - t
res = {'what': f'SCEN alone (its local attribute classifier, no generator) on the {data.name} test splits, preset {preset}; '
               'no epoch selection, so no protocol applies',
       'command': f'python tools/scen_alone.py {seed} {preset} {out}', 'seed': seed, 'metrics': metrics,
       'fit_s': t_fit, 'eval_s': t_eval, 'stage_s': {k: trained.history.get(k) for k in ('stage1_s', 'stage2_s')},
       'scen_config': cfg.scen.__dict__, 'caveat': data.caveat}
write_json(out / f'scen_alone_seed{seed}.json', res)
print(json.dumps(res, indent=1, default=float))
