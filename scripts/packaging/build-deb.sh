#!/usr/bin/env bash
# Build dist/edged_<version>_<arch>.deb for a box, on any machine (no compiler, no emulation):
#
#   scripts/packaging/build-deb.sh [--arch ARCH] [--release R] [--version V] [--config FILE]
#                                  [--out DIR]
#
#   --arch ARCH     the box's Debian architecture: amd64 or arm64 (default: this machine's).
#                   armhf (32-bit Raspberry Pi OS) fails, naming what has no armv7l wheel
#                   on PyPI: ai-edge-litert and tflite-runtime 2.14 among them.
#   --release R     the box's release, which fixes its Python and C library (default: this
#                   machine's): bookworm (Debian 12, Raspberry Pi OS 12: Python 3.11),
#                   trixie (Debian 13: 3.13), jammy (Ubuntu 22.04, Jetson JetPack 6: 3.10),
#                   noble (Ubuntu 24.04: 3.12). bullseye's Python 3.9 is too old for edged.
#   --version V     the package's version (default: pyproject.toml's)
#   --config FILE   ship FILE as the example config (default: systemd/edged.yaml)
#   --out DIR       where the .deb goes (default: dist/)
#
# The package holds edged and every dependency as wheels for the box's architecture and
# Python, fetched from PyPI with pip's --platform/--python-version/--implementation and
# --only-binary :all: (a dependency without such a wheel fails the build, named). Where both
# have wheels it carries both TFLite runtimes: ai-edge-litert, and tflite-runtime with the
# numpy<2 it needs (ai-edge-litert accepts it too); the box tries them at start and uses the
# fastest that runs there (edged/runtime/probe.py). The package depends on the release's
# Python minor version. Its postinst makes the virtualenv /opt/edged from the box's
# /usr/bin/python3 and those wheels alone: nothing is downloaded on the box.
#
# Contents: /opt/edged/wheels, /opt/edged/models (the bundled models), /opt/edged/README.md,
# /lib/systemd/system/edged.service, /usr/share/edged/edged.yaml (the example config and its
# schema), /lib/udev/rules.d/60-edged-apex.rules, /usr/bin/edged. The postinst copies the
# example to /etc/edged/edged.yaml only where that file is missing: the config is the
# engineer's, not a conffile, so an upgrade never prompts and never changes it. The unit is
# enabled on the first install (in an image build too) and started where systemd runs.
# `apt remove` keeps /etc/edged and the spool (/var/lib/edged); `apt purge` deletes them.
# edged reports VERSION as its own (`edged --version`, the logs).
# Needs python3 and python3-venv here (installed when missing, as root or with sudo) and
# dpkg-deb (part of dpkg: every Debian has it).
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD

VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -n1)
CONFIG=systemd/edged.yaml
OUT=dist
ARCH=$(dpkg --print-architecture 2>/dev/null || echo unknown)
RELEASE=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-unknown}")
while [ $# -gt 0 ]; do
    case "$1" in
        --arch) ARCH=$2; shift 2 ;;
        --release) RELEASE=$2; shift 2 ;;
        --version) VERSION=$2; shift 2 ;;
        --config) CONFIG=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        *) echo "build-deb: unknown argument $1 (see the top of $0)" >&2; exit 2 ;;
    esac
done
fail() { echo "build-deb: $*" >&2; exit 1; }

# The box: its Python (minor version) and C library (the newest manylinux tag it runs).
case "$RELEASE" in
    bookworm) PYVER=3.11 GLIBC=36 ;;
    trixie) PYVER=3.13 GLIBC=41 ;;
    jammy) PYVER=3.10 GLIBC=35 ;;
    noble) PYVER=3.12 GLIBC=39 ;;
    bullseye|focal) fail "$RELEASE's Python is older than 3.10, which edged needs" ;;
    *) fail "unknown release '$RELEASE': say --release bookworm, trixie, jammy or noble" ;;
