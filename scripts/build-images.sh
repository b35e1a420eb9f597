#!/usr/bin/env bash
# Build the fluidos-sensors image (deploy/image/Dockerfile), tagged fluidos-sensors:<version>,
# and, offline, the images of the third-party parts on the same Debian base
# (deploy/image/third-party/): fluidos-sensors-mosquitto:<Debian's mosquitto version>,
# fluidos-sensors-influxdb:<version> and fluidos-sensors-telegraf:<version> (the binaries the
# testbed builds, testbed/binaries.py). Prints the images built, one a line, project first.
#
#   scripts/build-images.sh            offline: base imported from Debian packages (debootstrap),
#                                      dependencies from a host wheelhouse, `docker build
#                                      --network none`
#   scripts/build-images.sh --online   BASE=python:3.11-slim-bookworm, dependencies from PyPI
#                                      (hashes checked against deploy/image/requirements.lock);
#                                      no third-party images (use the upstream ones)
#   --project-only                     only fluidos-sensors:<version>
#
# Cached by the hash of what goes in (Dockerfile, lock, the project's tracked sources, base):
# an image tagged <name>:inputs-<hash> is reused, and so are the Debian base image
# (fluidos-sensors-base:bookworm-<hash>) and the wheelhouse (<cache>/images/wheels/<lock hash>).
# Uses the `docker` on PATH and its DOCKER_HOST. Prints each image's size and the time taken.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cache="${FLUIDOS_SENSORS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fluidos-sensors}/images"
mode=offline
force=0
third_party=1
for arg in "$@"; do
  case "$arg" in
    --online) mode=online ;;
    --offline) mode=offline ;;
    --force) force=1 ;;
    --project-only) third_party=0 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "error: unknown argument $arg (--online, --offline, --project-only, --force)" >&2
       exit 2 ;;
  esac
done

die() { echo "error: $*" >&2; exit 1; }
say() { echo "[build-images $(date -u +%H:%M:%S)] $*" >&2; }
started=$(date +%s)

command -v docker >/dev/null || die "docker is not installed (Debian: apt-get install docker.io)"
docker info >/dev/null 2>&1 || die "no Docker daemon answers (DOCKER_HOST=${DOCKER_HOST:-default})"

python=""
for candidate in "${PYTHON:-}" "$repo/.venv/bin/python" python3.11; do
  [ -n "$candidate" ] && command -v "$candidate" >/dev/null 2>&1 || continue
  if "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
    python=$candidate; break
  fi
done
[ -n "$python" ] || die "a Python 3.11 is needed on the host (the image's interpreter version): set PYTHON"

version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/pyproject.toml" | head -1)
lock="$repo/deploy/image/requirements.lock"
dockerfile="$repo/deploy/image/Dockerfile"

# --- the base -----------------------------------------------------------------------------
# mosquitto: for the broker's image (Debian's package; unused by the project's image).
debian_packages="python3.11,ca-certificates,mosquitto"
debian_mirror() {
  if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
  local uri
  uri=$(grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null \
    | awk '{print $2}' | grep -v -- '-security' | head -1)
  [ -n "$uri" ] || uri=$(grep -hsE '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' | head -1)
  echo "${uri:-http://deb.debian.org/debian}"
}

if [ "$mode" = online ]; then
  base=python:3.11-slim-bookworm
