#!/usr/bin/env bash
# The cost of the word-vector fallback (scegg.owndata.attribute_table_vectors) on CUB-mini: the same preset and
# seeds with the real word vectors (CUB_attribute.pkl) and with vectors from the attribute table
# (--word-vectors attributes), two runs side by side (one thread each). Then
# `python tools/word_vector_cost.py RUNS outputs/word-vectors` writes the paired table.
# Usage: tools/word_vector_cost.sh RUNS SEED [SEED ...]
set -euo pipefail
runs=$1; shift
mkdir -p "$runs"
for s in "$@"; do
  for wv in w2v attributes; do
    flag=(); [ "$wv" = attributes ] && flag=(--word-vectors attributes)
    ( start=$(date +%s)
      .venv/bin/scegg train CUB-mini --preset cub-mini --set seed="$s" "${flag[@]}" --out "$runs/$wv-$s" > "$runs/$wv-$s.log" 2>&1
      echo "$wv seed $s: $(( $(date +%s) - start )) s, exit $?" >> "$runs/times.txt" ) &
  done
  wait
done
