#!/usr/bin/env bash
# Builds the Python example policy (plugin-sdk/examples/python-max-asr) into a component of the
# fstgate:policy world with componentize-py, installing the tool first into a cached venv.
#
#   scripts/build-python-plugin.sh OUT.wasm
#   scripts/build-python-plugin.sh --install-only   # the tool only (./dev test, while the tests compile)
#
# The venv lives at ${XDG_CACHE_HOME:-$HOME/.cache}/fstgate/componentize-py-<version>; it is
# installed into a .partial directory and renamed when complete, so a killed install is redone,
# never half-used. Nothing is written into the repository: the app is copied to a temporary
# directory first (componentize-py leaves __pycache__ next to the sources it imports).
# --stub-wasi replaces every WASI import with a trapping stub, so the component imports only
# `log`, as the gate requires.
#
# Exit status: 0 built; 2 usage; 3 this machine has no python3 with venv (the tests fail in CI
# and skip elsewhere); 1 anything else: the build failed, or pip could not install
# componentize-py (a broken pin or an unreachable index is a failure, never a skip).
set -euo pipefail

version=0.25.1
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
app_dir=$root/plugin-sdk/examples/python-max-asr
wit_dir=$root/plugin-sdk/wit

if [ $# -ne 1 ] || [ -z "$1" ]; then
  echo "usage: $0 OUT.wasm | --install-only" >&2
  exit 2
fi
install_only=0
[ "$1" = --install-only ] && install_only=1
out=$1
case $out in /*) ;; *) out=$PWD/$out ;; esac

cache=${XDG_CACHE_HOME:-$HOME/.cache}/fstgate
venv=$cache/componentize-py-$version

install_failed() {
  echo "" >&2
  echo "############################################################################" >&2
  echo "## build-python-plugin: CANNOT INSTALL componentize-py $version" >&2
  echo "## $1" >&2
  echo "## (needs python3 with venv and access to PyPI)" >&2
  echo "############################################################################" >&2
  exit 3
}

componentize_py() {
  # Through the venv's python, not bin/componentize-py: the console script's shebang names the
  # .partial directory the venv was installed into.
  "$venv/bin/python" -c 'import sys; from componentize_py import script; sys.argv[0] = "componentize-py"; sys.exit(script())' "$@"
}

if [ ! -x "$venv/bin/python" ]; then
  started=$SECONDS
  command -v python3 >/dev/null || install_failed "python3 is not on PATH"
  mkdir -p "$cache" || install_failed "cannot create $cache"
  partial=$venv.partial.$$
  rm -rf "$partial"
  trap 'rm -rf "$partial"' EXIT
  python3 -m venv "$partial" >&2 || install_failed "python3 -m venv failed"
  "$partial/bin/pip" install --quiet --disable-pip-version-check --retries 2 --timeout 30 \
    "componentize-py==$version" >&2 || { echo "pip install componentize-py==$version failed" >&2; exit 1; }
  # A concurrent build may have finished first; its venv is as good as ours.
  mv -T "$partial" "$venv" 2>/dev/null || rm -rf "$partial"
  trap - EXIT
  echo "installed componentize-py $version into $venv in $((SECONDS - started)) s" >&2
fi
componentize_py --version >/dev/null 2>&1 || install_failed "$venv is broken (remove it and retry)"
[ "$install_only" = 0 ] || exit 0

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp "$app_dir"/*.py "$stage"/
mkdir -p "$(dirname "$out")"
started=$(date +%s%N)
componentize_py -q -d "$wit_dir" -w policy componentize app -p "$stage" --stub-wasi -o "$stage/out.wasm"
# Renamed within OUT's directory, so OUT is either absent or complete.
cp "$stage/out.wasm" "$out.partial.$$"
mv -f "$out.partial.$$" "$out"
ms=$((($(date +%s%N) - started) / 1000000))
size=$(stat -c %s "$out")
echo "built $out with componentize-py $version in $((ms / 1000)).$(printf %03d $((ms % 1000))) s:" \
  "$size bytes ($((size / 1048576)).$(printf %01d $((size % 1048576 * 10 / 1048576))) MiB)" >&2