esac
case "$ARCH" in
    amd64) MACHINE=x86_64 ;;
    arm64) MACHINE=aarch64 ;;
    armhf) MACHINE=armv7l ;;  # tried, and refused below while no runtime has such wheels
    *) fail "unknown architecture '$ARCH': say --arch amd64 or arm64 (armhf has no runtime)" ;;
esac
CPY=cp${PYVER/./}
PYNEXT=${PYVER%.*}.$(( ${PYVER#*.} + 1 ))
PLATFORMS=()
for minor in $(seq "$GLIBC" -1 17); do PLATFORMS+=(--platform "manylinux_2_${minor}_$MACHINE"); done
PLATFORMS+=(--platform "manylinux2014_$MACHINE")
[ "$MACHINE" = x86_64 ] && PLATFORMS+=(--platform manylinux2010_x86_64 --platform manylinux1_x86_64)
TARGET=(--only-binary=:all: "${PLATFORMS[@]}" --python-version "$PYVER" --implementation cp
        --abi "$CPY" --abi abi3 --abi none)

# What the build itself needs, on a fresh Debian: a Python with venv (and so ensurepip).
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }
need_packages() {
    echo "build-deb: installing $* (needed to build)" >&2
    as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "$@" >/dev/null \
        || fail "needs $*: sudo apt-get install -y $*"
}
command -v python3 >/dev/null || need_packages python3 python3-venv
python3 -c 'import ensurepip' 2>/dev/null || need_packages python3-venv
command -v dpkg-deb >/dev/null || fail "needs dpkg-deb (Debian's dpkg) to make the package"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/edged-deb.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
ROOT=$WORK/root
install -d "$ROOT/DEBIAN" "$ROOT/opt/edged/wheels" "$ROOT/opt/edged/models" \
    "$ROOT/usr/share/edged" "$ROOT/lib/systemd/system" "$ROOT/lib/udev/rules.d" \
    "$ROOT/usr/bin" "$ROOT/usr/share/doc/edged"

# The sources the wheel is built from, with the package's version stamped in, so that the
# daemon says the version the box has installed (and this checkout stays untouched).
SRC=$WORK/src
mkdir -p "$SRC"
tar -C "$REPO" -cf - pyproject.toml README.md edged | tar -C "$SRC" -xf -
find "$SRC" -name __pycache__ -prune -exec rm -rf {} +
sed -i "s/^__version__ = .*/__version__ = \"$VERSION\"/" "$SRC/edged/__init__.py"
grep -qx "__version__ = \"$VERSION\"" "$SRC/edged/__init__.py" \
    || { echo "build-deb: could not stamp version $VERSION into edged/__init__.py" >&2; exit 1; }

# Wheels for the box: edged's own (pure Python, from $SRC: a copy, so two builds at once do
# not share a build/ folder) built here, every dependency (the Frigate door's pyzmq
# included) fetched as the wheel for the box's platform and Python, resolved together so
# that one NumPy fits both runtimes. A pip of its own: this checkout's .venv stays out.
echo "build-deb: wheels for Python $PYVER on $ARCH ($RELEASE)" >&2
python3 -m venv "$WORK/build-venv"
PIP=("$WORK/build-venv/bin/python" -m pip)
quiet() { "$@" 2> >(grep -v "^WARNING: Location .* is ignored" >&2); }
quiet "${PIP[@]}" install -q --upgrade pip
quiet "${PIP[@]}" wheel -q --no-deps --ignore-requires-python --wheel-dir "$WORK/edged" "$SRC"
EDGED_WHEEL=$(ls "$WORK"/edged/edged-*.whl)
WHEELS=$ROOT/opt/edged/wheels
download() { "${PIP[@]}" download -q "${TARGET[@]}" --dest "$WHEELS" "$@" 2>"$WORK/pip.log"; }
has_wheel() { "${PIP[@]}" download -q "${TARGET[@]}" --no-deps --dest "$WORK/one" "$1" \
    >/dev/null 2>&1; }
LEGACY=("tflite-runtime>=2.13" "numpy<2")
if ! has_wheel "${LEGACY[0]}"; then
    echo "build-deb: tflite-runtime has no $CPY $MACHINE wheel: the package carries" \
         "ai-edge-litert alone" >&2
    LEGACY=()
fi
if ! download "$EDGED_WHEEL[frigate]" "${LEGACY[@]}" pip; then
    # Name every direct dependency without a wheel for the box, then what pip said.
    missing=()
    mapfile -t requirements < <("$WORK/build-venv/bin/python" -c '
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel:
    meta = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    for line in wheel.read(meta).decode().splitlines():
        if line.startswith("Requires-Dist:") and (
                "extra ==" not in line or "extra == \"frigate\"" in line):
            print(line.split(":", 1)[1].split(";")[0].replace(" ", ""))
' "$EDGED_WHEEL")
    for requirement in "${requirements[@]}" "${LEGACY[@]}"; do
        has_wheel "$requirement" || missing+=("$requirement")
    done
    grep -E "^ERROR" "$WORK/pip.log" | head -n 3 >&2 || true
    fail "no $CPY wheel for $MACHINE (manylinux, glibc 2.$GLIBC) of:" \
         "${missing[*]:-a dependency of those, in the message above}"
fi
rm -rf "$WORK/one"
echo "build-deb: runtimes: $(cd "$WHEELS" && ls ai_edge_litert-* tflite_runtime-* 2>/dev/null \
    | sed 's/-cp.*//' | tr '\n' ' ')" >&2

cp models/*.tflite models/*.labels models/manifest.json models/README.md \
    "$ROOT/opt/edged/models/"
cp README.md "$ROOT/opt/edged/README.md"
install -m 0644 "$CONFIG" "$ROOT/usr/share/edged/edged.yaml"
install -m 0644 docs/edged.schema.json "$ROOT/usr/share/edged/edged.schema.json"
install -m 0644 systemd/edged.service "$ROOT/lib/systemd/system/edged.service"
install -m 0644 systemd/60-edged-apex.rules "$ROOT/lib/udev/rules.d/60-edged-apex.rules"
ln -s /opt/edged/bin/edged "$ROOT/usr/bin/edged"
cat > "$ROOT/usr/share/doc/edged/copyright" <<EOF
edged: deadline-aware TFLite inference daemon for edge boxes.
License: Apache-2.0 (/usr/share/common-licenses/Apache-2.0). The wheels in
/opt/edged/wheels keep their own licenses in their metadata.
EOF

install -m 0755 "$REPO/scripts/packaging/deb/postinst" "$REPO/scripts/packaging/deb/prerm" \
    "$REPO/scripts/packaging/deb/postrm" "$ROOT/DEBIAN/"
cat > "$ROOT/DEBIAN/control" <<EOF
Package: edged
Version: $VERSION
Architecture: $ARCH
Maintainer: ${DEB_MAINTAINER:-edged developers <edged@invalid>}
Installed-Size: $(du -sk --exclude=DEBIAN "$ROOT" | cut -f1)
Depends: python3 (>= $PYVER), python3 (<< $PYNEXT), procps
Suggests: mosquitto
Section: net
Priority: optional
Description: deadline-aware TFLite inference daemon for edge boxes
 edged subscribes to MQTT sensor topics, runs quantized TFLite models in worker
 threads and publishes predictions back over MQTT; work that cannot finish by
 its deadline is not started. Configured by /etc/edged/edged.yaml, run by the
 systemd unit edged.service, checked with "edged check".
EOF

mkdir -p "$OUT"
DEB="$OUT/edged_${VERSION}_${ARCH}.deb"
# gzip: the wheels are compressed already; xz would take long for little.
dpkg-deb --root-owner-group -Zgzip --build "$ROOT" "$DEB" >/dev/null
echo "$DEB"
