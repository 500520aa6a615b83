#!/usr/bin/env bash
# Set up what the demo needs (scripts/setup.sh demo: mosquitto, and a .venv with edged's
# runtime dependencies and paho-mqtt) and run the end-to-end demo (scripts/demo.py).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh demo
exec .venv/bin/python scripts/demo.py "$@"
