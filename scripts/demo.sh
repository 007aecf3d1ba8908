#!/usr/bin/env bash
# The main job on the embedded default, on real data: the lab backdoors a small CNN on
# Fashion-MNIST (BadNets, 1% poisoning), then fstgate purifies it with FST and prints the
# before/after table. Everything goes under ${FSTGATE_WORK:-./work}/demo.
set -euo pipefail
fstgate=$1
shift
work=${FSTGATE_WORK:-$PWD/work}/demo
data=/usr/share/datasets/fashion-mnist
mkdir -p "$work"
model=$work/backdoored.pt
if [ ! -f "$model" ]; then
  "$fstgate" lab poison --data "$data#train" --test-data "$data#test" --test-count 2000 \
    --trigger badnets --target-class 0 --rate 0.01 --epochs 6 --seed 1 --out "$model"
fi
out=$work/purified-$(date +%Y%m%d-%H%M%S)
"$fstgate" purify --model "$model" --clean-data "$data#train" --clean-fraction 0.02 \
  --test-data "$data#test" --trigger badnets --target-class 0 --out "$out" "$@"
echo "backdoored model: $model (lab report: ${model%.pt}.lab.json)"
echo "purified model:   $out/model.pt"
echo "report:           $out/report.json"
