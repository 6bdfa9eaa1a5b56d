"""SCEN alone on a data set's test splits (`scegg.experiment.scen_alone_study`): train (or resume) the SCEN stages of a
run configuration into the reproduction run cache and score SCEN's own local attribute classifier, no generator.

    python lab/scen_alone.py SEED [PRESET] [OUT]      # default: cub-cpu, outputs/cub-cpu -> OUT/scen_alone_seed<SEED>.json
"""
import json, sys
from scegg.experiment import scen_alone_study

if __name__ == '__main__':
    seed = int(sys.argv[1])
    preset = sys.argv[2] if len(sys.argv) > 2 else 'cub-cpu'
    out = sys.argv[3] if len(sys.argv) > 3 else f'outputs/{preset}'
    print(json.dumps(scen_alone_study(seed, preset, out), indent=1, default=float))
