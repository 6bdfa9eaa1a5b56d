"""Train one view of a run configuration (SCEN from the reproduction cache, then EGGN with its per-epoch curves), for
schedule choices and explanatory runs that need the validation view only.

    python tools/view_only.py OUT [VIEW] [key=value ...]    # VIEW: validation (default) or test
    python tools/view_only.py outputs/cub-cpu/explain/sc-egg_nofeedback_seed3483 validation method=sc-egg eggn.a1=0 eggn.a2=0
    python tools/view_only.py outputs/cub-cpu/lr_study/sc-egg_lr1e-4_seed3483 validation eggn.lr=1e-4 eggn.epochs=8

Overrides go on top of the `cub-cpu` preset (set `preset=NAME` for another). SCEN comes from (or goes to) the
reproduction cache `outputs/<preset>/runs/scen_cache` when it exists, else go into OUT/VIEW. Resumable: OUT/VIEW/eggn holds the checkpoint. Writes
OUT/VIEW/view.json (curves, SCEN alone on the view, wall times) and prints the best CZSL / H of every GAN epoch.
"""
import sys, time
from pathlib import Path
import torch
from scegg.config import make_config
from scegg.pipeline import load_run_data, ensure_store, fit_view
from scegg.runs import scen_dir

out, args = Path(sys.argv[1]), sys.argv[2:]
view_name = args.pop(0) if args and '=' not in args[0] else 'validation'
o = dict(kv.split('=', 1) for kv in args)   # strings: make_config converts each to its setting's type
preset = o.pop('preset', 'cub-cpu')
cfg = make_config(preset, o)
if cfg.threads: torch.set_num_threads(cfg.threads)
data = load_run_data(cfg)
maps = ensure_store(data, cfg, torch.device('cpu'))
view = data.validation_view() if view_name == 'validation' else data
(out / view_name).mkdir(parents=True, exist_ok=True)
cache = Path('outputs') / preset / 'runs' / 'scen_cache'   # the reproduction cache, when it exists (run from the repo root)
t = time.time()
v = fit_view(view, maps, cfg, torch.device('cpu'), out / view_name,
             scen_dir(cfg, view, out / view_name, cache if cache.is_dir() else None), resume=True)
print(f'{view_name} view of {preset} with {o}: {time.time() - t:.0f} s; SCEN alone {v["scen"]}')
for i, c in enumerate(v['curves']):
    print(f'  GAN epoch {i + 1:2d}: CZSL {100 * max(c["czsl_acc"]):5.1f}  H {100 * max(c["H"]):5.1f}')