else
  mirror=$(debian_mirror)
  base_hash=$(printf 'bookworm minbase %s %s v1' "$debian_packages" "$mirror" | sha256sum | cut -c1-12)
  base="fluidos-sensors-base:bookworm-$base_hash"
  if docker image inspect "$base" >/dev/null 2>&1; then
    say "base $base: cached"
  else
    [ "$(id -u)" = 0 ] || die "building the Debian base needs root (debootstrap); or use --online"
    if ! command -v debootstrap >/dev/null; then
      command -v apt-get >/dev/null || die "debootstrap is not installed"
      say "installing debootstrap (apt-get)"
      # A fresh machine's package lists may be empty or stale: read them first.
      apt-get update -qq >/dev/null || die "apt-get update failed (is the Debian mirror reachable?)"
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null \
        || die "apt-get install debootstrap failed"
    fi
    root=$(mktemp -d "${TMPDIR:-/var/tmp}/fs-base.XXXXXX")
    trap 'rm -rf "$root"' EXIT
    say "base: debootstrap --variant=minbase bookworm from $mirror (a few minutes, once)"
    debootstrap --variant=minbase --include="$debian_packages" bookworm "$root" "$mirror" \
      >"$root.log" 2>&1 || {
        cp "$root/debootstrap/debootstrap.log" "$root.debootstrap.log" 2>/dev/null || true
        tail -20 "$root.log" >&2; die "debootstrap failed (logs: $root.log, $root.debootstrap.log)"; }
    rm -f "$root.log"
    # What a container never uses: package caches and lists, docs, man pages, translations.
    rm -rf "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* \
      "$root"/usr/share/man/* "$root"/usr/share/locale/* "$root"/usr/share/info/* \
      "$root"/var/log/* "$root"/tmp/* "$root"/root/.[!.]* 2>/dev/null || true
    tar -C "$root" --numeric-owner -c . | docker import \
      --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' - "$base" >/dev/null
    rm -rf "$root"; trap - EXIT
    say "base $base: imported"
  fi
fi

# --- what goes in, and its hash -------------------------------------------------------------
inputs=$(
  cd "$repo"
  {
    sha256sum deploy/image/Dockerfile deploy/image/requirements.lock deploy/image/pip.lock pyproject.toml
    git ls-files -z -- fluidos_sensors fluidos_sensors_cli testbed resource_manager router_manager \
      mapper tui consumer \
      | xargs -0 sha256sum
    echo "$base $mode $version"
  } | sha256sum | cut -c1-16
)
image="fluidos-sensors:$version"
cached="fluidos-sensors:inputs-$inputs"
if [ "$force" = 0 ] && docker image inspect "$cached" >/dev/null 2>&1; then
  docker tag "$cached" "$image"
  say "$image: cached (inputs $inputs)"
