#!/usr/bin/env bash
# GPU benchmark in one prepared run (< 5 minutes on one H100): ResNet-101 extraction images/s at 448 px
# (random weights, fp32 vs bf16 autocast + channels_last, optional torch.compile; pinned memory, workers),
# SCEN stage-1 iterations/s (fp32 vs bf16 autocast) and a stage-3 (EGGN) epoch at SUN's sizes.
# Installs nothing and needs no network; uses the python on PATH (torch, torchvision, numpy, Pillow).
#   bash bench/gpu.sh                 # on a GPU machine; results to $OUT/gpu_results.json or bench/results/gpu.json
#   bash bench/gpu.sh --cpu-dry-run   # tiny sizes on CPU, to test the script end to end
#   bash bench/gpu.sh --compile       # also torch.compile the backbone
# Each section runs under `timeout`; a section that fails or runs out of time leaves the others' figures.
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 SCEGG_PROGRESS=0
PY=${PYTHON:-python3}
ARGS=("$@")
if [ -n "${OUT:-}" ]; then RES="$OUT/gpu_results.json"; else RES="bench/results/gpu.json"; fi
case " ${ARGS[*]:-} " in *" --cpu-dry-run "*) [ -z "${OUT:-}" ] && RES="bench/results/gpu_dry_run.json";; esac
rm -f "$RES"
WORK=$(mktemp -d /tmp/scegg-gpu-XXXX)
trap 'rm -rf "$WORK"' EXIT
run() {  # section, seconds
  timeout --kill-after=10 "$2" "$PY" bench/gpu_bench.py "$1" --results "$RES" --work "$WORK" ${ARGS[@]+"${ARGS[@]}"}
  rc=$?; [ $rc -ne 0 ] && echo "section $1 ended with status $rc (124: out of time)" >&2
  return 0
}
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
run setup 30
run extract 110
run scen 70
run stage3 60
echo "results: $RES"; cat "$RES"
