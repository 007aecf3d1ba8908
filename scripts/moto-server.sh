#!/usr/bin/env bash
# Installs moto's S3 server (PLATFORM.md: moto[server] 5.2.5 honours If-None-Match, so
# conditional puts are really tested) into a virtual environment under the fstgate cache, once,
# and prints its Python interpreter. Exit 3 when it cannot be installed (tests then skip loudly).
#
#   scripts/moto-server.sh   # -> /root/.cache/fstgate/moto-5.2.5/bin/python
set -euo pipefail
cache=${FSTGATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fstgate}
venv=$cache/moto-5.2.5
if [ ! -x "$venv/bin/moto_server" ]; then
  rm -rf "$venv.partial"
  if ! python3 -m venv "$venv.partial" >&2 ||
    ! "$venv.partial/bin/pip" install --quiet --disable-pip-version-check 'moto[server]==5.2.5' >&2; then
    echo "moto[server] 5.2.5 cannot be installed here" >&2
    rm -rf "$venv.partial"
    exit 3
  fi
  # The venv's scripts name their interpreter by path: rewrite it for the final location.
  find "$venv.partial/bin" -maxdepth 1 -type f -exec sed -i "s|$venv.partial|$venv|g" {} +
  rm -rf "$venv"
  mv "$venv.partial" "$venv"
fi
echo "$venv/bin/python"
