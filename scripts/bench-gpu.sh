#!/usr/bin/env bash
# The GPU half of docs/benchmarks.md, run on a CUDA machine that has PyTorch 2.11 (the reference)
# and no Rust toolchain: build the bench binary elsewhere (`cargo bench --bench fst --no-run`)
# and bring it with Fashion-MNIST's four IDX .gz files.
#
#   scripts/bench-gpu.sh speed   FST_BENCH_BINARY DATA_DIR RESULTS_DIR
#   scripts/bench-gpu.sh quality FST_BENCH_BINARY DATA_DIR RESULTS_DIR [extra quality args]
#
# speed: ResNet-18 at 32x32x3, 1,000 tuning images x 10 epochs (crop + flip), evaluation of
# 10,000 test images clean and triggered, by fstgate (fp32 and bf16) and by
# bench/fst_reference.py, 3 repetitions each (median); GPU memory is sampled by nvidia-smi every
# 50 ms for both (peak minus the idle baseline); the GPU's bf16 matrix-product rate is measured.
set -uo pipefail
mode=$1 bench=$2 data=$3 results=$4
shift 4
here=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$results"
export PYTHONUNBUFFERED=1

# Runs a command while sampling the GPU's used memory; appends "label peak_mib" to gpu-memory.txt.
with_gpu_memory() {
  local label=$1
  shift
  local samples
  samples=$(mktemp)
  local baseline
  baseline=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1)
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 50 >"$samples" &
  local sampler=$!
  "$@"
  local status=$?
  kill "$sampler" 2>/dev/null
  wait "$sampler" 2>/dev/null
  local peak
  peak=$(sort -n "$samples" | tail -1)
  echo "$label $((peak - baseline))" | tee -a "$results/gpu-memory.txt"
  rm -f "$samples"
  return $status
}

case $mode in
  speed)
    nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit --format=csv | tee "$results/gpu.txt"
    python3 "$here/bench/fst_reference.py" --peak | tee -a "$results/peak.jsonl"
    model=$results/resnet18-32.pt
    common=(--data "$data" --size 32 --channels 3 --model "$model" --tune 1000 --epochs 10 --eval 10000 --repeat 3)
    # The first run makes the model with the lab (outside the timed region).
    with_gpu_memory fstgate-fp32 "$bench" speed "${common[@]}" --arch resnet18 --device cuda --precision fp32 --json "$results/speed.jsonl"
    with_gpu_memory fstgate-fp32-jit-optimize "$bench" speed "${common[@]}" --arch resnet18 --device cuda --precision fp32 --jit-optimize --json "$results/speed.jsonl"
    with_gpu_memory fstgate-bf16 "$bench" speed "${common[@]}" --arch resnet18 --device cuda --precision bf16 --json "$results/speed.jsonl"
    with_gpu_memory pytorch-reference python3 "$here/bench/fst_reference.py" --data "$data" --size 32 --channels 3 \
      --model "$model" --tune 1000 --epochs 10 --eval 10000 --repeat 3 --workers 4 --device cuda --json "$results/speed.jsonl"
    ;;
  quality)
    "$bench" quality --data "$data" --device cuda --out "$results" "$@"
    ;;
  *)
    echo "usage: $0 speed|quality BENCH DATA RESULTS" >&2
    exit 2
    ;;
esac
