"""What the final classifiers gain from each part of their input (`scegg.experiment.posthoc_variants`): on a finished
run's last generator, the final classifiers trained again with one thing changed each (the features alone, the
decoder's outputs alone, no feedback at synthesis, another syn_num); `default` reproduces the run's last curve point.

    python lab/posthoc.py RUN_DIR [VIEW ...]       # VIEW: validation (default) and/or test -> RUN_DIR/posthoc_<VIEW>.json
"""
import sys
from pathlib import Path
from scegg.experiment import posthoc_variants

if __name__ == '__main__':
    run_dir = Path(sys.argv[1])
    for view in sys.argv[2:] or ['validation']:
        posthoc_variants(run_dir, view, verbose=True)
        print('wrote', run_dir / f'posthoc_{view}.json')
