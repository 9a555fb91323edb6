"""``kantaloupe simulate``: replay a scenario (default: the bundled fleet) or a production trace."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path
from types import ModuleType

from kantaloupe.api.errors import InvalidConfigError
from kantaloupe.scheduling import fit
from kantaloupe.scheduling.policy import parse_gpu_policy, parse_node_policy
from kantaloupe.sim import report, runner
from kantaloupe.sim.scenario import load_scenario


def _trace_module() -> ModuleType | None:
    try:
        return importlib.import_module("kantaloupe.sim.trace_command")
    except ModuleNotFoundError as e:
        if e.name == "kantaloupe.sim.trace_command":
            return None
        raise


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "scenario",
        nargs="?",
        type=Path,
        help="scenario YAML (default: the bundled RTX 4070/4090 inference fleet)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--report", type=Path, metavar="FILE.html", help="write an HTML report")
    parser.add_argument("--node-policy", help="override the scenario's node policy")
    parser.add_argument("--gpu-policy", help="override the scenario's GPU policy")
    parser.add_argument(
        "--progress/--no-progress",
        dest="progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress on stderr (default: on for long runs at a terminal)",
    )
    trace = _trace_module()
    if trace is not None:
        trace.add_trace_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if getattr(args, "trace", None):
        trace = _trace_module()
        assert trace is not None
        code: int = trace.run_trace(args)
        return code
    started = time.perf_counter()
    scenario, source = load_scenario(args.scenario)
    defaults = _defaults(args, scenario.node_policy, scenario.gpu_policy)
    progress = _progress_printer(args.progress)
    shared = runner.run(scenario, defaults=defaults, progress=progress)
    whole = runner.run(scenario, whole_gpu=True, defaults=defaults, progress=progress)
    summary = _summary(scenario.name, source, shared, whole, time.perf_counter() - started)
    if args.report is not None:
        try:
            args.report.write_text(report.html_report(scenario.name, shared, whole, summary))
        except OSError as e:
            raise InvalidConfigError(
                "--report", str(args.report), f"cannot be written ({e.strerror})", "pick a path"
            ) from e
    if args.json:
        print(json.dumps(summary, sort_keys=True))
        return 0
    print(f"Scenario {scenario.name} ({source})\n")
    print(report.placement_table(shared))
    print()
    _print_summary(summary)
    return 0


def _defaults(args: argparse.Namespace, node: str | None, gpu: str | None) -> fit.Defaults:
    base = fit.Defaults()
    node_raw = args.node_policy or node
    gpu_raw = args.gpu_policy or gpu
    return fit.Defaults(
        node_policy=parse_node_policy(node_raw, "--node-policy") if node_raw else base.node_policy,
        gpu_policy=parse_gpu_policy(gpu_raw, "--gpu-policy") if gpu_raw else base.gpu_policy,
    )


def _progress_printer(enabled: bool | None) -> runner.Progress | None:
    if enabled is False:
        return None
    last = [0.0]

    def show(done: int, total: int) -> None:
        if enabled is None and (total < 5000 or not sys.stderr.isatty()):
            return
        now = time.monotonic()
        if now - last[0] >= 0.5 or done == total:
            last[0] = now
            print(f"\r  {done}/{total} events ({100 * done // total}%)", end="", file=sys.stderr)
            if done == total:
                print(file=sys.stderr)

    return show


def _summary(
    name: str, source: str, shared: runner.Outcome, whole: runner.Outcome, seconds: float
) -> dict[str, object]:
    services = shared.placed["service"]
    services_whole = whole.placed["service"]
    return {
        "scenario": name,
        "source": source,
        "services_placed": services,
        "services_placed_whole_gpu": services_whole,
        "services_ratio_vs_whole_gpu": round(services / services_whole, 2)
        if services_whole
        else None,
        "batch_placed": shared.placed["batch"],
        "batch_placed_whole_gpu": whole.placed["batch"],
        "memory_allocation_ratio": round(shared.memory_ratio, 4),
        "core_allocation_ratio": round(shared.core_ratio, 4),
        "memory_allocation_ratio_whole_gpu": round(whole.memory_ratio, 4),
        "pending": len(shared.pending),
        "pending_whole_gpu": len(whole.pending),
        "pending_reasons": dict(sorted(shared.pending.items())),
        "seconds": round(seconds, 3),
    }


def _print_summary(s: dict[str, object]) -> None:
    print("Summary                          shared slices   whole GPUs")
    row = "  {:<31}{:>13}   {:>10}"
    print(row.format("services placed", s["services_placed"], s["services_placed_whole_gpu"]))
    print(row.format("batch jobs placed", s["batch_placed"], s["batch_placed_whole_gpu"]))
    print(f"  pending at the end             {s['pending']:>13}   {s['pending_whole_gpu']:>10}")
    mem = float(str(s["memory_allocation_ratio"]))
    mem_whole = float(str(s["memory_allocation_ratio_whole_gpu"]))
    print(f"  GPU memory allocated           {mem:>13.1%}   {mem_whole:>10.1%}")
    print(f"  GPU cores allocated            {float(str(s['core_allocation_ratio'])):>13.1%}")
    print(f"  services vs whole-GPU          {s['services_ratio_vs_whole_gpu']}×")
    reasons = s["pending_reasons"]
    if isinstance(reasons, dict) and reasons:
        print("\nPending pods:")
        for uid, why in reasons.items():
            print(f"  {uid}: {why}")
    print(f"\nDone in {s['seconds']} s")
