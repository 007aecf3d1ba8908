#!/usr/bin/env bash
# Runs the OpenSSF model-signing tool (PyPI model-signing 1.1.1) to verify a model directory
# signed with a key, installing it first into a cached venv (idempotent; a marker written last
# means a killed install is redone, never half-used).
#
#   scripts/model-signing-verify.sh MODEL_DIR --public_key KEY.pub --signature MODEL_DIR/model.sig
set -euo pipefail
cache=${FSTGATE_CACHE:-$HOME/.cache/fstgate}
venv=$cache/model-signing-venv
if [ ! -f "$venv/.installed" ]; then
  rm -rf "$venv"
  mkdir -p "$cache"
  python3 -m venv "$venv"
  # pyOpenSSL: the 1.1.1 wheel imports it without declaring it.
  "$venv/bin/pip" install --quiet --disable-pip-version-check model-signing==1.1.1 pyOpenSSL >&2
  touch "$venv/.installed"
fi
exec "$venv/bin/model_signing" verify key "$@"
