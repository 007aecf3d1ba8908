#!/usr/bin/env bash
# Runs the OpenSSF model-signing tool (PyPI model-signing 1.1.1) to verify a model directory
# signed with a key or with a certificate chain, installing it first into a cached venv
# (idempotent, under a lock; a marker written last means a killed install is redone, never
# half-used).
#
#   scripts/model-signing-verify.sh key MODEL_DIR --public_key KEY.pub --signature MODEL_DIR/model.sig
#   scripts/model-signing-verify.sh certificate MODEL_DIR --certificate_chain ROOT.pem --signature MODEL_DIR/model.sig
#   scripts/model-signing-verify.sh install     # only the install (./dev test, while the tests compile)
set -euo pipefail
cache=${FSTGATE_CACHE:-$HOME/.cache/fstgate}
venv=$cache/model-signing-venv
if [ ! -f "$venv/.installed" ]; then
  mkdir -p "$cache"
  # Tests verify in parallel: one installs while the others wait (without the lock a second
  # caller removed the venv under the first one's ensurepip, on a fresh machine's CI run).
  exec 9>"$cache/model-signing-venv.lock"
  flock 9
  if [ ! -f "$venv/.installed" ]; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    # pyOpenSSL: the 1.1.1 wheel imports it without declaring it.
    "$venv/bin/pip" install --quiet --disable-pip-version-check model-signing==1.1.1 pyOpenSSL >&2
    touch "$venv/.installed"
  fi
  exec 9>&-
fi
mode=${1:?usage: $0 key|certificate MODEL_DIR OPTIONS... | install}
shift
case $mode in
  install) exit 0 ;;
  key | certificate) exec "$venv/bin/model_signing" verify "$mode" "$@" ;;
  *) echo "$0: unknown mode $mode (key, certificate or install)" >&2; exit 2 ;;
esac
