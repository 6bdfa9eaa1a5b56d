"""The paired tables of lab/word_vector_cost.sh (`scegg.experiment.word_vector_cost`): CUB-mini with the real word
vectors (RUNS/w2v-SEED) against the fallback from the attribute table (RUNS/attributes-SEED) and, when given, against
'attributes+identity' (VARIANT/ident-SEED); same preset and seed; fallback minus real, per seed, mean, std, 95 % interval.

    python lab/word_vector_cost.py RUNS OUT [VARIANT]   # writes OUT/results.json and OUT/table.md
"""
import sys
from scegg.experiment import word_vector_cost

COMMAND = ('lab/word_vector_cost.sh RUNS 3483 3484 3485; for s in 3483 3484 3485; do scegg train CUB-mini --preset cub-mini '
           '--set seed=$s --set \'data_options={"word_vectors": "attributes+identity"}\' --out VARIANT/ident-$s; done; '
           'python lab/word_vector_cost.py RUNS outputs/word-vectors VARIANT')

if __name__ == '__main__':
    print(word_vector_cost(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None, COMMAND))
