#!/usr/bin/env bash
# The GPU benchmark, prepared to run in one go on a machine with a GPU (and tested on CPU with DEVICE=cpu):
#
#   bash scripts/benchmark_gpu.sh OUT_DIR [PATH/TO/query2labels]
#
# 1. inference in each of DTYPES (float32 float16 bfloat16), batch 1 and N, backbone / head split;
# 2. an AMP training step in each of AMP_DTYPES (autocast over float32 weights) with peak memory;
# 3. the authors' model against ours (fp32), when their repository's path is given;
# 4. the label-scaling sweep (80, 1,000, 9,605 labels) with one query per label and with GROUPS group queries.
# One JSON file per part in OUT_DIR, and the Markdown tables on stdout. Settings come from the environment:
set -euo pipefail
out="${1:?usage: benchmark_gpu.sh OUT_DIR [OFFICIAL_REPO]}"
official="${2:-}"
DEVICE="${DEVICE:-cuda}"
VARIANT="${VARIANT:-Q2L-R101-448}"
REPEATS="${REPEATS:-20}"
BATCH="${BATCH:-1 32}"
TRAIN_BATCH="${TRAIN_BATCH:-16}"
SWEEP="${SWEEP:-80 1000 9605}"
GROUPS="${GROUPS:-100}"
DTYPES="${DTYPES:-float32 float16 bfloat16}"
AMP_DTYPES="${AMP_DTYPES:-float16 bfloat16}"
mkdir -p "$out"
bench() { python "$(dirname "$0")/benchmark.py" --variant "$VARIANT" --device "$DEVICE" --repeats "$REPEATS" "$@"; }

# shellcheck disable=SC2086  # BATCH and SWEEP are lists
for dtype in $DTYPES; do
    bench --dtype "$dtype" --batch_sizes $BATCH --train_batch_size 0 --output "$out/inference_$dtype.json"
done
for dtype in $AMP_DTYPES; do
    bench --autocast "$dtype" --batch_sizes $BATCH --train_batch_size "$TRAIN_BATCH" --output "$out/train_amp_$dtype.json"
done
if [ -n "$official" ]; then
    bench --batch_sizes $BATCH --train_batch_size 0 --compare_official "$official" --output "$out/official.json"
fi
bench --batch_sizes $BATCH --train_batch_size 0 --label_sweep $SWEEP --sweep_groups "$GROUPS" --output "$out/label_sweep.json"
