#!/usr/bin/env bash
# Install what edged's demo and tests need on a Debian/Ubuntu machine, idempotently:
#   scripts/setup.sh          mosquitto + .venv (edged with ai-edge-litert, test and dev tools)
#   scripts/setup.sh legacy   also .venv-legacy (tflite-runtime with numpy<2), for the
#                             tests that keep the legacy runtime supported
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
    echo "setup: installing mosquitto" >&2
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null
fi
if ! "$PYTHON" -c "import venv, ensurepip" >/dev/null 2>&1; then
    echo "setup: installing python3-venv" >&2
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[dev]'
scripts/fetch_models.sh   # third-party models and images the decoder tests use

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

if [ "${1:-}" = "legacy" ]; then
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
        'pytest>=8' 'pytest-timeout>=2.3' 'hypothesis>=6.100' 'cryptography>=41'
    # --no-deps: edged's default runtime, ai-edge-litert, must not come along here.
    .venv-legacy/bin/python -m pip install -q --no-deps -e .
fi
