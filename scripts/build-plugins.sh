#!/usr/bin/env bash
# Builds the example policy plugins (plugin-sdk/examples/*) into WebAssembly components,
# target/plugins/<name>.wasm, reproducibly: the same sources and toolchain give the same bytes on
# any machine and in any checkout directory.
#
#   scripts/build-plugins.sh                    build target/plugins/<name>.wasm
#   scripts/build-plugins.sh --update-prebuilt  build, copy them to plugin-sdk/examples/prebuilt/
#                                               and record their sources there in SOURCES.sha256
#   scripts/build-plugins.sh --check            builds nothing; fails when the prebuilt components
#                                               are stale (their sources changed) or altered
#
# Exit status: 0 done, 1 prebuilt components stale (--check), 2 usage, 3 the
# wasm32-unknown-unknown target could not be installed, so nothing was built.
set -euo pipefail
shopt -s inherit_errexit
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

plugins=(thresholds max-asr max-accuracy-drop required-metadata)
prebuilt=plugin-sdk/examples/prebuilt
wasm_target=wasm32-unknown-unknown

log() { printf '[build-plugins] %s\n' "$*" >&2; }

# What the prebuilt components are built from, as a listing whose sha256 SOURCES.sha256 records.
# The recipe, to recompute it by hand:
#   1. `sha256sum` lines ("<hex>  <path>") for every file, sorted by path in the C locale, under
#      plugin-sdk/Cargo.toml, plugin-sdk/build.rs, plugin-sdk/build, plugin-sdk/src, plugin-sdk/wit,
#      schemas/policy-input.schema.json (the SDK's report types), plugin-sdk/componentize/Cargo.toml,
#      plugin-sdk/componentize/src, each plugin-sdk/examples/<plugin>/Cargo.toml and .../src, and
#      this script (it sets the compiler flags);
#   2. the [profile.plugin] section of the root Cargo.toml, from its header to the next header;
#   3. "<crate> v<version>" of every crate the plugins (for wasm32-unknown-unknown) and the
#      componentize tool are built from, as Cargo.lock resolves them (`cargo tree`), sorted, unique.
# Only the plugins' share of Cargo.lock counts: the fstgate binary's dependencies do not go into
# them, and a change there must not mark the components stale.
sources_listing() {
  local dirs=(plugin-sdk/Cargo.toml plugin-sdk/build.rs plugin-sdk/build plugin-sdk/src plugin-sdk/wit
    schemas/policy-input.schema.json plugin-sdk/componentize/Cargo.toml
    plugin-sdk/componentize/src scripts/build-plugins.sh)
  local p tree=(cargo tree --locked --quiet -e normal,build --prefix none --format '{p}')
  for p in "${plugins[@]}"; do dirs+=("plugin-sdk/examples/$p/Cargo.toml" "plugin-sdk/examples/$p/src"); done
  find "${dirs[@]}" -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
  awk '/^\[/ { section = ($0 == "[profile.plugin]") } section' Cargo.toml
  {
    "${tree[@]}" --target "$wasm_target" "${plugins[@]/#/--package=}"
    "${tree[@]}" --package fstgate-componentize
  } | sed -E 's/ \(.*//; /^$/d' | LC_ALL=C sort -u
}

sources_hash() {
  local listing
  listing=$(sources_listing)
  printf '%s\n' "$listing" | sha256sum | cut -d' ' -f1
}

check_prebuilt() {
  local record=$prebuilt/SOURCES.sha256 recorded current status=0
  [ -f "$record" ] || { log "no $record: run $0 --update-prebuilt"; return 1; }
  recorded=$(awk '$2 == "sources" { print $1 }' "$record")
  current=$(sources_hash)
  if [ "$recorded" != "$current" ]; then
    log "STALE: the plugin sources changed since $prebuilt was built ($recorded recorded, $current now)"
    status=1
  fi
  for p in "${plugins[@]}"; do
    grep -q "  $p.wasm\$" "$record" || { log "$record lists no $p.wasm"; status=1; }
  done
  if ! grep -v -e '^#' -e '  sources$' "$record" | (cd "$prebuilt" && sha256sum --check --quiet --strict); then
    log "a prebuilt component differs from the one recorded in $record"
    status=1
  fi
  if [ "$status" = 0 ]; then log "prebuilt components are up to date with their sources ($current)"; fi
  return "$status"
}

