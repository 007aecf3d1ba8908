#!/usr/bin/env bash
# The main job on the embedded default, on real data: the lab backdoors a small CNN on
# Fashion-MNIST (BadNets, 1% of 30,000 training images poisoned), then fstgate purifies it with
# FST, evaluates, decides, signs and verifies, and prints the before/after table. Everything
# goes under ${FSTGATE_WORK:-./work}/demo. Same model and settings as the acceptance test in
# tests/purify.rs.
set -euo pipefail
fstgate=$1
shift
work=${FSTGATE_WORK:-$PWD/work}/demo
data=/usr/share/datasets/fashion-mnist
mkdir -p "$work"
model=$work/backdoored.pt
if [ ! -f "$model" ]; then
  "$fstgate" lab poison --data "$data#train" --train-count 30000 --test-data "$data#test" \
    --test-count 2000 --trigger badnets --target-class 0 --rate 0.01 --epochs 5 --seed 1 --out "$model"
fi
key=$work/signing-key.pem
[ -f "$key" ] || "$fstgate" keygen --private-key "$key" --public-key "$work/signing-key.pub"
out=$work/purified-$(date +%Y%m%d-%H%M%S)
# Settings that keep clean accuracy on this small CNN (the paper's CIFAR-10 defaults cost
# more here; see README): 5% clean data, alpha 0.02, 20 epochs, no augmentation.
"$fstgate" purify --model "$model" --clean-data "$data#train" --clean-fraction 0.05 \
  --test-data "$data#test" --trigger badnets --target-class 0 \
  --alpha 0.02 --epochs 20 --crop-padding 0 --no-flip \
  --signing-key "$key" --out "$out" "$@"
"$fstgate" verify "$out" --public-key "$work/signing-key.pub" --original-model "$model"
echo "backdoored model: $model (lab report: ${model%.pt}.lab.json)"
echo "purified model:   $out/model.pt"
echo "report:           $out/report.json"
echo "attestations:     $out/model.sig (OpenSSF model_signing), $out/provenance.intoto.json, $out/decision.intoto.json"
