#!/usr/bin/env bash
# Builds the fstgate container image (Containerfile) with podman, without pulling anything from
# a container registry: the Debian base is made here by mmdebstrap from Debian's archive and
# imported, and the context is staged from target/release/fstgate and the libtorch wheel it links.
# Idempotent (the base is made once, podman's layer cache keeps unchanged layers).
#
#   scripts/build-image.sh [--tag TAG] [--cuda] [--binary PATH] [--refresh-base] [--base-only]
#
#   --tag TAG        the image name (default localhost/fstgate:VERSION, also tagged
#                    ghcr.io/fstgate/fstgate:VERSION, the name integrations/ uses; VERSION from
#                    Cargo.toml, with a -cuda suffix for --cuda)
#   --cuda           the CUDA variant: also libtorch_cuda and the CUDA 13 libraries torch 2.11.0
#                    needs (pip wheels pinned below, installed once under the cache, ~3 GB); run
#                    it with a GPU and the NVIDIA container toolkit (`--device nvidia.com/gpu=all`)
#   --binary PATH    the fstgate binary (default target/release/fstgate, built by ./dev build when
#                    missing); the libraries are those it links
#   --refresh-base   make the Debian base again (new security updates) instead of the cached one
#   --base-only      install the tools and make the Debian base, then stop (stdout: base=NAME);
#                    ./dev test fetches them so while the tests compile
#
# stdout, one key=value per line: tag, also (the second tag, if any), id, size_bytes, size,
# inputs (sha256 of everything the image is made of: Containerfile, this script, the binary and
# libraries, the base's recipe; tests/image.rs keys its demo stamp on it), containers_conf (the
# CONTAINERS_CONF to run podman with). Progress and timings go to stderr.
#
# Where things are kept (FSTGATE_CACHE, default ~/.cache/fstgate): podman/containers.conf (see
# below), podman/base-SUITE-KEY.tar (the Debian root filesystem), torch-2.11.0-cuda13 (--cuda).
# Root or sudo installs podman, runc and mmdebstrap with apt-get when missing.
#
# Exit status: 0 built, 2 usage, 3 podman (or runc, mmdebstrap) missing and not installable,
# anything else a failed build.
set -euo pipefail
shopt -s inherit_errexit
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

usage() { sed -n '7,20p' "$0" | sed 's/^# \{0,1\}//' >&2; }
tag='' cuda=0 refresh_base=0 binary='' base_only=0
while [ $# -gt 0 ]; do
  case $1 in
    --tag) [ $# -ge 2 ] || { usage; exit 2; }; tag=$2; shift 2 ;;
    --cuda) cuda=1; shift ;;
    --binary) [ $# -ge 2 ] || { usage; exit 2; }; binary=$(realpath "$2"); shift 2 ;;
    --refresh-base) refresh_base=1; shift ;;
    --base-only) base_only=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage; exit 2 ;;
  esac
done

cache=${FSTGATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fstgate}
podman_dir=$cache/podman
mkdir -p "$podman_dir"
# Tests and people may build at once: one at a time (released when this script exits).
exec 9>"$podman_dir/build.lock"
flock 9

started=$(date +%s%N)
log() { printf '[build-image] %s\n' "$*" >&2; }
# Seconds since $1 (a `date +%s%N`), to a tenth.
since() {
  local tenths=$((($(date +%s%N) - $1) / 100000000))
  printf '%d.%d s' $((tenths / 10)) $((tenths % 10))
}
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi; }

version=$(sed -n '/^\[package\]/,/^\[/ s/^version *= *"\(.*\)"/\1/p' Cargo.toml)
variant=cpu
[ "$cuda" = 0 ] || variant=cuda
if [ -z "$tag" ]; then
  suffix=$version
  [ "$cuda" = 0 ] || suffix=$version-cuda
  tag=localhost/fstgate:$suffix
  also=ghcr.io/fstgate/fstgate:$suffix
else
  also=''
fi

