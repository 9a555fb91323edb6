#!/usr/bin/env bash
# Records the golden cuGetProcAddress traces in tests/golden/ from NVIDIA's CUDA runtime wheels on
# PyPI (nvidia-cuda-runtime-cu12 for 12.x, nvidia-cuda-runtime for 13.x), run against the logging
# fake libcuda.so.1. Needs network access to PyPI; CI only replays the committed traces.
# Also checks the declared header subset against the real headers (tests/check_headers.sh).
# Wheels are cached under ${KANTALOUPE_CACHE:-$HOME/.cache/kantaloupe}/wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
make -s build/tests/golden_record fakes
CACHE=${KANTALOUPE_CACHE:-$HOME/.cache/kantaloupe}/wheels
PY=${PYTHON:-python3}
mkdir -p "$CACHE" tests/golden
record() { # record SPEC NAME
    local spec=$1 name=$2 dir="$CACHE/$2"
    if [[ ! -d $dir ]]; then
        "$PY" -m pip download --no-deps -q -d "$CACHE/dl-$name" "$spec"
        mkdir -p "$dir" && (cd "$dir" && unzip -q -o "$CACHE/dl-$name"/*.whl)
    fi
    local lib
    lib=$(find "$dir" -name 'libcudart.so.1[0-9]' | head -1)
    local ver
    ver=$(basename "$(ls "$CACHE/dl-$name"/*.whl)" | cut -d- -f2)
    local out="tests/golden/cudart-$ver.trace"
    rm -f "$out"
    env -i PATH="$PATH" LD_LIBRARY_PATH="$PWD/build/fakes" FAKE_CUDA_TRACE="$PWD/$out" \
        build/tests/golden_record "$lib"
    echo "$out: $(wc -l <"$out") lookups, $(awk '{print $1}' "$out" | sort -u | wc -l) names, $(awk '$3==2' "$out" | wc -l) per-thread"
}
record 'nvidia-cuda-runtime-cu12==12.9.*' cu12
record 'nvidia-cuda-runtime==13.*' cu13
# nvml.h for tests/check_headers.sh (layouts of include/kl_nvml.h)
if [[ ! -d $CACHE/nvml ]]; then
    "$PY" -m pip download --no-deps -q -d "$CACHE/dl-nvml" 'nvidia-nvml-dev-cu12'
    mkdir -p "$CACHE/nvml" && (cd "$CACHE/nvml" && unzip -q -o "$CACHE"/dl-nvml/*.whl)
fi
bash tests/check_headers.sh
