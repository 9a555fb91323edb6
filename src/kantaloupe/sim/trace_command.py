"""``kantaloupe simulate --trace openb``: replay a production trace by its published method.

The ``simulate`` parser owns ``--json``, ``--report``, ``--progress`` and the positional
scenario; this module adds the trace options and runs the replay when ``--trace`` is given.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from kantaloupe.api.errors import InvalidConfigError
from kantaloupe.sim import openb

TRACE_DIR_ENV = "KANTALOUPE_OPENB_DIR"
DEFAULT_SEEDS = (42,)


def default_trace_dir() -> Path:
    """``<repo>/../shared/data/openb``: where CI puts the trace beside a fresh clone."""
    repo = Path(__file__).resolve().parents[3]
    return repo.parent / "shared" / "data" / "openb"


def add_trace_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("trace replay")
    group.add_argument(
        "--trace",
        choices=("openb",),
        help="replay a production trace instead of a scenario (openb: Alibaba 2023, "
        "by the method of Weng et al., ATC '23)",
    )
    group.add_argument(
        "--trace-dir",
        type=Path,
        help=f"folder holding the trace's CSV files (default: ${TRACE_DIR_ENV}, "
        "else <repo>/../shared/data/openb)",
    )
    group.add_argument(
        "--policy",
        action="append",
        metavar="NAME",
        help=f"placement policy, repeatable, or 'all' (default: {openb.BEST_POLICY}); "
        f"one of {', '.join(openb.POLICIES)}",
    )
    group.add_argument(
        "--seed",
        action="append",
        type=int,
        metavar="N",
        help="random seed of the workload inflation and shuffle, repeatable (default: 42)",
    )


def resolve_trace_dir(flag: Path | None, env: dict[str, str] | None = None) -> Path:
    """Flag, then ``KANTALOUPE_OPENB_DIR``, then the default; an error names all three."""
    environ = os.environ if env is None else env
    if flag is not None:
        chosen, source = flag, "--trace-dir"
    elif environ.get(TRACE_DIR_ENV):
        chosen, source = Path(environ[TRACE_DIR_ENV]), TRACE_DIR_ENV
    else:
        chosen, source = default_trace_dir(), "the default trace folder"
    if not (chosen / openb.NODE_FILE).is_file() or not (chosen / openb.TASK_FILE).is_file():
        raise InvalidConfigError(
            source,
            str(chosen),
            f"does not hold {openb.NODE_FILE} and {openb.TASK_FILE}",
            f"pass --trace-dir DIR or set {TRACE_DIR_ENV}=DIR (CI keeps the trace in "
            "../shared/data/openb beside the repository)",
        )
    return chosen


def _policies(raw: list[str] | None) -> list[str]:
    if not raw:
        return [openb.BEST_POLICY]
    names: list[str] = []
    for item in raw:
        for name in item.split(","):
            name = name.strip()
            if name == "all":
                names.extend(openb.POLICIES)
            elif name in openb.POLICIES:
                names.append(name)
            else:
                raise InvalidConfigError(
                    "--policy", name, "is not a trace policy", f"use {', '.join(openb.POLICIES)}"
                )
    return list(dict.fromkeys(names))


def run_trace(args: argparse.Namespace) -> int:
    if getattr(args, "scenario", None) is not None:
        raise InvalidConfigError(
            "scenario", str(args.scenario), "cannot be given with --trace", "drop one of them"
        )
    if getattr(args, "report", None) is not None:
        raise InvalidConfigError(
            "--report",
            str(args.report),
            "is not available for traces",
            "bench/openb_packing.py plots the allocation curves",
        )
    directory = resolve_trace_dir(args.trace_dir)
    policies = _policies(args.policy)
    seeds = list(dict.fromkeys(args.seed or DEFAULT_SEEDS))
    trace = openb.load_trace(directory)
    workload = trace.workload()
    show = args.progress is True or (args.progress is None and sys.stderr.isatty())
    results: dict[str, list[openb.RunResult]] = {}
    started = time.perf_counter()
    for policy in policies:
        for seed in seeds:

            def progress(done: int, total: int, policy: str = policy, seed: int = seed) -> None:
                if show:
                    end = "\n" if done == total else ""
                    print(
                        f"\r  {policy} seed {seed}: {done}/{total} tasks", end=end, file=sys.stderr
                    )

            result = openb.run_method(
                trace, policy, seed, workload=workload, clock=time.process_time, progress=progress
            )
            results.setdefault(policy, []).append(result)
    summary = summarize(results, directory, time.perf_counter() - started)
    if args.json:
        print(json.dumps(summary, sort_keys=True))
        return 0
    print(format_table(results))
    print(f"\nTrace {directory} ({len(trace.nodes)} nodes, {trace.gpu_count} GPUs, ", end="")
    print(f"{len(trace.tasks)} tasks); seeds {', '.join(map(str, seeds))}")
    return 0


def summarize(
    results: dict[str, list[openb.RunResult]], directory: Path, seconds: float
) -> dict[str, object]:
    policies: dict[str, object] = {}
    for name, runs in results.items():
        times = sorted(t for r in runs for t in r.decision_s)
        policies[name] = {
            "alloc_pct_at_100": round(statistics.fmean(r.alloc_pct_at_100 for r in runs), 2),
            "alloc_pct_at_130": round(statistics.fmean(r.alloc_pct_at_130 for r in runs), 2),
            "seeds": [r.seed for r in runs],
            "decision_ms_mean": round(1000 * statistics.fmean(times), 3) if times else None,
            "decision_ms_p99": round(1000 * times[int(0.99 * (len(times) - 1))], 3)
            if times
            else None,
        }
    return {
        "trace": "openb",
        "trace_dir": str(directory),
        "policies": policies,
        "seconds": round(seconds, 1),
    }


def format_table(results: dict[str, list[openb.RunResult]]) -> str:
    lines = [
        f"{'policy':<24} {'at 100 %':>9} {'at 130 %':>9} {'ms/decision':>12} {'p99 ms':>8}",
    ]
    for name, runs in results.items():
        times = sorted(t for r in runs for t in r.decision_s)
        mean = 1000 * statistics.fmean(times) if times else 0.0
        p99 = 1000 * times[int(0.99 * (len(times) - 1))] if times else 0.0
        at100 = statistics.fmean(r.alloc_pct_at_100 for r in runs)
        at130 = statistics.fmean(r.alloc_pct_at_130 for r in runs)
        lines.append(f"{name:<24} {at100:>8.2f}% {at130:>8.2f}% {mean:>12.2f} {p99:>8.2f}")
    return "\n".join(lines)
