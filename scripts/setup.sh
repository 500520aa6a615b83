#!/usr/bin/env bash
# Install what edged's demo and tests need on a Debian/Ubuntu machine, idempotently:
#   scripts/setup.sh demo     mosquitto + .venv with edged's runtime dependencies and the
#                             demo's one client library (paho-mqtt): what scripts/demo.sh needs
#   scripts/setup.sh          mosquitto + .venv (edged with ai-edge-litert, test and dev tools)
#   scripts/setup.sh test     also every tool the tests use (TEST_PACKAGES below) and
#                             .venv-legacy: what scripts/test.sh needs
#   scripts/setup.sh legacy   .venv-legacy only besides the first (tflite-runtime with
#                             numpy<2), for the tests that keep the legacy runtime supported
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
MODE=${1:-}

# Every Debian package the demo and the tests need, in one place. A test that finds one
# of these missing skips on a developer's machine and fails under CI (tests/support/tools.py).
DEMO_PACKAGES=(
    mosquitto             # the broker the demo and every integration test start
    python3-venv          # .venv, and the box's venv that the .deb's postinst makes
)
TEST_PACKAGES=(
    gcc libc6-dev         # tests/delegates/*.c: the external-delegate stand-ins
    systemd procps        # systemd-analyze verify of systemd/edged.service (and the
                          # /bin/kill of its ExecReload, which verify looks for)
    debootstrap debian-archive-keyring  # tests/test_package.py: a fresh Debian root
    systemd-container     # tests/test_service.py: systemd-nspawn boots that root
    qemu-user-static binfmt-support     # tests/test_package_arm64.py: an arm64 root, emulated
    tmux                  # terminal programs driven by tests (send-keys, capture-pane)
    espeak-ng sox         # audio made and measured by tests
    mosquitto-clients     # mosquitto_sub/_pub: tests/test_docs.py runs the README's walkthrough
    nats-server rabbitmq-server  # tests/test_interop.py: brokers no one here wrote (a private
                          # RabbitMQ node of the tests' own; the service is left alone)
    nodejs                # tests/test_interop.py: aedes, a Node.js broker (below); npm
                          # too, unless the nodejs at hand brings its own (NodeSource's
                          # does, and conflicts with Debian's npm package)
)

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_install() {
    local missing=() package
    for package in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed"; then
            missing+=("$package")
        fi
    done
    [ "${#missing[@]}" -eq 0 ] && return
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "setup: not a Debian/Ubuntu machine: install ${missing[*]} by hand" >&2
        return
    fi
    echo "setup: installing ${missing[*]}" >&2
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends "${missing[@]}" >/dev/null
}

if [ "$MODE" = "test" ]; then
    apt_install "${DEMO_PACKAGES[@]}" "${TEST_PACKAGES[@]}"
    command -v npm >/dev/null 2>&1 || apt_install npm
else
    apt_install "${DEMO_PACKAGES[@]}"
fi

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
if [ "$MODE" = "demo" ]; then
    # The daemon's own dependencies and the demo's MQTT client, no test toolchain (scipy,
    # onnxruntime, mypy, ...): a box that only runs the demo stays small.
    .venv/bin/python -m pip install -q -e '.[demo]'
    exit 0
fi
.venv/bin/python -m pip install -q -e '.[dev]'
scripts/models/fetch_models.sh   # third-party models and images the decoder tests use

# openWakeWord 0.5.1 is the last wheel that ships its models (melspectrogram, embedding and
# per-phrase classifiers, as .tflite and .onnx). The wheel is fetched once into a cache,
# its .tflite files are unzipped for the tests and benchmarks, and the package itself goes
# into the test venv as the reference pipeline. edged never fetches anything at run time.
OWW_VERSION=0.5.1
OWW_WHEEL=".cache/wheels/openwakeword-$OWW_VERSION-py3-none-any.whl"
OWW_MODELS=.cache/models/openwakeword
if [ ! -f "$OWW_WHEEL" ]; then
    .venv/bin/python -m pip download -q --no-deps "openwakeword==$OWW_VERSION" -d .cache/wheels
fi
if [ ! -f "$OWW_MODELS/hey_jarvis_v0.1.tflite" ]; then
    mkdir -p "$OWW_MODELS"
    .venv/bin/python - "$OWW_WHEEL" "$OWW_MODELS" <<'PY'
import sys, zipfile
from pathlib import Path
wheel, out = sys.argv[1], Path(sys.argv[2])
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.startswith("openwakeword/resources/models/") and name.endswith(".tflite"):
            (out / Path(name).name).write_bytes(z.read(name))
PY
fi
if ! .venv/bin/python -m pip show -q openwakeword >/dev/null 2>&1; then
    .venv/bin/python -m pip install -q --no-deps "$OWW_WHEEL"
fi

# The interop tests' brokers from the registries, kept out of edged's own venv: amqtt (PyPI)
# pins its own dependencies, so it gets a small venv of its own; aedes (npm) goes into the
# cache. tests/support/brokers.py runs both.
if [ "$MODE" = "test" ]; then
    if [ ! -x .venv-amqtt/bin/amqtt ]; then
        "$PYTHON" -m venv .venv-amqtt
        .venv-amqtt/bin/python -m pip install -q 'amqtt==0.12.1'
    fi
    if [ ! -f .cache/node/node_modules/aedes/package.json ]; then
        mkdir -p .cache/node
        npm install -s --no-audit --no-fund --prefix .cache/node 'aedes@1.2.0' >/dev/null
    fi
fi

legacy_python() {
    # tflite-runtime 2.14 is built against NumPy 1.x and has no wheels past Python 3.11.
    for candidate in "$PYTHON" python3.11 python3.10; do
        if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c \
            'import sys; sys.exit(not (3, 10) <= sys.version_info[:2] <= (3, 11))'; then
            echo "$candidate"
            return
        fi
    done
}

if [ "$MODE" = "legacy" ] || [ "$MODE" = "test" ]; then
    LEGACY_PYTHON=$(legacy_python)
    if [ -z "$LEGACY_PYTHON" ]; then
        echo "setup: no Python 3.10 or 3.11 here, and tflite-runtime has no wheels for" \
             "newer ones: the legacy-runtime environment is left out" >&2
        exit 0
    fi
    if [ ! -x .venv-legacy/bin/python ]; then
        "$LEGACY_PYTHON" -m venv .venv-legacy
    fi
    .venv-legacy/bin/python -m pip install -q --upgrade pip >/dev/null
    .venv-legacy/bin/python -m pip install -q 'tflite-runtime>=2.13' 'numpy<2' \
        'paho-mqtt>=2,<3' 'Pillow>=10.1' 'pydantic>=2.6' 'pydantic-settings[yaml]>=2.3' \
        'PyYAML>=6' 'prometheus-client>=0.17' 'simplejpeg>=1.7' 'structlog>=24.1' \
        'pytest>=8' 'pytest-timeout>=2.3' 'hypothesis>=6.100' 'cryptography>=41' \
        'jsonschema>=4.18' 'pyzmq>=25' 'jinja2>=3.1'
    # --no-deps: edged's default runtime, ai-edge-litert, must not come along here.
    .venv-legacy/bin/python -m pip install -q --no-deps -e .
fi
