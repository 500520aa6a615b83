#!/usr/bin/env bash
# Build dist/edged_<version>_<arch>.deb for this machine's architecture and Python, to
# install on a Debian-based box with `apt install ./edged_<version>_<arch>.deb`:
#
#   scripts/packaging/build-deb.sh [--version V] [--config FILE] [--out DIR]
#
#   --version V     the package's version (default: pyproject.toml's)
#   --config FILE   ship FILE as the example config (default: systemd/edged.yaml)
#   --out DIR       where the .deb goes (default: dist/)
#
# The package holds edged and every dependency as wheels built here for /usr/bin/python3,
# the same Python the box has when it runs the same release (the package depends on that
# Python's minor version). Its postinst makes the virtualenv /opt/edged from the box's
# /usr/bin/python3 and those wheels alone: nothing is downloaded on the box. A virtualenv
# made here could not be shipped: it points at this machine's interpreter.
#
# Contents: /opt/edged/wheels, /opt/edged/models (the bundled models), /opt/edged/README.md,
# /lib/systemd/system/edged.service, /usr/share/edged/edged.yaml (the example config and its
# schema), /lib/udev/rules.d/60-edged-apex.rules, /usr/bin/edged. The postinst copies the
# example to /etc/edged/edged.yaml only where that file is missing: the config is the
# engineer's, not a conffile, so an upgrade never prompts and never changes it. The unit is
# enabled on the first install (in an image build too) and started where systemd runs.
# `apt remove` keeps /etc/edged and the spool (/var/lib/edged); `apt purge` deletes them.
# edged reports VERSION as its own (`edged --version`, the logs).
# Needs dpkg-deb and python3-venv (scripts/setup.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD

VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -n1)
CONFIG=systemd/edged.yaml
OUT=dist
while [ $# -gt 0 ]; do
    case "$1" in
        --version) VERSION=$2; shift 2 ;;
        --config) CONFIG=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        *) echo "build-deb: unknown argument $1 (see the top of $0)" >&2; exit 2 ;;
    esac
done
PYTHON=/usr/bin/python3
[ -x "$PYTHON" ] || { echo "build-deb: $PYTHON is missing: apt-get install python3" >&2; exit 1; }
ARCH=$(dpkg --print-architecture)
PYVER=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
PYNEXT=$("$PYTHON" -c 'import sys; print("%d.%d" % (sys.version_info[0], sys.version_info[1] + 1))')

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

# Wheels for the box's Python: built by that same Python, in a virtualenv of its own so
# that neither this checkout's .venv nor the system's site-packages leak in.
echo "build-deb: wheels for Python $PYVER ($ARCH)" >&2
"$PYTHON" -m venv "$WORK/build-venv"
"$WORK/build-venv/bin/python" -m pip install -q --upgrade pip
"$WORK/build-venv/bin/python" -m pip wheel -q --wheel-dir "$ROOT/opt/edged/wheels" \
    "$SRC[frigate]" pip 2> >(grep -v "^WARNING: Location .* is ignored" >&2)

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