# --- podman, runc, mmdebstrap ------------------------------------------------------------------
missing=()
for tool in podman runc mmdebstrap; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  t=$(date +%s%N)
  if ! command -v apt-get >/dev/null; then
    log "${missing[*]} missing and no apt-get to install them"
    exit 3
  fi
  if [ "$(id -u)" != 0 ] && ! sudo -n true 2>/dev/null; then
    log "${missing[*]} missing, and installing them needs root or password-less sudo"
    exit 3
  fi
  log "installing Debian's ${missing[*]}"
  if ! as_root apt-get update -qq >&2 ||
    ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc mmdebstrap >/dev/null; then
    log "apt-get could not install podman runc mmdebstrap"
    exit 3
  fi
  log "installed in $(since "$t")"
fi

# --- podman's configuration --------------------------------------------------------------------
# runc, not crun (crun refuses cgroups in hybrid mode), and ulimits within this host's hard limits
# (podman's default nofile of 1048576 needs CAP_SYS_RESOURCE, which a CI container lacks).
limit() {
  local hard
  hard=$(ulimit -H "$1")
  if [ "$hard" = unlimited ] || [ "$hard" -gt "$2" ]; then echo "$2"; else echo "$hard"; fi
}
nofile=$(limit -n 1048576)
nproc=$(limit -u 32768)
export CONTAINERS_CONF=$podman_dir/containers.conf
conf="# podman's configuration for fstgate's image (scripts/build-image.sh writes it): runc, and
# ulimits no higher than this host's hard limits.
[containers]
default_ulimits = [\"nofile=$nofile:$nofile\", \"nproc=$nproc:$nproc\"]

[engine]
runtime = \"runc\"
"
if [ ! -f "$CONTAINERS_CONF" ] || [ "$(cat "$CONTAINERS_CONF")" != "${conf%$'\n'}" ]; then
  printf '%s' "$conf" >"$CONTAINERS_CONF"
fi

# --- the Debian base ---------------------------------------------------------------------------
# Debian's own archive, signed by the keys in debian-archive-keyring: nothing from a container
# registry. Documentation and translations are left out (copyright files kept). The base is
# cached by its recipe (suite, packages, options), not by the mirror.
suite=bookworm
include=(ca-certificates passwd)
mirror=${FSTGATE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${FSTGATE_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
recipe=(--variant=apt --format=tar "--include=$(IFS=,; echo "${include[*]}")"
  '--dpkgopt=path-exclude=/usr/share/doc/*' '--dpkgopt=path-include=/usr/share/doc/*/copyright'
  '--dpkgopt=path-exclude=/usr/share/man/*' '--dpkgopt=path-exclude=/usr/share/locale/*'
  '--dpkgopt=path-exclude=/usr/share/info/*' '--aptopt=APT::Install-Recommends "false"')
base_key=$(printf '%s\n' "$suite" "${recipe[@]}" | sha256sum | cut -c1-12)
base_tar=$podman_dir/base-$suite-$base_key.tar
base=localhost/fstgate-base:$suite-$base_key
if [ "$refresh_base" = 1 ]; then
  rm -f "$base_tar"
  podman untag "$base" 2>/dev/null || true
fi
if ! podman image exists "$base"; then
  if [ ! -f "$base_tar" ]; then
    t=$(date +%s%N)
    log "making the Debian $suite base with mmdebstrap (${include[*]})"
    rm -f "$base_tar.partial"
    mmdebstrap --quiet "${recipe[@]}" "$suite" "$base_tar.partial" \
      "deb $mirror $suite main" "deb $mirror $suite-updates main" "deb $security $suite-security main" >&2
    mv "$base_tar.partial" "$base_tar"
    log "base made in $(since "$t") ($(du -h "$base_tar" | cut -f1))"
  fi
  t=$(date +%s%N)
  podman import --quiet "$base_tar" "$base" >/dev/null
  log "imported $base in $(since "$t")"
fi
if [ "$base_only" = 1 ]; then
  echo "base=$base"
  exit 0
fi

# --- the build context -------------------------------------------------------------------------
if [ -n "$binary" ]; then
  [ -x "$binary" ] || { log "$binary is not an executable"; exit 2; }
else
  binary=$repo/target/release/fstgate
fi
if [ ! -x "$binary" ]; then
  t=$(date +%s%N)
  log "no $binary: building it (./dev build)"
  "$repo/dev" build >&2
  log "built in $(since "$t")"
fi

# The libraries the binary loads from the libtorch wheel, as the loader resolves them (its rpath
# names the wheel's torch/lib; libtorch_cpu's names ../../nvidia/cu13/lib): libtorch_cpu, libc10,
# libgomp, libcupti, libcudart. System libraries come from the Debian base.
linked=$(ldd "$binary")
if grep -q 'not found' <<<"$linked"; then
  log "$binary has unresolved libraries:"
  grep 'not found' <<<"$linked" >&2
  exit 1
fi
torch_cpu=$(awk '$1 == "libtorch_cpu.so" { print $3 }' <<<"$linked")
[ -n "$torch_cpu" ] || { log "$binary does not link libtorch_cpu.so"; exit 1; }
torch_lib=$(dirname "$(realpath "$torch_cpu")")
wheel=$(realpath "$torch_lib/../..")
libs=()
while read -r path; do
  path=$(realpath "$path")
  case $path in "$wheel"/*) libs+=("$path") ;; esac
done < <(awk '$2 == "=>" && $3 ~ /^\// { print $3 }' <<<"$linked")

if [ "$cuda" = 1 ]; then
  # What torch 2.11.0's wheel requires on Linux (its METADATA: cuda-toolkit 13.0.2's extras, cuDNN,
  # cuSPARSELt, NCCL, NVSHMEM), pinned as pip resolved it; cupti and the runtime are already in
  # the wheel directory (./dev setup). Installed once, without dependencies (all are listed).
  cuda_dir=$cache/torch-2.11.0-cuda13
  cuda_wheels=(nvidia-cublas==13.1.0.3 nvidia-cuda-nvrtc==13.0.88 nvidia-cufft==12.0.0.61
    nvidia-cufile==1.15.1.6 nvidia-curand==10.4.0.35 nvidia-cusolver==12.0.4.66
    nvidia-cusparse==12.6.3.3 nvidia-nvjitlink==13.0.88 nvidia-nvtx==13.0.85
    nvidia-cudnn-cu13==9.19.0.56 nvidia-cusparselt-cu13==0.8.0 nvidia-nccl-cu13==2.28.9
    nvidia-nvshmem-cu13==3.4.5)
  if [ ! -f "$cuda_dir/.complete" ]; then
    t=$(date +%s%N)
    log "installing the CUDA 13 libraries into $cuda_dir (pip, no deps, ~3 GB)"
    rm -rf "$cuda_dir.partial"
    python3 -m pip install --quiet --disable-pip-version-check --no-deps --target "$cuda_dir.partial" \
      "${cuda_wheels[@]}" >&2
    printf '%s\n' "${cuda_wheels[@]}" >"$cuda_dir.partial/.complete"
    rm -rf "$cuda_dir"
    mv "$cuda_dir.partial" "$cuda_dir"
    log "installed in $(since "$t")"
  fi
  # libtorch's CUDA half (src/device.rs loads libtorch_cuda.so from LD_LIBRARY_PATH at start-up;
  # it loads the linalg and NVRTC parts itself) and every shared library of the CUDA wheels but
  # CUPTI's profiler extras.
  for name in libtorch_cuda.so libc10_cuda.so libtorch_cuda_linalg.so libtorch_nvshmem.so libcaffe2_nvrtc.so; do
    libs+=("$torch_lib/$name")
  done
  while read -r path; do
    libs+=("$path")
  done < <(find "$wheel/nvidia" "$cuda_dir/nvidia" -path '*/lib/*' -type f -name 'lib*.so*' \
    ! -name 'libnvperf_*' ! -name 'libpcsamplingutil.so' ! -name 'libcheckpoint.so' | LC_ALL=C sort)
fi

t=$(date +%s%N)
stage=$(mktemp -d "$podman_dir/context.XXXXXX")
trap 'rm -rf "$stage"' EXIT
mkdir "$stage/lib"
# Hard links where the cache and target/ share a file system (no copy of ~500 MB), copies elsewhere.
place() { ln "$1" "$2" 2>/dev/null || cp "$1" "$2"; }
cp Containerfile "$stage/Containerfile"
place "$binary" "$stage/fstgate"
for path in "${libs[@]}"; do
  destination=$stage/lib/$(basename "$path")
  if [ -e "$destination" ]; then
    cmp -s "$path" "$destination" || { log "two different $(basename "$path") in the wheels"; exit 1; }
    continue
  fi
  place "$path" "$destination"
done
# What the image is made of: the staged files' digests, this script, the variant and the base.
inputs=$({
  (cd "$stage" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
  sha256sum scripts/build-image.sh | cut -d' ' -f1
  echo "variant=$variant base=$base_key"
} | sha256sum | cut -d' ' -f1)
log "context staged in $(since "$t"): fstgate and ${#libs[@]} libraries ($(du -shL "$stage" | cut -f1))"

# --- the image ---------------------------------------------------------------------------------
revision=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
[ -z "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] || revision=$revision-dirty
build_args=(--build-arg "BASE=$base" --build-arg "VERSION=$version" --build-arg "REVISION=$revision"
  --build-arg "VARIANT=$variant")
if [ "$cuda" = 1 ]; then
  build_args+=(--build-arg NVIDIA_VISIBLE_DEVICES=all --build-arg "NVIDIA_DRIVER_CAPABILITIES=compute,utility")
fi
tags=(-t "$tag")
[ -z "$also" ] || tags+=(-t "$also")
t=$(date +%s%N)
log "podman build $tag ($variant)"
podman build --pull=never --network=none --layers "${build_args[@]}" "${tags[@]}" \
  -f "$stage/Containerfile" "$stage" >&2
log "built in $(since "$t")"

# The loader inside resolves everything from the image (for CUDA: all but the driver's
# libcuda.so.1, which the NVIDIA container toolkit mounts).
t=$(date +%s%N)
check=(/usr/local/bin/fstgate)
[ "$cuda" = 0 ] || check+=(/opt/fstgate/lib/libtorch_cuda.so /opt/fstgate/lib/libtorch_cuda_linalg.so)
for file in "${check[@]}"; do
  resolved=$(podman run --rm --network=none --entrypoint ldd "$tag" "$file")
  unresolved=$(grep 'not found' <<<"$resolved" | grep -v '^[[:space:]]*libcuda\.so\.1 ' || true)
  if [ -n "$unresolved" ]; then
    log "in the image, $file has unresolved libraries:"
    printf '%s\n' "$unresolved" >&2
    exit 1
  fi
done
podman run --rm --network=none "$tag" --version >&2
log "checked in $(since "$t") (the loader resolves every library; fstgate runs)"

# Images this script made before under the same tags, now untagged, are removed (the layer cache
# of the current build is kept).
podman image prune --force --filter label=org.opencontainers.image.title=fstgate >/dev/null 2>&1 || true

id=$(podman image inspect --format '{{.Id}}' "$tag")
size=$(podman image inspect --format '{{.Size}}' "$tag")
log "done in $(since "$started"): $tag $(numfmt --to=iec --suffix=B "$size")"
echo "tag=$tag"
[ -z "$also" ] || echo "also=$also"
echo "id=$id"
echo "size_bytes=$size"
echo "size=$(numfmt --to=iec --suffix=B "$size")"
echo "inputs=$inputs"
echo "containers_conf=$CONTAINERS_CONF"
