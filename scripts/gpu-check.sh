#!/usr/bin/env bash
# GPU check of the isolation core on a real NVIDIA GPU with PyTorch (cannot run without one).
#
#   scripts/gpu-check.sh            # builds core/, runs every check on GPU 0, prints one JSON
#
# Checks (each in fresh processes, LD_PRELOAD=core/build/libkantaloupe-core.so):
#   limit_default / limit_expandable / limit_async   with CUDA_DEVICE_MEMORY_LIMIT=4g and the
#       default caching allocator, PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True and
#       backend:cudaMallocAsync: allocating 256 MiB blocks succeeds up to the limit, the next one
#       raises torch.cuda.OutOfMemoryError, torch.cuda.mem_get_info() reports total == 4 GiB and
#       nvidia-smi (run under the same preload) reports 4096 MiB total.
#   two_processes     two processes on one region: A holds 3 GiB, B's 3 GiB is refused, B's 512 MiB
#                     succeeds; after A exits B's 3 GiB succeeds.
#   sm30_share        matmul throughput with CUDA_DEVICE_SM_LIMIT=30 (policy FORCE) divided by the
#                     unlimited throughput: must be 0.25..0.35.
#   matmul_ratio      matmul throughput with the library and no limit / without the library: >= 0.99.
#   launch_overhead_ns  added ns per small kernel launch (torch add_ on one element), no limit.
# Prints one JSON object; exit 0 when every check passed.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
make -s -C core lib >&2 || { echo '{"error": "core build failed"}'; exit 1; }
LIB=$PWD/core/build/libkantaloupe-core.so
WORK=$(mktemp -d /tmp/kl-gpu-check.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
export CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-0}

cat >"$WORK/check.py" <<'PY'
import json, os, subprocess, sys, time
import torch

MIB, GIB = 1 << 20, 1 << 30
mode = sys.argv[1]

