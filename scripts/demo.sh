#!/usr/bin/env bash
# The main job on the embedded default: a local registry directory and a SQLite job store, on
# real data. The lab backdoors a small CNN on Fashion-MNIST (BadNets, 1% of 30,000 training
# images poisoned) and registers it as fashion-cnn/<N> (model.pt, then the _SUCCESS marker);
# `fstgate gate` finds it, purifies it with FST at the automatic strength, evaluates it before
# and after, applies the default policy, and publishes the outcome, signed, to the release
# directory; `fstgate verify` checks the published files. Everything goes under
# ${FSTGATE_WORK:-./work}/demo; each run registers a new version.
set -euo pipefail
fstgate=$1
shift
work=${FSTGATE_WORK:-$PWD/work}/demo
data=/usr/share/datasets/fashion-mnist
mkdir -p "$work/registry" "$work/released"
model=$work/backdoored.pt
if [ ! -f "$model" ]; then
  "$fstgate" lab poison --data "$data#train" --train-count 30000 --test-data "$data#test" \
    --test-count 2000 --trigger badnets --target-class 0 --rate 0.01 --epochs 5 --seed 1 --out "$model"
fi
key=$work/signing-key.pem
[ -f "$key" ] || "$fstgate" keygen --private-key "$key" --public-key "$work/signing-key.pub"
cat >"$work/fstgate.toml" <<TOML
# The pipeline configuration (schemas/pipeline-config.schema.json).
state_dir = "state"
device = "auto"

[[sources]]
name = "local-registry"
url = "registry"

[destination]
url = "released"

[[data]]
models = "fashion-*/*"
clean = "$data#train"
clean_count = 3000
test = "$data#test"
test_count = 2000
trigger = "badnets"
target_class = 0

[signing_key]
path = "signing-key.pem"
TOML
shopt -s nullglob
versions=("$work"/registry/fashion-cnn/*/)
version=$((${#versions[@]} + 1))
upload=$work/registry/fashion-cnn/$version
mkdir -p "$upload"
cp "$model" "$upload/model.pt"
touch "$upload/_SUCCESS" # written last: the upload is complete
echo "registered fashion-cnn/$version"
status=0
"$fstgate" gate --config "$work/fstgate.toml" --json "$work/gate-report.json" "$@" || status=$?
outcome=$(find "$work/released/fashion-cnn/$version" -name outcome.json | head -1)
field() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$outcome" "$1"; }
files=$(dirname "$outcome")/$(field files_under)
if [ "$(field verdict)" = release ]; then
  "$fstgate" verify "$files" --public-key "$work/signing-key.pub" --original-model "$upload/model.pt"
else
  echo "denied: $(field reasons)"
fi
echo "gate report:  $work/gate-report.json (exit $status: 0 released, 1 denied, 2 error)"
echo "outcome:      $outcome"
echo "published:    $files"
exit "$status"