ensure_wasm_target() {
  if rustup target add "$wasm_target" >&2; then return; fi
  if [ -d "$(rustc --print sysroot)/lib/rustlib/$wasm_target/lib" ]; then
    log "rustup failed, but $wasm_target is installed; going on"
    return
  fi
  cat >&2 <<EOF

##########################################################################################
##  PLUGINS NOT BUILT: the Rust target $wasm_target is missing and could not be
##  installed (rustup target add $wasm_target failed, see above).
##  Nothing under target/plugins or $prebuilt was changed. Install the target and run
##  $0 again.
##########################################################################################

EOF
  exit 3
}

build() {
  local target_dir p
  target_dir=$(cargo metadata --locked --no-deps --format-version 1 | sed -E 's/.*"target_directory":"([^"]*)".*/\1/')
  ensure_wasm_target
  # Paths that would otherwise end up in panic messages are mapped to fixed names, so that the
  # bytes do not depend on where the checkout, the cargo home or the target directory are.
  # (rustc applies the last matching mapping: the target directory may lie inside the checkout.)
  local registry flags=("--remap-path-prefix=$repo=/fstgate" "--remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=/cargo")
  # A registry's source directory is named after its index URL, which a mirror changes; fetch
  # first so that the directories exist to be named here.
  cargo fetch --locked --quiet
  shopt -s nullglob
  for registry in "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/; do
    flags+=("--remap-path-prefix=${registry%/}=/cargo/registry/src/crates")
  done
  shopt -u nullglob
  flags+=("--remap-path-prefix=$target_dir=/target")
  log "building ${plugins[*]} for $wasm_target (profile plugin)"
  # Only the wasm units get these flags (with --target, host units never do), so the host build
  # cache stays shared with fstgate's own build. A compiler wrapper changes the bytes (clippy-driver
  # adds --cfg clippy, which changes every crate's metadata hash), so none is used here.
  env -u RUSTFLAGS -u RUSTC_WRAPPER -u RUSTC_WORKSPACE_WRAPPER CARGO_ENCODED_RUSTFLAGS="$(IFS=$'\x1f'; echo "${flags[*]}")" \
    cargo build --locked --profile plugin --target "$wasm_target" "${plugins[@]/#/--package=}"
  cargo build --locked --quiet --package fstgate-componentize
  mkdir -p "$target_dir/plugins"
  for p in "${plugins[@]}"; do
    "$target_dir/debug/fstgate-componentize" "$target_dir/$wasm_target/plugin/${p//-/_}.wasm" \
      "$target_dir/plugins/$p.wasm"
    log "$target_dir/plugins/$p.wasm: $(wc -c <"$target_dir/plugins/$p.wasm") bytes"
  done
  built=$target_dir/plugins
}

update_prebuilt() {
  local p record=$prebuilt/SOURCES.sha256
  mkdir -p "$prebuilt"
  for p in "${plugins[@]}"; do
    cp "$built/$p.wasm" "$prebuilt/$p.wasm.partial"
    mv "$prebuilt/$p.wasm.partial" "$prebuilt/$p.wasm"
  done
  {
    echo "# Written by scripts/build-plugins.sh --update-prebuilt, checked by its --check: the sha256"
    echo "# of the plugins' sources (recipe in the script), then of each component, built with"
    echo "# $(rustc -V) for $wasm_target, profile plugin."
    echo "$(sources_hash)  sources"
    (cd "$prebuilt" && sha256sum "${plugins[@]/%/.wasm}")
  } >"$record.partial"
  mv "$record.partial" "$record"
  log "updated $prebuilt and $record"
}

case "${1:-}" in
  "") build ;;
  --update-prebuilt)
    build
    update_prebuilt
    ;;
  --check) check_prebuilt ;;
  *)
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
