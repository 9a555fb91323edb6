"""Cluster state fed by watches: GPU nodes, node-agent heartbeats, pods → the ledger; hand-offs.

Every handler is synchronous and called on the loop by an informer, so a change lands in the
ledger with no ``await`` in between. A malformed annotation costs only its object: an Event,
``kantaloupe_annotation_decode_errors_total{kind}`` and a log line, and the object is skipped.

Rules:

- A node counts when it carries our registration (``kantaloupe.io/node-devices``) *and* a live
  heartbeat Lease ``kantaloupe-node-<node>`` in the agent namespace, or HAMi's registration
  (``hami.io/node-nvidia-register``, no Lease needed). A stale or missing Lease keeps the node in
  the ledger (its pods still count) but gives it no new pods; a missing or malformed
  registration removes it.
- A pod counts from its allocation (ours, else HAMi's ``vgpu-devices-allocated``+``vgpu-node``):
  bound when it has ``spec.nodeName``, else as a reservation that expires. Succeeded, Failed and
  deleted pods release. An in-memory reservation of an unbound pod wins over an older annotation.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import msgspec

from kantaloupe.api import errors as api_errors
from kantaloupe.api import keys
from kantaloupe.api.allocation import Allocation, decode_allocation
from kantaloupe.api.handoff import HandoffPhase, decode_handoff
from kantaloupe.api.ids import DeviceUuid, NodeName, PodUid
from kantaloupe.api.legacy import hami
from kantaloupe.api.registration import decode_registration
from kantaloupe.extender.metrics import DecodeKind, ExtenderMetrics
from kantaloupe.kube import election, objects
from kantaloupe.kube.events import ObjectRef
from kantaloupe.scheduling.ledger import Ledger
from kantaloupe.scheduling.model import Node, Placement

log = logging.getLogger(__name__)

TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})


class EventSink(Protocol):
    def warn(self, ref: ObjectRef, reason: str, message: str) -> None: ...

    def normal(self, ref: ObjectRef, reason: str, message: str) -> None: ...


# -- hand-offs ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InFlight:
    pod: PodUid
    node: NodeName
    uuids: frozenset[DeviceUuid]
    since: float
    """Unix seconds the bind started."""


class Handoffs:
    """Binds written whose node agent has not finished, per node; waiters wake on release."""

    __slots__ = ("_by_node", "_changed", "_timed_out", "_where", "on_release")

    def __init__(self, on_release: Callable[[PodUid], object] | None = None) -> None:
        self.on_release = on_release
        """Called for every pod released, so the ledger stops counting its GPUs as busy."""
        self._by_node: dict[NodeName, dict[PodUid, InFlight]] = {}
        self._where: dict[PodUid, NodeName] = {}
        self._timed_out: set[PodUid] = set()
        """Pods given up on: their stale ``binding`` document must not block the node again."""
        self._changed: dict[NodeName, asyncio.Event] = {}

    def __len__(self) -> int:
        return len(self._where)

    def track(self, entry: InFlight) -> None:
        if entry.pod in self._timed_out:
            return
        self._drop(entry.pod)  # a re-track replaces; the pod's GPUs stay busy
        self._by_node.setdefault(entry.node, {})[entry.pod] = entry
        self._where[entry.pod] = entry.node

    def release(self, pod: PodUid | str) -> InFlight | None:
        if self.on_release is not None:
            self.on_release(PodUid(pod))
        return self._drop(pod)

    def _drop(self, pod: PodUid | str) -> InFlight | None:
        node = self._where.pop(PodUid(pod), None)
        if node is None:
            return None
        entries = self._by_node.get(node, {})
        entry = entries.pop(PodUid(pod), None)
        if not entries:
            self._by_node.pop(node, None)
        event = self._changed.pop(node, None)
        if event is not None:
            event.set()
        return entry

    def time_out(self, pod: PodUid | str) -> InFlight | None:
        """Give up on a hand-off; later events for the same pod do not track it again."""
        self._timed_out.add(PodUid(pod))
        return self.release(pod)

    def forget(self, pod: PodUid | str) -> InFlight | None:
        """The pod is gone: release it and forget that it ever timed out."""
        self._timed_out.discard(PodUid(pod))
        return self.release(pod)

    def get(self, pod: PodUid | str) -> InFlight | None:
        node = self._where.get(PodUid(pod))
        return None if node is None else self._by_node[node].get(PodUid(pod))

    def overlapping(
        self, node: NodeName | str, uuids: frozenset[DeviceUuid], pod: PodUid | str
    ) -> list[InFlight]:
        return [
            e
            for e in self._by_node.get(NodeName(node), {}).values()
            if e.pod != pod and e.uuids & uuids
        ]

    def changed(self, node: NodeName | str) -> asyncio.Event:
        """An event set at the next release on ``node``."""
        found = self._changed.get(NodeName(node))
        if found is None:
            found = self._changed[NodeName(node)] = asyncio.Event()
        return found

    def older_than(self, cutoff: float) -> list[InFlight]:
        return [
            e for entries in self._by_node.values() for e in entries.values() if e.since < cutoff
        ]


def _handoff_in_flight(raw: str | None) -> bool:
    """Whether a pod's hand-off document says the node agent has not answered yet."""
    if raw is None:
        return False
    try:
        return decode_handoff(raw).phase == HandoffPhase.BINDING
    except api_errors.MalformedAnnotationError:
        return False