def nvidia_smi_total_mib():
    try:
        out = subprocess.run(["nvidia-smi", "-i", "0", "--query-gpu=memory.total,memory.used",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True,
                             timeout=60, env=os.environ).stdout.strip().splitlines()[0]
        return [int(x) for x in out.split(",")]
    except Exception as e:  # reported, not fatal
        return str(e)

def fill(limit):
    torch.cuda.init()
    free, total = torch.cuda.mem_get_info()
    blocks, oom = [], False
    try:
        while len(blocks) * 256 * MIB <= 2 * limit:
            blocks.append(torch.empty(256 * MIB, dtype=torch.uint8, device="cuda"))
    except torch.cuda.OutOfMemoryError:
        oom = True
    got = len(blocks) * 256 * MIB
    smi = nvidia_smi_total_mib()
    del blocks
    torch.cuda.empty_cache()
    ok = (oom and total == limit and limit - 768 * MIB <= got <= limit
          and isinstance(smi, list) and smi[0] == limit // MIB)
    return {"ok": ok, "mem_get_info_total": total, "mem_get_info_free": free,
            "allocated_before_oom": got, "oom_raised": oom, "nvidia_smi_total_used_mib": smi}

def matmul_rate(seconds):
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    for _ in range(5):
        a @ b
    torch.cuda.synchronize()
    n, t0 = 0, time.monotonic()
    while time.monotonic() - t0 < seconds:
        for _ in range(10):
            a @ b
        torch.cuda.synchronize()
        n += 10
    return n / (time.monotonic() - t0)

def launch_ns(n=200_000):
    x = torch.zeros(1, device="cuda")
    for _ in range(1000):
        x.add_(1)
    torch.cuda.synchronize()
    t0 = time.perf_counter_ns()
    for _ in range(n):
        x.add_(1)
    torch.cuda.synchronize()
    return (time.perf_counter_ns() - t0) / n

if mode == "fill":
    print(json.dumps(fill(int(sys.argv[2]))))
elif mode == "hold":  # hold: allocate N bytes, signal via a file, wait for the release file
    x = torch.empty(int(sys.argv[2]), dtype=torch.uint8, device="cuda")
    open(sys.argv[3], "w").close()
    while not os.path.exists(sys.argv[4]):
        time.sleep(0.05)
elif mode == "try":
    out = {}
    for size in sys.argv[2:]:
        try:
            y = torch.empty(int(size), dtype=torch.uint8, device="cuda")
            del y
            torch.cuda.empty_cache()
            out[size] = True
        except torch.cuda.OutOfMemoryError:
            out[size] = False
    print(json.dumps(out))
elif mode == "matmul":
    print(json.dumps({"rate": matmul_rate(float(sys.argv[2]))}))
elif mode == "launch":
    print(json.dumps({"ns": launch_ns()}))
PY

# run NAME VAR=VALUE... -- ARGS: runs check.py with the library preloaded (unless NOLIB=1)
run() {
    local envs=() lib=$LIB
    while [[ $1 != -- ]]; do
        [[ $1 == NOLIB=1 ]] && lib="" || envs+=("$1")
        shift
    done
    shift
    env LD_PRELOAD="$lib" CUDA_DEVICE_MEMORY_SHARED_CACHE="$WORK/region-$RANDOM.cache" \
        "${envs[@]}" "$PY" "$WORK/check.py" "$@"
}

LIMIT=$((4 << 30))
limit_default=$(run CUDA_DEVICE_MEMORY_LIMIT=4g -- fill $LIMIT)
limit_expandable=$(run CUDA_DEVICE_MEMORY_LIMIT=4g PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True -- fill $LIMIT)
limit_async=$(run CUDA_DEVICE_MEMORY_LIMIT=4g PYTORCH_CUDA_ALLOC_CONF=backend:cudaMallocAsync -- fill $LIMIT)

# two processes, one region
REGION=$WORK/shared.cache
env LD_PRELOAD="$LIB" CUDA_DEVICE_MEMORY_LIMIT=4g CUDA_DEVICE_MEMORY_SHARED_CACHE="$REGION" \
    "$PY" "$WORK/check.py" hold $((3 << 30)) "$WORK/held" "$WORK/release" &
HOLDER=$!
for _ in $(seq 600); do [[ -e $WORK/held ]] && break; sleep 0.1; done
during=$(env LD_PRELOAD="$LIB" CUDA_DEVICE_MEMORY_LIMIT=4g CUDA_DEVICE_MEMORY_SHARED_CACHE="$REGION" \
    "$PY" "$WORK/check.py" try $((3 << 30)) $((512 << 20)))
touch "$WORK/release"
wait $HOLDER
after=$(env LD_PRELOAD="$LIB" CUDA_DEVICE_MEMORY_LIMIT=4g CUDA_DEVICE_MEMORY_SHARED_CACHE="$REGION" \
    "$PY" "$WORK/check.py" try $((3 << 30)))

# compute share and overhead
native=$(run NOLIB=1 -- matmul 10)
nolimit=$(run -- matmul 10)
sm30=$(run CUDA_DEVICE_SM_LIMIT=30 GPU_CORE_UTILIZATION_POLICY=FORCE -- matmul 20)
launch_native=$(run NOLIB=1 -- launch)
launch_hooked=$(run -- launch)

"$PY" - "$limit_default" "$limit_expandable" "$limit_async" "$during" "$after" "$native" \
    "$nolimit" "$sm30" "$launch_native" "$launch_hooked" <<'PY'
import json, sys
import torch
def j(s):
    try:
        return json.loads(s)
    except Exception:
        return {"error": s[-300:]}
ld, le, la, during, after, native, nolimit, sm30, ln, lh = map(j, sys.argv[1:])
three, half = str(3 << 30), str(512 << 20)
two = {"ok": during.get(three) is False and during.get(half) is True and after.get(three) is True,
       "while_held": during, "after_exit": after}
share = sm30.get("rate", 0) / native["rate"] if native.get("rate") else None
ratio = nolimit.get("rate", 0) / native["rate"] if native.get("rate") else None
overhead = lh["ns"] - ln["ns"] if "ns" in lh and "ns" in ln else None
summary = {
    "gpu": torch.cuda.get_device_name(0),
    "torch": torch.__version__,
    "limit_default": ld, "limit_expandable": le, "limit_async": la,
    "two_processes": two,
    "sm30_share": share, "sm30_ok": share is not None and 0.25 <= share <= 0.35,
    "matmul_ratio": ratio, "matmul_ok": ratio is not None and ratio >= 0.99,
    "launch_native_ns": ln.get("ns"), "launch_overhead_ns": overhead,
}
summary["pass"] = all([ld.get("ok"), le.get("ok"), la.get("ok"), two["ok"], summary["sm30_ok"],
                       summary["matmul_ok"]])
print(json.dumps(summary))
sys.exit(0 if summary["pass"] else 1)
PY
