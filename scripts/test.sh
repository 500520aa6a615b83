#!/usr/bin/env bash
# Set up (scripts/setup.sh test: every tool the tests use) and run the whole test suite:
# every test under ai-edge-litert, then the runtime adapter's tests and the end-to-end
# tests marked `legacy` under tflite-runtime with numpy<2. Extra arguments go to both
# pytest runs. Under CI=true a test that finds a tool missing fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
echo "== tests with ai-edge-litert (numpy 2) =="
.venv/bin/python -m pytest -q "$@"
if [ -x .venv-legacy/bin/python ]; then
    echo "== tests with tflite-runtime (numpy<2) =="
    TEST_EXPECT_RUNTIME=tflite-runtime .venv-legacy/bin/python -m pytest -q -m legacy \
        -p no:cacheprovider "$@"
else
    echo "== tflite-runtime tests skipped: this machine cannot have them (no Python" \
         "3.10/3.11 for tflite-runtime's wheels, see above) =="
fi
