#!/usr/bin/env bash
# Runs every C test of the isolation core and prints "N passed, N failed" as its last line.
# Usage: tests/run.sh BUILD_DIR (run from core/). Exit 0 only when everything passed.
set -u
cd "$(dirname "$0")/.."
B=${1:-build}
ROOT=$(pwd)
TMP=$(mktemp -d /tmp/kl-tests.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
PASSED=0
FAILED=0

# run NAME CMD...: a test program printing PASS/FAIL lines and "RESULT p f"
run() {
    local name=$1; shift
    local out="$TMP/$name.out"
    "$@" >"$out" 2>&1
    local rc=$?
    local res
    res=$(grep -E '^RESULT [0-9]+ [0-9]+$' "$out" | tail -1)
    if [[ -z $res ]]; then
        echo "FAIL $name: no result (exit $rc)"
        sed 's/^/    /' "$out" | tail -30
        FAILED=$((FAILED + 1))
        return
    fi
    local p f
    read -r _ p f <<<"$res"
    if [[ $rc -ne 0 && $f -eq 0 ]]; then f=1; fi # e.g. a sanitizer report at exit
    PASSED=$((PASSED + p))
    FAILED=$((FAILED + f))
    if [[ $f -ne 0 ]]; then
        echo "FAIL $name ($p passed, $f failed, exit $rc)"
        sed 's/^/    /' "$out" | grep -v '^    PASS' | tail -40
    else
        echo "ok   $name ($p passed)"
    fi
}

# check NAME CMD...: a single shell-level check (exit status)
check() {
    local name=$1; shift
    if "$@" >"$TMP/$name.out" 2>&1; then
        PASSED=$((PASSED + 1)); echo "ok   $name"
    else
        FAILED=$((FAILED + 1)); echo "FAIL $name"; sed 's/^/    /' "$TMP/$name.out" | tail -20
    fi
}

exports_match_hooks_def() {
    diff <(nm -D --defined-only "$B/libkantaloupe-core.so" | awk '{print $3}' | sed 's/@.*//' | sort -u) \
         <( (echo dlsym; sed -n 's/^HOOK(\([A-Za-z0-9_]*\),.*/\1/p' src/hooks.def) | sort -u)
}
no_constructors() { # .init_array holds only the toolchain's frame_dummy (one pointer)
    local size
    size=$(readelf -S -W "$B/libkantaloupe-core.so" | awk '$2 == ".init_array" {print $6}')
    [[ -z $size || $((16#$size)) -le 8 ]]
}

# ---- unit and process tests (plain, ASan+UBSan, TSan) ----
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export TSAN_OPTIONS=halt_on_error=1:exitcode=66
run units "$B/tests/test_units"
run units-asan "$B/tests/test_units_asan"
run units-tsan "$B/tests/test_units_tsan"
run procs "$B/tests/test_procs"
run procs-asan "$B/tests/test_procs_asan"
run limiter "$B/tests/test_limiter"

# ---- the preloaded hook against the fakes ----
check exports-match-hooks-def exports_match_hooks_def
check no-work-in-constructors no_constructors
bash tests/check_headers.sh >"$TMP/headers.out" 2>&1
case $? in
    0) PASSED=$((PASSED + 1)); echo "ok   header-layouts-match-nvidia" ;;
    77) echo "skip header-layouts-match-nvidia (no cached NVIDIA headers; tools/record-golden.sh fetches them)" ;;
    *) FAILED=$((FAILED + 1)); echo "FAIL header-layouts-match-nvidia"; sed 's/^/    /' "$TMP/headers.out" ;;
esac

hook() { # hook GROUP [VAR=VALUE...] -- extra args
    local group=$1; shift
    local envs=()
    while [[ $# -gt 0 && $1 != -- ]]; do envs+=("$1"); shift; done
    [[ ${1:-} == -- ]] && shift
    run "hook-$group" env -i PATH="$PATH" HOME="${HOME:-/tmp}" \
        LD_LIBRARY_PATH="$ROOT/$B/fakes" LD_PRELOAD="$ROOT/$B/libkantaloupe-core.so" \
        FAKE_GPU_STATE="$TMP/gpu-$group" CUDA_DEVICE_MEMORY_SHARED_CACHE="$TMP/region-$group" \
        "${envs[@]}" "$B/tests/test_hook" "$group" "$@"
}
GOLDEN=(tests/golden/*.trace)
hook entry CUDA_DEVICE_MEMORY_LIMIT=1g -- "${GOLDEN[@]}"
hook memory CUDA_DEVICE_MEMORY_LIMIT=1g CUDA_DEVICE_MEMORY_LIMIT_1=0 FAKE_CTX_OVERHEAD_MIB=0
hook visible CUDA_VISIBLE_DEVICES=1,0 CUDA_DEVICE_MEMORY_LIMIT_0=1g CUDA_DEVICE_MEMORY_LIMIT_1=2g FAKE_CTX_OVERHEAD_MIB=0
hook visible_uuid CUDA_VISIBLE_DEVICES=GPU-4b4c0000-0000-0000-0000-000000000001 CUDA_DEVICE_MEMORY_LIMIT=1g FAKE_CTX_OVERHEAD_MIB=0
hook context CUDA_DEVICE_MEMORY_LIMIT=1024m FAKE_CTX_OVERHEAD_MIB=256
hook invalid "CUDA_DEVICE_MEMORY_LIMIT=4 gigs" FAKE_CTX_OVERHEAD_MIB=0
hook passthrough FAKE_CTX_OVERHEAD_MIB=0
hook launch CUDA_DEVICE_SM_LIMIT=30 FAKE_GPU_UTIL=100
hook launch_nolimit FAKE_GPU_UTIL=100
hook launch_invalid CUDA_DEVICE_SM_LIMIT=lots
hook procs CUDA_DEVICE_MEMORY_LIMIT=1GiB FAKE_CTX_OVERHEAD_MIB=0

# Python users: ctypes.CDLL(...) lookups go through the dlsym override
ctypes_lookups_hooked() {
    env -i PATH="$PATH" LD_LIBRARY_PATH="$ROOT/$B/fakes" LD_PRELOAD="$ROOT/$B/libkantaloupe-core.so" \
        "$PY" - "$ROOT/$B/libkantaloupe-core.so" <<'PYEOF'
import ctypes, sys
hook = ctypes.CDLL(sys.argv[1])
addr = lambda f: ctypes.cast(f, ctypes.c_void_p).value
nvml, cuda = ctypes.CDLL("libnvidia-ml.so.1"), ctypes.CDLL("libcuda.so.1")
assert addr(nvml.nvmlDeviceGetMemoryInfo_v2) == addr(hook.nvmlDeviceGetMemoryInfo_v2)
assert addr(cuda.cuMemAlloc_v2) == addr(hook.cuMemAlloc_v2)
assert addr(cuda.cuGetProcAddress_v2) == addr(hook.cuGetProcAddress_v2)
assert addr(cuda.cuDeviceGetCount) != 0 and not hasattr(hook, "cuDeviceGetCount")
PYEOF
}
PY=${PYTHON:-python3}
if command -v "$PY" >/dev/null; then
    check ctypes-lookups-hooked ctypes_lookups_hooked
else
    echo "skip ctypes-lookups-hooked (no python3)"
fi

echo "$PASSED passed, $FAILED failed"
[[ $FAILED -eq 0 ]]
