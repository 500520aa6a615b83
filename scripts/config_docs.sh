#!/usr/bin/env bash
# Regenerate the configuration's JSON Schema and reference from edged's pydantic models,
# after adding or changing a config key (tests/test_schema.py fails until this is run):
#   docs/edged.schema.json   `edged schema`     (systemd/edged.schema.json links to it)
#   docs/configuration.md    `edged config-doc`
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
"$PY" -m edged schema > docs/edged.schema.json
"$PY" -m edged config-doc > docs/configuration.md
echo "config_docs: wrote docs/edged.schema.json and docs/configuration.md" >&2
