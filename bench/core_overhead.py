"""Added cost of the isolation core per cuMemAlloc+cuMemFree pair and per cuLaunchKernel.

Drives ``core/build/bench/core_bench`` against the fake libcuda.so.1, once calling the fake
directly and once with ``libkantaloupe-core.so`` preloaded, and reports the difference in ns
(best of five runs, each the best of five repetitions). The allocation pair is measured with a
memory limit set (the accounting path: reserve in the shared region, track, refund); the launch
with no limit set (the pass-through path). With valgrind available it also reports instructions
per operation under callgrind, which are stable across machines: (Ir(N2) - Ir(N1)) / (N2 - N1).

The last line printed is one JSON object with ``alloc_free_ns_added`` (target <= 1000) and
``launch_ns_added`` (target <= 50).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CORE = Path(__file__).resolve().parent.parent / "core"
BUILD = CORE / "build"
BENCH = BUILD / "bench" / "core_bench"
HOOK = BUILD / "libkantaloupe-core.so"
FAKES = BUILD / "fakes"


def _env(tmp: Path, *, hooked: bool, limit: bool) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LD_LIBRARY_PATH": str(FAKES),
        "FAKE_CTX_OVERHEAD_MIB": "0",
        "CUDA_DEVICE_MEMORY_SHARED_CACHE": str(tmp / "region.cache"),
    }
    if hooked:
        env["LD_PRELOAD"] = str(HOOK)
    if limit:
        env["CUDA_DEVICE_MEMORY_LIMIT"] = "64g"
    return env


def _run(env: dict[str, str], op: str, n: int, prefix: list[str] | None = None) -> dict[str, float]:
    out = subprocess.run(
        [*(prefix or []), str(BENCH), op, str(n)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def _best(env: dict[str, str], op: str, key: str, n: int) -> float:
    return min(_run(env, op, n)[key] for _ in range(5))


def _instructions(env: dict[str, str], op: str, tmp: Path) -> float:
    counts: list[int] = []
    for n in (2000, 12000):
        out = tmp / f"cg.{op}.{n}.{len(counts)}"
        prefix = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
        _run(env, op, n, prefix)
        total = next(
            int(line.split()[1])
            for line in out.read_text().splitlines()
            if line.startswith(("summary:", "totals:"))
        )
        counts.append(total)
    # 5 repetitions of n operations per run
    return (counts[1] - counts[0]) / (5 * (12000 - 2000))


def main() -> int:
    subprocess.run(
        ["make", "-s", "-C", str(CORE), "lib", "fakes", "build/bench/core_bench"], check=True
    )
    with tempfile.TemporaryDirectory(prefix="kl-bench-") as d:
        tmp = Path(d)
        n = 200_000
        direct = _env(tmp, hooked=False, limit=False)
        hooked_limit = _env(tmp, hooked=True, limit=True)
        hooked_nolimit = _env(tmp, hooked=True, limit=False)
        a_direct = _best(direct, "alloc", "alloc_free_ns", n)
        a_limit = _best(hooked_limit, "alloc", "alloc_free_ns", n)
        a_nolimit = _best(hooked_nolimit, "alloc", "alloc_free_ns", n)
        l_direct = _best(direct, "launch", "launch_ns", n * 10)
        l_nolimit = _best(hooked_nolimit, "launch", "launch_ns", n * 10)
        result: dict[str, float | None] = {
            "alloc_free_ns_added": round(a_limit - a_direct, 1),
            "alloc_free_ns_added_no_limit": round(a_nolimit - a_direct, 1),
            "launch_ns_added": round(l_nolimit - l_direct, 1),
            "alloc_free_ns_direct": round(a_direct, 1),
            "launch_ns_direct": round(l_direct, 1),
            "alloc_free_instructions_added": None,
            "launch_instructions_added": None,
        }
        print(
            f"cuMemAlloc_v2+cuMemFree_v2: fake {a_direct:.0f} ns; "
            f"hooked with a limit {a_limit:.0f} ns (+{a_limit - a_direct:.0f}); "
            f"hooked, no limit {a_nolimit:.0f} ns"
        )
        print(
            f"cuLaunchKernel: fake {l_direct:.1f} ns; hooked, no limit {l_nolimit:.1f} ns"
            f" (+{l_nolimit - l_direct:.1f})"
        )
        if shutil.which("valgrind"):
            ia = _instructions(hooked_limit, "alloc", tmp) - _instructions(direct, "alloc", tmp)
            il = _instructions(hooked_nolimit, "launch", tmp) - _instructions(direct, "launch", tmp)
            result["alloc_free_instructions_added"] = round(ia, 1)
            result["launch_instructions_added"] = round(il, 1)
            print(f"callgrind: +{ia:.0f} instructions per alloc+free pair, +{il:.1f} per launch")
        else:
            print("valgrind not found: no instruction counts")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
