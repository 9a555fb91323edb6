"""Fakes and factories for the extender's unit tests (no API server, no patches)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from prometheus_client import CollectorRegistry

from kantaloupe.api import keys
from kantaloupe.api.registration import DeviceV1, NodeDevicesV1, encode_registration
from kantaloupe.extender.metrics import ExtenderMetrics
from kantaloupe.extender.service import Extender, Timing
from kantaloupe.extender.state import ClusterState
from kantaloupe.kube import errors as kube_errors
from kantaloupe.kube import objects
from kantaloupe.kube.election import micro_time
from kantaloupe.kube.events import ObjectRef

SAMPLES = Path("/work/shared/reference/samples")
if not SAMPLES.exists():  # the recorded payloads, copied beside the tests
    SAMPLES = Path(__file__).parent / "samples"


@dataclass
class FakeEvents:
    items: list[tuple[str, str, str]] = field(default_factory=list)

    def warn(self, ref: ObjectRef, reason: str, message: str) -> None:
        self.items.append((ref.name, reason, message))

    def normal(self, ref: ObjectRef, reason: str, message: str) -> None:
        self.items.append((ref.name, reason, message))

    def reasons(self) -> list[str]:
        return [r for _, r, _ in self.items]


class FakeClock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeWriter:
    """Pods in memory; records the order of writes."""

    def __init__(self) -> None:
        self.pods: dict[str, objects.Pod] = {}
        self.calls: list[tuple[str, str]] = []
        self.fail_bind: kube_errors.KubeError | None = None
        self.gate: asyncio.Event | None = None

    def add(self, pod: objects.Pod) -> None:
        self.pods[f"{pod.metadata.namespace}/{pod.metadata.name}"] = pod

    async def get_pod(self, namespace: str, name: str) -> objects.Pod | None:
        return self.pods.get(f"{namespace}/{name}")

    async def patch_pod_annotations(
        self, namespace: str, name: str, annotations: Mapping[str, str | None]
    ) -> objects.Pod:
        self.calls.append(("patch", name))
        if self.gate is not None:
            await self.gate.wait()
        key = f"{namespace}/{name}"
        pod = self.pods.get(key)
        if pod is None:
            raise kube_errors.NotFoundError(404, "NotFound", f"pods {name!r} not found")
        merged = dict(pod.metadata.annotations or {})
        for k, v in annotations.items():
            if v is None:
                merged.pop(k, None)
            else:
                merged[k] = v
        pod = msgspec.structs.replace(
            pod, metadata=msgspec.structs.replace(pod.metadata, annotations=merged)
        )
        self.pods[key] = pod
        return pod

    async def bind_pod(self, namespace: str, name: str, uid: str, node: str) -> None:
        self.calls.append(("bind", name))
        if self.fail_bind is not None:
            raise self.fail_bind
        key = f"{namespace}/{name}"
        pod = self.pods[key]
        if pod.spec.node_name:
            raise kube_errors.ConflictError(409, "Conflict", "already assigned")
        self.pods[key] = msgspec.structs.replace(
            pod, spec=msgspec.structs.replace(pod.spec, node_name=node)
        )


def registration(
    gpus: int = 4,
    memory_mib: int = 24576,
    model: str = "NVIDIA-RTX-4090",
    split: int = 10,
    prefix: str = "GPU",
) -> str:
    return encode_registration(
        NodeDevicesV1(
            devices=tuple(
                DeviceV1(
                    uuid=f"{prefix}-{i}",
                    index=i,
                    model=model,
                    memory_mib=memory_mib,
                    cores=100,
                    split=split,
                )
                for i in range(gpus)
            )
        )
    )


def node(
    name: str,
    annotations: Mapping[str, str] | None = None,
    *,
    unschedulable: bool = False,
    gpus: int = 4,
    model: str = "NVIDIA-RTX-4090",
) -> objects.Node:
    ann = (
        dict(annotations)
        if annotations is not None
        else {keys.NODE_DEVICES: registration(gpus, model=model, prefix=f"GPU-{name}")}
    )
    return objects.Node(
        metadata=objects.ObjectMeta(
            name=name, uid=f"uid-{name}", resource_version="1", annotations=ann
        ),
        spec=objects.NodeSpec(unschedulable=unschedulable),
    )


def lease(node_name: str, renewed_at: float, duration_s: int = 10) -> objects.Lease:
    import datetime

    return objects.Lease(
        metadata=objects.ObjectMeta(
            name=f"{keys.AGENT_LEASE_PREFIX}{node_name}",
            namespace="kantaloupe-system",
            resource_version="1",
        ),
        spec=objects.LeaseSpec(
            holder_identity=node_name,
            lease_duration_seconds=duration_s,
            renew_time=micro_time(datetime.datetime.fromtimestamp(renewed_at, datetime.UTC)),
        ),
    )


def pod(
    name: str,
    *,
    uid: str | None = None,
    namespace: str = "default",
    limits: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    node_name: str = "",
    phase: str = "Pending",
    containers: int = 1,
    init: Mapping[str, str] | None = None,
) -> objects.Pod:
    res = objects.Resources(
        limits=dict(
            limits if limits is not None else {"nvidia.com/gpu": "1", "nvidia.com/gpumem": "4000"}
        )
    )
    return objects.Pod(
        metadata=objects.ObjectMeta(
            name=name,
            namespace=namespace,
            uid=uid or f"uid-{name}",
            resource_version="1",
            annotations=dict(annotations or {}),
        ),
        spec=objects.PodSpec(
            node_name=node_name,
            containers=tuple(
                objects.Container(name=f"c{i}", resources=res) for i in range(containers)
            ),
            init_containers=(
                objects.Container(name="init", resources=objects.Resources(limits=dict(init))),
            )
            if init
            else (),
        ),
        status=objects.PodStatus(phase=phase),
    )


@dataclass
class World:
    state: ClusterState
    extender: Extender
    writer: FakeWriter
    events: FakeEvents
    clock: FakeClock
    registry: CollectorRegistry
    metrics: ExtenderMetrics
    leader: list[bool]

    def add_node(self, n: objects.Node, *, lease_ok: bool = True) -> None:
        self.state.on_node(None, n)
        if lease_ok:
            self.state.on_lease(None, lease(n.metadata.name, self.clock.now))

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        return self.registry.get_sample_value(name, labels or {})


def world(*, timing: Timing | None = None, **kwargs: Any) -> World:
    registry = CollectorRegistry()
    metrics = ExtenderMetrics(registry)
    events = FakeEvents()
    clock = FakeClock()
    state = ClusterState(
        events=events, metrics=metrics, agent_namespace="kantaloupe-system", clock=clock
    )
    writer = FakeWriter()
    leader = [True]
    extender = Extender(
        state,
        writer,
        metrics,
        timing=timing or Timing(30.0, 2.0, 60.0),
        is_leader=lambda: leader[0],
        clock=clock,
        pod_lookup=lambda ns, name: writer.pods.get(f"{ns}/{name}"),
        **kwargs,
    )
    return World(state, extender, writer, events, clock, registry, metrics, leader)
