"""The extender's metrics, on an injected registry (docs/metrics.md lists them).

State-derived series (HAMi's allocation gauges, reservations pending, hand-offs in flight) are
computed at scrape time from the ledger, so series of deleted pods and nodes vanish by themselves.
Event series (latencies, failures, expiries, decode errors) are ordinary counters/histograms.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from kantaloupe.scheduling.ledger import Ledger

MIB = 1 << 20
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class DecodeKind(enum.StrEnum):
    """``kind`` label of ``kantaloupe_annotation_decode_errors_total``."""

    NODE_REGISTRATION = "node_registration"
    HAMI_NODE_REGISTRATION = "hami_node_registration"
    POD_ALLOCATION = "pod_allocation"
    HAMI_POD_ALLOCATION = "hami_pod_allocation"
    POD_HANDOFF = "pod_handoff"
    POD_REQUEST = "pod_request"


class BindFailure(enum.StrEnum):
    """``reason`` label of ``kantaloupe_bind_failures_total``."""

    NOT_LEADER = "not_leader"
    NOT_FOUND = "pod_not_found"
    NO_FIT = "no_fit"
    HANDOFF_TIMEOUT = "handoff_wait_timeout"
    CONFLICT = "conflict"
    API = "api_error"
    INVALID = "invalid_request"


class ExtenderMetrics:
    """Counters and histograms the extender updates as things happen."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.filter_duration = Histogram(
            "kantaloupe_extender_filter_duration_seconds",
            "Time to answer one /filter call.",
            ["result"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.bind_duration = Histogram(
            "kantaloupe_extender_bind_duration_seconds",
            "Time to answer one /bind call, queue wait included.",
            ["result"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.reservations_expired = Counter(
            "kantaloupe_reservations_expired",
            "Reservations released because their pod never bound within --reservation-ttl.",
            registry=registry,
        )
        self.decode_errors = Counter(
            "kantaloupe_annotation_decode_errors",
            "Annotations (or pod GPU requests) that failed to decode; the object was skipped.",
            ["kind"],
            registry=registry,
        )
        self.bind_failures = Counter(
            "kantaloupe_bind_failures",
            "Binds answered with an error.",
            ["reason"],
            registry=registry,
        )
        self.handoff_wait = Histogram(
            "kantaloupe_handoff_wait_seconds",
            "Time a bind waited for an overlapping hand-off on its node.",
            buckets=_WAIT_BUCKETS,
            registry=registry,
        )
        self.handoffs_timed_out = Counter(
            "kantaloupe_handoffs_timed_out",
            "Hand-offs released because the node agent did not finish within --handoff-timeout.",
            registry=registry,
        )
        self.ledger_rebuild = Gauge(
            "kantaloupe_ledger_rebuild_seconds",
            "Seconds the last full rebuild of the ledger from the API (list of pods) took.",
            registry=registry,
        )
        for kind in DecodeKind:
            self.decode_errors.labels(kind.value)
        for reason in BindFailure:
            self.bind_failures.labels(reason.value)


@dataclass(frozen=True, slots=True)
class StateView:
    """What the scrape-time collector reads."""

    ledger: Ledger
    pod_names: Callable[[str], tuple[str, str] | None]
    """Pod UID → (namespace, name)."""
    handoffs_in_flight: Callable[[], int]
    is_leader: Callable[[], bool]
    node_states: Callable[[], dict[str, int]]


_DEVICE_LABELS = ["node", "device_uuid", "device_index", "device_type"]
_ALLOC_LABELS = ["node", "device_uuid", "device_index", "device_cores", "device_type"]
_OVERVIEW_LABELS = [*_ALLOC_LABELS[:4], "device_memory_limit", "device_type"]
_VGPU_LABELS = ["namespace", "node", "pod", "container_index", "device_uuid"]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Plain values copied from the ledger on the loop; rendering may then run in a thread."""

    devices: list[tuple[str, str, int, str, int, int, int, int, int]]
    """(node, uuid, index, model, cores, memory_mib, used_memory_mib, used_cores, tenants)"""
    slices: list[tuple[str, str, str, int, str, int, int]]
    """(namespace, node, pod, container_index, uuid, memory_mib, cores)"""
    pending: int
    handoffs: int
    leader: bool
    node_states: dict[str, int]


class AllocationCollector(Collector):
    """HAMi's scheduler gauges plus our state gauges, from one pass over the ledger.

    :meth:`prepare` (on the loop) copies the ledger into a :class:`Snapshot`; :meth:`collect`
    renders the prepared snapshot, or takes one itself when none was prepared.
    """

    def __init__(self, view: StateView) -> None:
        self._view = view
        self._prepared: Snapshot | None = None

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def snapshot(self) -> Snapshot:
        v = self._view
        devices: list[tuple[str, str, int, str, int, int, int, int, int]] = [
            (
                u.node,
                u.device.uuid,
                u.device.index,
                u.device.model,
                u.device.cores,
                u.device.memory_mib,
                u.used_memory_mib,
                u.used_cores,
                u.tenants,
            )
            for u in v.ledger.devices()
        ]
        slices: list[tuple[str, str, str, int, str, int, int]] = []
        for placement in v.ledger.pods():
            names = v.pod_names(placement.pod)
            namespace, pod = names if names is not None else ("", str(placement.pod))
            for index, container in enumerate(placement.containers):
                for s in container:
                    slices.append(
                        (namespace, placement.node, pod, index, s.uuid, s.memory_mib, s.cores)
                    )
        pending = sum(1 for _ in v.ledger.reservations())
        return Snapshot(
            devices, slices, pending, v.handoffs_in_flight(), v.is_leader(), v.node_states()
        )

    def prepare(self) -> None:
        self._prepared = self.snapshot()

    def collect(self) -> Iterator[Metric]:
        snap, self._prepared = self._prepared, None
        yield from render(snap if snap is not None else self.snapshot())


def render(snap: Snapshot) -> Iterator[Metric]:
    """The metric families of one snapshot (pure; safe in a worker thread)."""
    mem_limit = GaugeMetricFamily(
        "hami_gpu_memory_limit_bytes", "Schedulable memory of each GPU.", labels=_DEVICE_LABELS
    )
    core_limit = GaugeMetricFamily(
        "hami_gpu_core_limit_ratio",
        "Schedulable compute of each GPU (1 = 100%).",
        labels=_DEVICE_LABELS,
    )
    mem_alloc = GaugeMetricFamily(
        "hami_gpu_memory_allocated_bytes", "Memory handed out on each GPU.", labels=_ALLOC_LABELS
    )
    shared = GaugeMetricFamily(
        "hami_gpu_shared_count", "Containers sharing each GPU.", labels=_DEVICE_LABELS
    )
    core_alloc = GaugeMetricFamily(
        "hami_gpu_core_allocated_ratio",
        "Compute handed out on each GPU (1 = 100%).",
        labels=_DEVICE_LABELS,
    )
    overview = GaugeMetricFamily(
        "hami_node_gpu_overview",
        "Memory handed out on each GPU, with its limits as labels.",
        labels=_OVERVIEW_LABELS,
    )
    mem_ratio = GaugeMetricFamily(
        "hami_node_gpu_memory_allocated_ratio",
        "Share of each GPU's memory handed out.",
        labels=_DEVICE_LABELS,
    )
    for node, uuid, index, model, cores, memory_mib, used_mib, used_cores, tenants in snap.devices:
        base = [node, uuid, str(index), model]
        with_cores = [node, uuid, str(index), str(cores), model]
        mem_limit.add_metric(base, memory_mib * MIB)
        core_limit.add_metric(base, cores / 100)
        mem_alloc.add_metric(with_cores, used_mib * MIB)
        shared.add_metric(base, tenants)
        core_alloc.add_metric(base, used_cores / 100)
        overview.add_metric([*with_cores[:4], str(memory_mib * MIB), model], used_mib * MIB)
        mem_ratio.add_metric(base, used_mib / memory_mib if memory_mib else 0.0)
    yield from (mem_limit, core_limit, mem_alloc, shared, core_alloc, overview, mem_ratio)
    vmem = GaugeMetricFamily(
        "hami_vgpu_memory_allocated_bytes",
        "Memory given to each container on each GPU.",
        labels=_VGPU_LABELS,
    )
    vcore = GaugeMetricFamily(
        "hami_vgpu_core_allocated_ratio",
        "Compute given to each container on each GPU.",
        labels=_VGPU_LABELS,
    )
    for namespace, node, pod, index, uuid, memory_mib, cores in snap.slices:
        labels = [namespace, node, pod, str(index), uuid]
        vmem.add_metric(labels, memory_mib * MIB)
        vcore.add_metric(labels, cores / 100)
    yield vmem
    yield vcore
    yield GaugeMetricFamily(
        "kantaloupe_reservations_pending",
        "Pods reserved by filter and not yet bound.",
        value=snap.pending,
    )
    yield GaugeMetricFamily(
        "kantaloupe_handoffs_in_flight",
        "Binds written whose node agent has not yet finished the hand-off.",
        value=snap.handoffs,
    )
    yield GaugeMetricFamily(
        "kantaloupe_extender_leader",
        "1 when this replica holds the Lease.",
        value=1 if snap.leader else 0,
    )
    nodes = GaugeMetricFamily(
        "kantaloupe_extender_nodes", "GPU nodes known to the extender by state.", labels=["state"]
    )
    for state, count in sorted(snap.node_states.items()):
        nodes.add_metric([state], count)
    yield nodes
