"""The factor study (issue 22, item 3; `scegg.experiment.factor_study`): SC-EGG and the baseline on the validation view
of `cub-cpu` with one setting moved to the paper's value at a time, then the table and figure of SC-EGG minus baseline.

    python lab/factors.py [--factors NAME ...] [--methods sc-egg tf-vaegan] [--seeds 3483] [--out outputs/cub-cpu]
    python lab/factors.py --table-only          # train nothing: factors_evidence.json, factors.{csv,md,png,pdf}
    python lab/factors.py --list                # the factors and their overrides

Runs go to OUT/factors/<run hash> (git-ignored; resumable: run the same command again); SCEN comes from (or goes to)
OUT/runs/scen_cache. Two processes, one per method, keep both cores busy (the preset runs on one thread).
"""
import argparse, sys
from scegg.experiment import FACTORS, FACTOR_METHODS, factor_study, write_factor_outputs

p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
p.add_argument('--factors', nargs='+', help='names of FACTORS (default: all, in their order)')
p.add_argument('--methods', nargs='+', default=list(FACTOR_METHODS))
p.add_argument('--seeds', nargs='+', type=int, default=[3483])
p.add_argument('--out', default='outputs/cub-cpu')
p.add_argument('--table-only', action='store_true')
p.add_argument('--list', action='store_true')
a = p.parse_args()
if a.list:
    for f, o in FACTORS.items(): print(f'{f}: {o}')
    sys.exit(0)
if not a.table_only:
    factor_study(a.out, a.factors, a.methods, a.seeds)
print(write_factor_outputs(a.out).round(1).to_string())
