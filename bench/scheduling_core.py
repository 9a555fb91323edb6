"""One placement decision (fit + score over every candidate node) on a half-full fleet.

Builds 1,000 x 8 and 5,000 x 8 GPU fleets (RTX 4090 / A100 / L4 mix), fills about half of the
GPU memory with a realistic mix of slices and whole cards, then times `fit.decide` for a pod
asking for one GPU slice with every node as a candidate (as kube-scheduler sends NodeNames).
Last line: one JSON object. ``--policy a,b`` also times those node policies (default:
``fragmentation-gradient``) on the same fleets, in CPU time (``time.process_time``, so other
jobs on the machine do not count), first the decision on a cold cache (per-node terms computed
for every node) and then warm; their figures go under ``policies`` in the JSON.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import sys
import time
import tracemalloc

from kantaloupe.api.ids import DeviceUuid, NodeName
from kantaloupe.scheduling import fit, scoring
from kantaloupe.scheduling.ledger import Ledger
from kantaloupe.scheduling.model import Device, Node
from kantaloupe.scheduling.policy import NodePolicy, parse_node_policy
from kantaloupe.scheduling.requests import ContainerSpec, parse_pod

MODELS = [
    ("NVIDIA GeForce RTX 4090", 24564),
    ("NVIDIA A100-SXM4-80GB", 81920),
    ("NVIDIA L4", 23034),
]
MIX = [  # (weight, limits)
    (30, {"nvidia.com/gpumem": "2000", "nvidia.com/gpucores": "10"}),
    (25, {"nvidia.com/gpumem": "4000", "nvidia.com/gpucores": "20"}),
    (15, {"nvidia.com/gpumem-percentage": "25", "nvidia.com/gpucores": "25"}),
    (10, {"nvidia.com/gpumem": "8000", "nvidia.com/gpucores": "30"}),
    (10, {"nvidia.com/gpu": "1"}),
    (5, {"nvidia.com/gpu": "2"}),
    (5, {"nvidia.com/gpumem-percentage": "50"}),
]


def fleet(nodes: int, gpus: int) -> list[Node]:
    out = []
    for i in range(nodes):
        model, memory = MODELS[i % len(MODELS)]
        name = NodeName(f"node-{i:05d}")
        devices = tuple(
            Device(DeviceUuid(f"GPU-{i:05d}-{j}"), j, model, memory, 100, 10, numa=j * 2 // gpus)
            for j in range(gpus)
        )
        out.append(Node(name, devices))
    return out


def fill(ledger: Ledger, target: float, rng: random.Random) -> int:
    total = sum(d.device.memory_mib for d in ledger.devices())
    used = 0
    weights = [w for w, _ in MIX]
    pods = 0
    names = [n.name for n in ledger.nodes()]
    while used < target * total:
        _, limits = rng.choices(MIX, weights)[0]
        request = parse_pod(f"fill-{pods}", {}, [ContainerSpec("main", limits)])
        assert request is not None
        # Each filler pod picks among a few random nodes, so usage spreads over the fleet.
        candidates = rng.sample(names, 4)
        decision = fit.place(ledger, request, candidates)
        pods += 1
        if decision.placement is not None:
            ledger.mark_bound(request.uid)
            ledger.mark_settled(request.uid)
            used += sum(s.memory_mib for c in decision.placement.containers for s in c)
    return pods


def measure(
    nodes: int, gpus: int, decisions: int, rng: random.Random, policies: list[NodePolicy]
) -> dict[str, float]:
    tracemalloc.start()
    ledger = Ledger(fleet(nodes, gpus), capacity=nodes)
    pods = fill(ledger, 0.5, rng)
    gc.collect()
    ledger_bytes = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    names = [n.name for n in ledger.nodes()]
    request = parse_pod(
        "probe",
        {},
        [ContainerSpec("main", {"nvidia.com/gpumem": "3000", "nvidia.com/gpucores": "20"})],
    )
    assert request is not None
    timings = []
    for _ in range(decisions):
        t0 = time.perf_counter()
        decision = fit.decide(ledger, request, names)
        timings.append((time.perf_counter() - t0) * 1000)
        assert decision.placement is not None
    timings.sort()
    per_policy: dict[str, float] = {}
    for policy in policies:
        defaults = fit.Defaults(node_policy=policy)
        scoring.reset_caches()
        t0 = time.process_time()
        fit.decide(ledger, request, names, defaults)
        cold = (time.process_time() - t0) * 1000
        cpu = []
        for _ in range(decisions):
            t0 = time.process_time()
            decision = fit.decide(ledger, request, names, defaults)
            cpu.append((time.process_time() - t0) * 1000)
            assert decision.placement is not None
        cpu.sort()
        per_policy[f"{policy}:cold"] = cold
        per_policy[f"{policy}:p50"] = statistics.median(cpu)
        per_policy[f"{policy}:p99"] = cpu[int(0.99 * (len(cpu) - 1))]
    return per_policy | {
        "p50": statistics.median(timings),
        "p99": timings[int(0.99 * (len(timings) - 1))],
        "ledger_mb": ledger_bytes / 2**20,
        "pods": pods,
        "memory_ratio": sum(d.used_memory_mib for d in ledger.devices())
        / sum(d.device.memory_mib for d in ledger.devices()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--policy",
        default=NodePolicy.FRAGMENTATION_GRADIENT.value,
        help="comma list of node policies to time as well (CPU time)",
    )
    args = parser.parse_args()
    policies = [parse_node_policy(p, "--policy") for p in args.policy.split(",") if p.strip()]
    rng = random.Random(42)
    small = measure(1000, 8, 400, rng, policies)
    print(f"1000x8: {small}", file=sys.stderr)
    large = measure(5000, 8, 200, rng, policies)
    print(f"5000x8: {large}", file=sys.stderr)
    result = {
        "p50_ms_1000x8": round(small["p50"], 3),
        "p99_ms_1000x8": round(small["p99"], 3),
        "p50_ms_5000x8": round(large["p50"], 3),
        "p99_ms_5000x8": round(large["p99"], 3),
        "ledger_mb_5000x8": round(large["ledger_mb"], 1),
        "pods_placed_5000x8": int(large["pods"]),
        "memory_allocated_ratio_5000x8": round(large["memory_ratio"], 3),
        "policies": {
            str(p): {
                f"cpu_{stat}_ms_{size}": round(figures[f"{p}:{stat}"], 3)
                for size, figures in (("1000x8", small), ("5000x8", large))
                for stat in ("cold", "p50", "p99")
            }
            for p in policies
        },
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