def gpu_uuids(placement: Placement) -> frozenset[DeviceUuid]:
    return frozenset(s.uuid for c in placement.containers for s in c)


# -- nodes -------------------------------------------------------------------------------------


@dataclass(slots=True)
class _NodeRecord:
    raw: str
    """The registration annotation as last seen (decoded again only when it changes)."""
    node: Node | None
    """Decoded, ``None`` when malformed."""
    ours: bool
    unschedulable: bool = False
    live: bool = False
    """Last schedulable state written to the ledger."""


class ClusterState:
    """Nodes, agent leases and pods folded into one :class:`Ledger`."""

    def __init__(
        self,
        *,
        events: EventSink,
        metrics: ExtenderMetrics,
        agent_namespace: str,
        agent_lease_grace_s: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ledger = Ledger(capacity=1024)
        self.handoffs = Handoffs(on_release=self.ledger.mark_settled)
        self.events = events
        self.metrics = metrics
        self.agent_namespace = agent_namespace
        self.agent_lease_grace_s = agent_lease_grace_s
        self.clock = clock
        self._nodes: dict[str, _NodeRecord] = {}
        self._lease_expiry: dict[str, float] = {}
        self._pod_names: dict[PodUid, tuple[str, str]] = {}
        self._bad_pod_values: dict[PodUid, str] = {}

    # -- queries -----------------------------------------------------------------------------

    def pod_name(self, uid: str) -> tuple[str, str] | None:
        return self._pod_names.get(PodUid(uid))

    def node_states(self) -> dict[str, int]:
        out = {"ready": 0, "agent_stale": 0, "malformed": 0, "cordoned": 0}
        for rec in self._nodes.values():
            if rec.node is None:
                out["malformed"] += 1
            elif rec.unschedulable:
                out["cordoned"] += 1
            elif rec.live:
                out["ready"] += 1
            else:
                out["agent_stale"] += 1
        return out

    # -- nodes -------------------------------------------------------------------------------

    def on_node(self, old: objects.Node | None, new: objects.Node | None) -> None:
        if new is None:
            if old is not None:
                self._forget_node(old.metadata.name)
            return
        name = new.metadata.name
        annotations = objects.annotations_of(new.metadata)
        ours = keys.NODE_DEVICES in annotations
        raw = (
            annotations.get(keys.NODE_DEVICES) if ours else annotations.get(keys.HAMI_NODE_REGISTER)
        )
        rec = self._nodes.get(name)
        if raw is None:
            if rec is not None:
                self._forget_node(name)
                self.events.warn(
                    ObjectRef.node(name, new.metadata.uid),
                    "GpuRegistrationMissing",
                    f"{keys.NODE_DEVICES} was removed: the node gets no new GPU pods until its "
                    "node agent registers again",
                )
            return
        if rec is None or rec.raw != raw or rec.ours != ours:
            node = self._decode_node(name, new.metadata.uid, raw, ours)
            if node is None:
                self.ledger.remove_node(name)
            rec = _NodeRecord(raw=raw, node=node, ours=ours)
            self._nodes[name] = rec
        rec.unschedulable = new.spec.unschedulable
        self._apply_node(name, rec, force=True)

    def _decode_node(self, name: str, uid: str, raw: str, ours: bool) -> Node | None:
        try:
            doc = decode_registration(raw) if ours else hami.decode_hami_registration(raw)
        except api_errors.MalformedAnnotationError as e:
            kind = DecodeKind.NODE_REGISTRATION if ours else DecodeKind.HAMI_NODE_REGISTRATION
            self.metrics.decode_errors.labels(kind.value).inc()
            log.warning("node registration does not decode", extra={"node": name, "error": str(e)})
            self.events.warn(
                ObjectRef.node(name, uid),
                "GpuRegistrationInvalid",
                f"{e}. The node gets no new GPU pods until it is fixed.",
            )
            return None
        return Node.from_registration(name, doc)

    def _is_live(self, name: str, rec: _NodeRecord, now: float) -> bool:
        if rec.node is None or rec.unschedulable:
            return False
        if not rec.ours:
            return True
        expiry = self._lease_expiry.get(name)
        return expiry is not None and now < expiry + self.agent_lease_grace_s

    def _apply_node(self, name: str, rec: _NodeRecord, *, force: bool = False) -> None:
        if rec.node is None:
            return
        live = self._is_live(name, rec, self.clock())
        if not force and live == rec.live:
            return
        was_live = rec.live
        rec.live = live
        self.ledger.set_node(dataclasses.replace(rec.node, schedulable=live))
        if was_live and not live and rec.ours and not rec.unschedulable:
            self.events.warn(
                ObjectRef.node(name),
                "NodeAgentNotReady",
                f"heartbeat Lease {keys.AGENT_LEASE_PREFIX}{name} in {self.agent_namespace} is "
                "stale or missing: the node gets no new GPU pods",
            )

    def _forget_node(self, name: str) -> None:
        self._nodes.pop(name, None)
        self.ledger.remove_node(name)

    # -- agent leases ------------------------------------------------------------------------

    def on_lease(self, old: objects.Lease | None, new: objects.Lease | None) -> None:
        lease = new or old
        if lease is None or not lease.metadata.name.startswith(keys.AGENT_LEASE_PREFIX):
            return
        node = lease.metadata.name[len(keys.AGENT_LEASE_PREFIX) :]
        expiry = None if new is None else election.lease_expires_at(new)
        if expiry is None:
            self._lease_expiry.pop(node, None)
        else:
            self._lease_expiry[node] = expiry
        rec = self._nodes.get(node)
        if rec is not None:
            self._apply_node(node, rec)

    def tick(self) -> None:
        """Re-evaluate heartbeats (staleness is a matter of time, not of events)."""
        for name, rec in self._nodes.items():
            if rec.ours:
                self._apply_node(name, rec)

    # -- pods --------------------------------------------------------------------------------

    def on_pod(self, old: objects.Pod | None, new: objects.Pod | None) -> None:
        if new is None:
            if old is not None:
                self.forget_pod(old.metadata.uid)
            return
        uid = PodUid(new.metadata.uid)
        if new.status.phase in TERMINAL_PHASES:
            self.forget_pod(uid)
            return
        annotations = objects.annotations_of(new.metadata)
        placement = self._placement_of(new, annotations)
        if placement is not None:
            self._pod_names[uid] = (new.metadata.namespace, new.metadata.name)
            bound = bool(new.spec.node_name)
            current = self.ledger.placement(uid)
            if bound or current is None:
                in_flight = bound and _handoff_in_flight(annotations.get(keys.HANDOFF))
                self.ledger.add(placement, now=self.clock(), bound=bound, settled=not in_flight)
        elif self.ledger.placement(uid) is not None:
            self._pod_names[uid] = (new.metadata.namespace, new.metadata.name)
        raw_handoff = annotations.get(keys.HANDOFF)
        if raw_handoff is not None:
            self._on_handoff(new, uid, raw_handoff, placement)

    def forget_pod(self, uid: str) -> None:
        self.ledger.remove(uid)
        self.handoffs.forget(uid)
        self._pod_names.pop(PodUid(uid), None)
        self._bad_pod_values.pop(PodUid(uid), None)

    def _placement_of(self, pod: objects.Pod, annotations: dict[str, str]) -> Placement | None:
        uid = PodUid(pod.metadata.uid)
        raw = annotations.get(keys.ALLOCATION)
        kind = DecodeKind.POD_ALLOCATION
        try:
            if raw is not None:
                doc: Allocation = decode_allocation(raw)
            elif keys.HAMI_DEVICES_ALLOCATED in annotations:
                kind = DecodeKind.HAMI_POD_ALLOCATION
                raw = annotations[keys.HAMI_DEVICES_ALLOCATED]
                doc = hami.decode_hami_pod_devices(
                    raw, annotations.get(keys.HAMI_VGPU_NODE, pod.spec.node_name)
                )
                total = len(pod.spec.init_containers) + len(pod.spec.containers)
                if len(doc.containers) == total:
                    doc = dataclasses_replace_alloc(
                        doc,
                        init_count=len(pod.spec.init_containers),
                        names=tuple(
                            c.name for c in (*pod.spec.init_containers, *pod.spec.containers)
                        ),
                    )
            else:
                return None
        except api_errors.MalformedAnnotationError as e:
            if self._bad_pod_values.get(uid) != raw:
                self._bad_pod_values[uid] = raw or ""
                self.metrics.decode_errors.labels(kind.value).inc()
                log.warning(
                    "pod allocation does not decode",
                    extra={
                        "pod": pod.metadata.name,
                        "namespace": pod.metadata.namespace,
                        "error": str(e),
                    },
                )
                self.events.warn(ObjectRef.pod(pod.metadata), "GpuAllocationInvalid", str(e))
            return None
        return Placement.from_wire(uid, doc)

    def _on_handoff(
        self, pod: objects.Pod, uid: PodUid, raw: str, placement: Placement | None
    ) -> None:
        try:
            doc = decode_handoff(raw)
        except api_errors.MalformedAnnotationError as e:
            self.handoffs.release(uid)  # never let a bad document block a node
            if self._bad_pod_values.get(uid) != raw:
                self._bad_pod_values[uid] = raw
                self.metrics.decode_errors.labels(DecodeKind.POD_HANDOFF.value).inc()
                self.events.warn(ObjectRef.pod(pod.metadata), "GpuHandoffInvalid", str(e))
            return
        if doc.phase != HandoffPhase.BINDING:
            if self.handoffs.release(uid) is not None and doc.phase == HandoffPhase.FAILED:
                log.warning(
                    "hand-off failed",
                    extra={"pod": pod.metadata.name, "node": doc.node, "error": doc.message},
                )
            return
        if self.handoffs.get(uid) is None and placement is not None:
            self.handoffs.track(InFlight(uid, NodeName(doc.node), gpu_uuids(placement), doc.since))

    # -- rebuild -----------------------------------------------------------------------------

    def load_pods(self, pods: Iterable[objects.Pod]) -> None:
        for pod in pods:
            self.on_pod(None, pod)


def dataclasses_replace_alloc(doc: Allocation, **changes: object) -> Allocation:
    return msgspec.structs.replace(doc, **changes)
