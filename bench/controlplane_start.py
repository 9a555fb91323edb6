"""Start time and memory of the test control plane with cached binaries.

Targets (issue 3): the whole plane ready in < 5 s; etcd + kube-apiserver + kube-scheduler
together < 500 MB resident. Starts the plane ``--runs`` times; memory is the peak of the summed
RSS sampled for ``--settle-s`` seconds after each start (the apiserver's caches fill after
/readyz turns 200). CPU seconds to ready are reported too: on a shared 2-core machine the wall
time mostly measures the neighbours, the CPU time does not. The last line printed is one JSON
object.

    .venv/bin/python bench/controlplane_start.py [--runs 3] [--settle-s 3]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time

from kantaloupe.testing import BinariesNotFoundError, ControlPlane, find_binaries

START_TARGET_S = 5.0
RSS_TARGET_MB = 500.0
MB = 1024 * 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--settle-s", type=float, default=3.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    try:
        binaries = find_binaries()
    except BinariesNotFoundError as e:
        print(e, file=sys.stderr)
        return 2

    load_before = os.getloadavg()[0]
    starts: list[float] = []
    per_component: list[dict[str, float]] = []
    cpu: list[dict[str, float]] = []
    peaks: list[int] = []
    peak_split: dict[str, int] = {}
    for run in range(args.runs):
        t0 = time.monotonic()
        with ControlPlane(binaries=binaries) as plane:
            starts.append(time.monotonic() - t0)
            per_component.append(dict(plane.timings_s))
            cpu.append(plane.cpu_seconds())
            peak, split = 0, {}
            deadline = time.monotonic() + args.settle_s
            while time.monotonic() < deadline:  # sample RSS for a fixed window
                rss = plane.rss_bytes()
                if sum(rss.values()) > peak:
                    peak, split = sum(rss.values()), rss
                time.sleep(0.1)
            peaks.append(peak)
            if peak >= max(peaks):
                peak_split = split
        print(
            f"run {run + 1}: ready in {starts[-1]:.2f} s "
            + " ".join(f"{k}={v:.2f}s" for k, v in per_component[-1].items() if k != "total")
            + f", peak RSS {peak / MB:.0f} MB"
        )

    result = {
        "bench": "controlplane_start",
        "runs": args.runs,
        "start_s_median": round(statistics.median(starts), 3),
        "start_s_max": round(max(starts), 3),
        "start_s_runs": [round(s, 3) for s in starts],
        "ready_s_by_component_median": {
            name: round(statistics.median(t[name] for t in per_component), 3)
            for name in ("etcd", "kube-apiserver", "kube-scheduler")
        },
        "cpu_s_to_ready_median": {
            name: round(statistics.median(c.get(name, 0.0) for c in cpu), 2)
            for name in ("etcd", "kube-apiserver", "kube-scheduler")
        },
        "loadavg_1m_before": round(load_before, 2),
        "rss_mb_peak": round(max(peaks) / MB, 1),
        "rss_mb_by_component": {k: round(v / MB, 1) for k, v in peak_split.items()},
        "targets": {"start_s": START_TARGET_S, "rss_mb": RSS_TARGET_MB},
        "pass": max(starts) < START_TARGET_S and max(peaks) / MB < RSS_TARGET_MB,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
