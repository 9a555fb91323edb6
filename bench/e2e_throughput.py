"""End to end on the real control plane: create → bound throughput, a 40-pod burst on one
node with a node-agent double answering every hand-off, and an over-allocation audit.

etcd + kube-apiserver + kube-scheduler (kantaloupe profile, extender filter+bind) + the
``kantaloupe scheduler`` process; 1,000 GPU nodes × 8 GPUs with registrations and heartbeat
Leases; 2,000 pods of mixed sizes. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "integration"))

from extender_harness import (
    AGENT_NAMESPACE,
    SchedulerProcess,
    gpu_node,
    gpu_pod,
    node_agent_double,
    over_allocations,
)

from kantaloupe.kube import errors as kube_errors
from kantaloupe.kube import objects
from kantaloupe.kube.client import KubeClient, namespaces_path, pods_path
from kantaloupe.testing import ControlPlane, cluster

MIX = [
    {"nvidia.com/gpu": 1, "nvidia.com/gpumem": 4000, "nvidia.com/gpucores": 20},
    {"nvidia.com/gpu": 1, "nvidia.com/gpumem-percentage": 25},
    {"nvidia.com/gpu": 2, "nvidia.com/gpumem": 8000, "nvidia.com/gpucores": 30},
    {"nvidia.com/gpu": 1},
]


async def _bounded(coros: list[Any], limit: int) -> None:
    sem = asyncio.Semaphore(limit)

    async def run(c: Any) -> None:
        async with sem:
            await c

    await asyncio.gather(*(run(c) for c in coros))


async def _wait_bound(client: KubeClient, namespace: str, count: int, timeout_s: float) -> float:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    bound = 0
    while True:
        try:
            listing = await client.list(pods_path(namespace), objects.Pod)
        except kube_errors.TransportError:  # an overloaded apiserver may cut a response
            await asyncio.sleep(0.5)
            continue
        bound = sum(1 for p in listing.items if p.spec.node_name)
        if bound >= count:
            return loop.time()
        if loop.time() > deadline:
            raise TimeoutError(f"{bound}/{count} pods bound in {namespace}")
        await asyncio.sleep(0.25)


async def run(
    nodes: int, pods: int, burst: int, plane: ControlPlane, log_dir: Path
) -> dict[str, Any]:
    result: dict[str, Any] = {"nodes": nodes, "pods": pods}
    async with (
        cluster.api_client(plane.admin_kubeconfig) as api,
        await KubeClient.connect(plane.admin_kubeconfig) as kube,
    ):
        await kube.create(
            namespaces_path(),
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": AGENT_NAMESPACE}},
            objects.Namespace,
        )
        t = time.perf_counter()
        label = "bench"
        capacity: dict[str, tuple[int, int]] = {}
        for n in range(nodes):
            for g in range(8):
                capacity[f"GPU-node-{n:04d}-{g}"] = (24576, 10)
        await _bounded(
            [gpu_node(api, kube, f"node-{n:04d}", gpus=8, label=label) for n in range(nodes)], 32
        )
        result["setup_nodes_s"] = round(time.perf_counter() - t, 1)
        scheduler = SchedulerProcess(
            plane, log_dir, "--log-level", "warning", "--reservation-ttl", "60s"
        )
        await asyncio.to_thread(scheduler.start, 120)
        try:
            async with node_agent_double(kube):
                ns = await cluster.create_namespace(api, "bench-throughput")
                rng = random.Random(1)
                manifests = [gpu_pod(f"p{i:05d}", label, rng.choice(MIX)) for i in range(pods)]
                started = asyncio.get_running_loop().time()
                # The raw client: the typed one spends more CPU decoding replies than this
                # 2-core box can spare while the apiserver and the scheduler run beside it.
                creating = asyncio.ensure_future(
                    _bounded([kube.create(pods_path(ns), m, objects.Pod) for m in manifests], 64)
                )
                created_at: list[float] = []
                creating.add_done_callback(
                    lambda _: created_at.append(asyncio.get_running_loop().time())
                )
                done_at = await _wait_bound(kube, ns, pods, 600)
                await creating
                elapsed = done_at - started
                result["create_seconds"] = round(created_at[0] - started, 2)
                result["throughput_seconds"] = round(elapsed, 2)
                result["pods_per_second"] = round(pods / elapsed, 1)

                burst_node = "burst-node"
                await gpu_node(api, kube, burst_node, gpus=8, label="burst")
                for g in range(8):
                    capacity[f"GPU-{burst_node}-{g}"] = (24576, 10)
                bns = await cluster.create_namespace(api, "bench-burst")
                limits = {"nvidia.com/gpu": 1, "nvidia.com/gpumem": 2000, "nvidia.com/gpucores": 10}
                started = asyncio.get_running_loop().time()
                await asyncio.gather(
                    *(
                        cluster.create_pod(api, bns, gpu_pod(f"b{i}", "burst", limits))
                        for i in range(burst)
                    )
                )
                await _wait_bound(kube, bns, burst, 120)
                # ... and every hand-off answered.
                while True:
                    listing = await kube.list(pods_path(bns), objects.Pod)
                    if all(
                        '"phase":"done"'
                        in (p.metadata.annotations or {}).get("kantaloupe.io/handoff", "")
                        for p in listing.items
                    ):
                        break
                    await asyncio.sleep(0.05)
                result[f"burst{burst}_seconds"] = round(
                    asyncio.get_running_loop().time() - started, 2
                )
                bad = await over_allocations(kube, ns, capacity) + await over_allocations(
                    kube, bns, capacity
                )
                result["over_allocations"] = len(bad)
                if bad:
                    result["over_allocation_examples"] = bad[:5]
        finally:
            scheduler.stop()
        result["extender_log_tail"] = scheduler.tail(3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--pods", type=int, default=2000)
    parser.add_argument("--burst", type=int, default=40)
    a = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, ControlPlane() as plane:
        result = asyncio.run(run(a.nodes, a.pods, a.burst, plane, Path(tmp)))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
