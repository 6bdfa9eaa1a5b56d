"""Train one view of a run configuration (`scegg.experiment.view_study`): SCEN from the reproduction cache, then EGGN
with its per-epoch curves, for schedule choices and explanatory runs that need the validation view only.

    python lab/view_only.py OUT [VIEW] [key=value ...]    # VIEW: validation (default) or test
    python lab/view_only.py outputs/cub-cpu/explain/sc-egg_nofeedback_seed3483 validation method=sc-egg eggn.a1=0 eggn.a2=0
    python lab/view_only.py outputs/cub-cpu/lr_study/sc-egg_lr1e-4_seed3483 validation eggn.lr=1e-4 eggn.epochs=8

Overrides go on top of the `cub-cpu` preset (set `preset=NAME` for another). SCEN comes from (or goes to) the
reproduction cache `outputs/<preset>/runs/scen_cache` when it exists (run from the repository root), else OUT/VIEW.
Resumable; writes OUT/VIEW/view.json and prints the best CZSL / H of every GAN epoch.
"""
import sys, time
from pathlib import Path
from scegg.experiment import view_study

if __name__ == '__main__':
    out, args = Path(sys.argv[1]), sys.argv[2:]
    view = args.pop(0) if args and '=' not in args[0] else 'validation'
    o = dict(kv.split('=', 1) for kv in args)   # strings: make_config converts each to its setting's type
    preset = o.pop('preset', 'cub-cpu')
    cache = Path('outputs') / preset / 'runs' / 'scen_cache'
    t = time.time()
    v = view_study(out, view, preset, o, cache if cache.is_dir() else None)
    print(f'{view} view of {preset} with {o}: {time.time() - t:.0f} s; SCEN alone {v["scen"]}')
    for i, c in enumerate(v['curves']):
        print(f'  GAN epoch {i + 1:2d}: CZSL {100 * max(c["czsl_acc"]):5.1f}  H {100 * max(c["H"]):5.1f}')
