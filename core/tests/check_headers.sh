#!/usr/bin/env bash
# Compares the struct layouts of include/kl_cuda.h and include/kl_nvml.h with NVIDIA's real
# cuda.h/nvml.h (CUDA 12 and 13) when tools/record-golden.sh has cached the wheels under
# ${KANTALOUPE_CACHE:-$HOME/.cache/kantaloupe}/wheels. Exit 0 = match, 1 = mismatch, 77 = skipped.
set -u
CACHE=${KANTALOUPE_CACHE:-$HOME/.cache/kantaloupe}/wheels
NVML=$(find "$CACHE" -name nvml.h 2>/dev/null | head -1)
[[ -n $NVML ]] || exit 77
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
cc -std=c11 -Iinclude tests/header_layout.c -o "$T/mine" || exit 1
n=0
for cuda in $(find "$CACHE" -name cuda.h 2>/dev/null); do
    cc -std=c11 -DREAL -I"$(dirname "$cuda")" -I"$(dirname "$NVML")" tests/header_layout.c -o "$T/real" || exit 1
    diff <("$T/real") <("$T/mine") || { echo "layout mismatch against $cuda"; exit 1; }
    n=$((n + 1))
done
[[ $n -gt 0 ]] || exit 77
echo "layouts match $n cuda.h"
