"""/filter round trip over HTTP at 1,000 nodes × 8 GPUs (kube-scheduler's request shape).

The extender runs with its production state, fit and HTTP code; the API server is replaced by
a no-op writer (filter does not write). Each request names every node, as kube-scheduler does
with ``nodeCacheCapable``; every filter reserves, so the cluster fills as the run goes.
Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
from collections.abc import Mapping

import aiohttp
from prometheus_client import CollectorRegistry

from kantaloupe.api import keys
from kantaloupe.api.registration import DeviceV1, NodeDevicesV1, encode_registration
from kantaloupe.extender import server
from kantaloupe.extender.metrics import ExtenderMetrics
from kantaloupe.extender.service import Extender
from kantaloupe.extender.state import ClusterState
from kantaloupe.kube import election, objects
from kantaloupe.kube.events import ObjectRef
from kantaloupe.runtime import probes
from kantaloupe.runtime.lifecycle import Lifecycle, bound_port, serve


class _NoEvents:
    def warn(self, ref: ObjectRef, reason: str, message: str) -> None: ...

    def normal(self, ref: ObjectRef, reason: str, message: str) -> None: ...


class _NoWriter:
    async def get_pod(self, namespace: str, name: str) -> objects.Pod | None:
        return None

    async def patch_pod_annotations(
        self, namespace: str, name: str, annotations: Mapping[str, str | None]
    ) -> objects.Pod:
        raise NotImplementedError

    async def bind_pod(self, namespace: str, name: str, uid: str, node: str) -> None:
        raise NotImplementedError


def _node(name: str, gpus: int) -> objects.Node:
    reg = NodeDevicesV1(
        devices=tuple(
            DeviceV1(
                uuid=f"GPU-{name}-{i}",
                index=i,
                model="NVIDIA-A100-SXM4-80GB" if i % 2 else "NVIDIA-RTX-4090",
                memory_mib=81920 if i % 2 else 24576,
                cores=100,
                split=10,
            )
            for i in range(gpus)
        )
    )
    return objects.Node(
        metadata=objects.ObjectMeta(
            name=name,
            uid=name,
            resource_version="1",
            annotations={keys.NODE_DEVICES: encode_registration(reg)},
        )
    )


def _micro(at: float) -> str:
    import datetime

    return election.micro_time(datetime.datetime.fromtimestamp(at, datetime.UTC))


def _pod_body(i: int, names: list[str], rng: random.Random) -> bytes:
    limits = rng.choice(
        [
            {"nvidia.com/gpu": "1", "nvidia.com/gpumem": "4000", "nvidia.com/gpucores": "20"},
            {"nvidia.com/gpu": "1", "nvidia.com/gpumem-percentage": "25"},
            {"nvidia.com/gpu": "2", "nvidia.com/gpumem": "8000", "nvidia.com/gpucores": "30"},
            {"nvidia.com/gpu": "1"},
        ]
    )
    pod = {
        "metadata": {
            "name": f"p{i}",
            "namespace": "bench",
            "uid": f"uid-{i}",
            "resourceVersion": "1",
            "annotations": {},
        },
        "spec": {
            "containers": [
                {"name": "c", "image": "x", "resources": {"limits": limits, "requests": limits}}
            ],
            "schedulerName": "kantaloupe-scheduler",
        },
        "status": {"phase": "Pending"},
    }
    return json.dumps({"Pod": pod, "Nodes": None, "NodeNames": names}).encode()


async def main(nodes: int, gpus: int, requests: int, warmup: int) -> dict[str, object]:
    registry = CollectorRegistry()
    metrics = ExtenderMetrics(registry)
    state = ClusterState(events=_NoEvents(), metrics=metrics, agent_namespace="ns")
    names = [f"node-{i:04d}" for i in range(nodes)]
    lease_until = _micro(time.time() + 10**6)
    for name in names:
        state.on_node(None, _node(name, gpus))
        state.on_lease(
            None,
            objects.Lease(
                metadata=objects.ObjectMeta(name=keys.AGENT_LEASE_PREFIX + name, namespace="ns"),
                spec=objects.LeaseSpec(renew_time=lease_until, lease_duration_seconds=10),
            ),
        )
    extender = Extender(state, _NoWriter(), metrics)
    life = Lifecycle(grace_s=5)
    app = probes.build_app(readiness=lambda: True, registry=registry)
    server.add_routes(app, extender, metrics)
    runner = await serve(life, app, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{bound_port(runner)}/filter"
    rng = random.Random(7)
    bodies = [_pod_body(i, names, rng) for i in range(warmup + requests)]
    timings: list[float] = []
    fitted = 0
    async with aiohttp.ClientSession() as session:
        for i, body in enumerate(bodies):
            started = time.perf_counter()
            async with session.post(
                url, data=body, headers={"Content-Type": "application/json"}
            ) as r:
                doc = json.loads(await r.read())
            elapsed = time.perf_counter() - started
            if i >= warmup:
                timings.append(elapsed * 1000)
                fitted += bool(doc["NodeNames"])
            assert not doc["Error"], doc["Error"]
    await life.shutdown()
    timings.sort()
    p = lambda q: timings[min(len(timings) - 1, int(q * len(timings)))]  # noqa: E731
    return {
        "nodes": nodes,
        "gpus_per_node": gpus,
        "requests": requests,
        "fitted": fitted,
        "p50_ms_1000x8": round(p(0.50), 3),
        "p99_ms_1000x8": round(p(0.99), 3),
        "max_ms": round(timings[-1], 3),
        "mean_ms": round(statistics.fmean(timings), 3),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=100)
    a = parser.parse_args()
    print(json.dumps(asyncio.run(main(a.nodes, a.gpus, a.requests, a.warmup))))
