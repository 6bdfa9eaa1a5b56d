#!/usr/bin/env bash
# The cost of the word-vector fallback (scegg.owndata.attribute_table_vectors) on CUB-mini: the same preset and
# seeds with the real word vectors (CUB_attribute.pkl, runs w2v-SEED) and with vectors from the attribute table
# (--word-vectors attributes, runs attributes-SEED), two runs at a time (one thread each). Then
# `python lab/word_vector_cost.py RUNS outputs/word-vectors` writes the paired table.
# Usage: lab/word_vector_cost.sh RUNS SEED [SEED ...]      (resumable: a finished run is reused)
set -euo pipefail
runs=$1; shift
mkdir -p "$runs"
one() {   # one run: w2v-SEED or attributes-SEED
  local wv=${1%-*} s=${1#*-} flag=() start
  [ "$wv" = attributes ] && flag=(--word-vectors attributes)
  start=$(date +%s)
  .venv/bin/scegg train CUB-mini --preset cub-mini --set seed="$s" "${flag[@]}" --out "$runs/$1" > "$runs/$1.log" 2>&1
  echo "$1: $(( $(date +%s) - start )) s, exit $?" >> "$runs/times.txt"
}
export -f one; export runs
for s in "$@"; do echo "w2v-$s"; echo "attributes-$s"; done | xargs -P 2 -I{} bash -c 'one {}'