else
  context=$(mktemp -d "${TMPDIR:-/var/tmp}/fs-image.XXXXXX")
  trap 'rm -rf "$context"' EXIT
  mkdir -p "$context/wheels" "$context/dist" "$context/src"
  cp "$dockerfile" "$lock" "$context/"

  # The project as a wheel, from its tracked files only (no .venv, no build leftovers).
  (cd "$repo" && git ls-files -z -- pyproject.toml README.md fluidos_sensors fluidos_sensors_cli \
      testbed resource_manager router_manager mapper tui consumer \
      | xargs -0 cp --parents -t "$context/src")
  "$python" -m pip wheel --quiet --disable-pip-version-check --no-deps -w "$context/dist" \
    "$context/src" >/dev/null || die "building the project's wheel failed"
  rm -rf "$context/src"

  if [ "$mode" = offline ]; then
    lock_hash=$(cat "$lock" "$repo/deploy/image/pip.lock" | sha256sum | cut -c1-16)
    wheelhouse="$cache/wheels/$lock_hash"
    if [ ! -f "$wheelhouse/.complete" ]; then
      say "wheelhouse: pip wheel of the lock's $(grep -c '==' "$lock") pinned dependencies"
      mkdir -p "$wheelhouse"
      "$python" -m pip wheel --quiet --disable-pip-version-check --no-deps --only-binary :all: \
        --require-hashes -r "$lock" -w "$wheelhouse" || die "pip wheel failed (is PyPI reachable?)"
      "$python" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary :all: \
        --require-hashes -r "$repo/deploy/image/pip.lock" -d "$wheelhouse" || die "pip download pip failed"
      touch "$wheelhouse/.complete"
    fi
    cp -l "$wheelhouse"/*.whl "$context/wheels/" 2>/dev/null || cp "$wheelhouse"/*.whl "$context/wheels/"
    network=none
  else
    network=host
  fi

  say "docker build ($mode, BASE=$base, network $network)"
  docker build --quiet --network "$network" --build-arg "BASE=$base" \
    --build-arg "VERSION=$version" --label "io.fluidos-sensors.inputs=$inputs" \
    -t "$image" -t "$cached" "$context" >/dev/null || die "docker build failed"
  rm -rf "$context"; trap - EXIT
fi

size=$(docker image inspect "$image" --format '{{.Size}}')
say "$image ready: $((size / 1000000)) MB, $(($(date +%s) - started)) s"
echo "$image"

# --- third-party images: mosquitto, InfluxDB 1.8, Telegraf -----------------------------------
if [ "$mode" = online ] || [ "$third_party" = 0 ]; then
  exit 0
fi
third="$repo/deploy/image/third-party"

# The testbed's binaries (FLUIDOS_SENSORS_BIN_DIR, PATH, cache, else built from the Go module
# proxy), resolved by testbed/binaries.py: "<name> <version> <path>" lines.
binaries=$(PYTHONPATH="$repo" "$python" - <<'PY'
import sys

from testbed import binaries

for binary in (binaries.INFLUXD, binaries.TELEGRAF):
    path = binaries.resolve(binary, log=lambda message: print(message, file=sys.stderr))
    print(binary.name, binary.version.lstrip("v"), path)
PY
) || die "resolving influxd and telegraf failed (PYTHON must be the project's venv: .venv)"

# build_third_party NAME VERSION FILE... : image fluidos-sensors-NAME:VERSION from
# deploy/image/third-party/NAME.Dockerfile with the FILEs (host paths) as its context.
build_third_party() {
  local name=$1 version=$2; shift 2
  local tp_started tp_inputs tp_image tp_cached tp_context tp_size
  tp_started=$(date +%s)
  tp_inputs=$({ sha256sum "$third/$name.Dockerfile" "$@" | awk '{print $1}'
                echo "$base $version"; } | sha256sum | cut -c1-16)
  tp_image="fluidos-sensors-$name:$version"
  tp_cached="fluidos-sensors-$name:inputs-$tp_inputs"
  if [ "$force" = 0 ] && docker image inspect "$tp_cached" >/dev/null 2>&1; then
    docker tag "$tp_cached" "$tp_image"
    say "$tp_image: cached (inputs $tp_inputs)"
  else
    tp_context=$(mktemp -d "${TMPDIR:-/var/tmp}/fs-image.XXXXXX")
    trap 'rm -rf "$tp_context"' EXIT
    cp "$third/$name.Dockerfile" "$tp_context/Dockerfile"
    cp -p "$@" "$tp_context/"
    say "docker build $tp_image (offline, BASE=$base, network none)"
    docker build --quiet --network none --build-arg "BASE=$base" \
      --build-arg "VERSION=$version" --label "io.fluidos-sensors.inputs=$tp_inputs" \
      -t "$tp_image" -t "$tp_cached" "$tp_context" >/dev/null || die "docker build $tp_image failed"
    rm -rf "$tp_context"; trap - EXIT
  fi
  tp_size=$(docker image inspect "$tp_image" --format '{{.Size}}')
  say "$tp_image ready: $((tp_size / 1000000)) MB, $(($(date +%s) - tp_started)) s"
  echo "$tp_image"
}

# Debian's mosquitto version, its upstream part (2.0.11-1.2+deb12u2 -> 2.0.11).
mosquitto_version=$(docker run --rm --network none --entrypoint dpkg-query "$base" \
  -W -f '${Version}' mosquitto) || die "the base $base has no mosquitto package"
mosquitto_version=$(echo "$mosquitto_version" | sed 's/^[0-9]*://; s/-[^-]*$//')
build_third_party mosquitto "$mosquitto_version" "$third/mosquitto.conf"
while read -r name version path; do
  case "$name" in
    influxd) build_third_party influxdb "$version" "$path" "$third/influxdb.conf" \
      "$third/influxdb-entrypoint" ;;
    telegraf) build_third_party telegraf "$version" "$path" "$third/telegraf-entrypoint" ;;
  esac
done <<<"$binaries"
say "all images ready: $(($(date +%s) - started)) s"
