"""Filter, bind and reservation expiry: parse → the core → write. No decisions live here.

``filter`` is synchronous: it parses the pod, and ``fit.place`` decides and reserves in one
call, so the next filter (which kube-scheduler may send before this pod's bind) already sees
the reservation. ``bind`` follows the hand-off protocol of :mod:`kantaloupe.api.handoff`:
wait (bounded) while an overlapping hand-off is in flight on the node, claim the hand-off,
write ``kantaloupe.io/allocation`` and ``kantaloupe.io/handoff`` on the pod, then create the
Binding. Every step is idempotent, so kube-scheduler may retry a bind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from kantaloupe.api import errors as api_errors
from kantaloupe.api import keys
from kantaloupe.api.allocation import encode_allocation
from kantaloupe.api.handoff import HandoffPhase, HandoffV1, decode_handoff, encode_handoff
from kantaloupe.api.ids import NodeName, PodUid
from kantaloupe.extender import wire
from kantaloupe.extender.metrics import BindFailure, DecodeKind, ExtenderMetrics
from kantaloupe.extender.state import ClusterState, InFlight, gpu_uuids
from kantaloupe.kube import errors as kube_errors
from kantaloupe.kube import objects
from kantaloupe.kube.client import KubeClient, pod_path
from kantaloupe.kube.events import ObjectRef
from kantaloupe.scheduling import fit
from kantaloupe.scheduling.model import Placement
from kantaloupe.scheduling.reasons import NodeReason
from kantaloupe.scheduling.requests import ContainerSpec, PodRequest, parse_pod

log = logging.getLogger(__name__)

_NOT_REGISTERED = NodeReason.NOT_REGISTERED.value
_MAX_NAMED = 5


class PodWriter(Protocol):
    """The writes bind needs (:class:`KubePodWriter` in production, a fake in tests)."""

    async def get_pod(self, namespace: str, name: str) -> objects.Pod | None: ...

    async def patch_pod_annotations(
        self, namespace: str, name: str, annotations: Mapping[str, str | None]
    ) -> objects.Pod: ...

    async def bind_pod(self, namespace: str, name: str, uid: str, node: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Timing:
    reservation_ttl_s: float = 30.0
    bind_timeout_s: float = 25.0
    handoff_timeout_s: float = 60.0


_DEFAULTS = fit.Defaults()
_TIMING = Timing()


def pod_request(pod: objects.Pod) -> PodRequest | None:
    """The core's request for a pod (limits win over requests, as kubelet does)."""

    def spec(c: objects.Container) -> ContainerSpec:
        return ContainerSpec(c.name, c.resources.limits or {}, c.resources.requests or {})

    return parse_pod(
        pod.metadata.uid,
        objects.annotations_of(pod.metadata),
        [spec(c) for c in pod.spec.containers],
        [spec(c) for c in pod.spec.init_containers],
    )


def describe_failures(failed: Mapping[str, str], considered: int) -> str:
    """``0/3 nodes fit: 2 node(s) insufficient memory (a, b); 1 node(s) ... (c)``."""
    groups: dict[str, list[str]] = {}
    for node, reason in failed.items():
        groups.setdefault(reason, []).append(node)
    head = f"{considered - len(failed)}/{considered} nodes fit"
    parts = []
    for reason, nodes in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:_MAX_NAMED]:
        named = ", ".join(sorted(nodes)[:_MAX_NAMED]) + (", ..." if len(nodes) > _MAX_NAMED else "")
        parts.append(f"{len(nodes)} node(s) {reason} ({named})")
    return head + (": " + "; ".join(parts) if parts else "")


class Extender:
    """The extender's behaviour over a :class:`ClusterState`."""

    def __init__(
        self,
        state: ClusterState,
        writer: PodWriter,
        metrics: ExtenderMetrics,
        *,
        defaults: fit.Defaults = _DEFAULTS,
        timing: Timing = _TIMING,
        is_leader: Callable[[], bool] = lambda: True,
        is_synced: Callable[[], bool] = lambda: True,
        pod_lookup: Callable[[str, str], objects.Pod | None] = lambda ns, name: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.state = state
        self.writer = writer
        self.metrics = metrics
        self.defaults = defaults
        self.timing = timing
        self.is_leader = is_leader
        self.is_synced = is_synced
        self.pod_lookup = pod_lookup
        self.clock = clock
        self._binding: set[PodUid] = set()

    # -- filter ------------------------------------------------------------------------------

    def filter(self, args: wire.FilterArgs) -> wire.FilterResult:
        """Choose exactly one node and reserve its GPUs, or say why none fits."""
        pod = args.pod
        names = list(args.node_names or ())
        if not self.is_leader():
            return wire.FilterResult(error="this extender replica is not the leader; retry")
        if not self.is_synced():
            return wire.FilterResult(error="the extender has not finished its first sync; retry")
        try:
            request = pod_request(pod)
        except api_errors.InputError as e:
            self.metrics.decode_errors.labels(DecodeKind.POD_REQUEST.value).inc()
            self.state.events.warn(ObjectRef.pod(pod.metadata), "GpuRequestInvalid", str(e))
            return wire.FilterResult(error=str(e))
        if request is None:
            return wire.FilterResult(node_names=names)
        decision = fit.place(self.state.ledger, request, names, self.defaults, now=self.clock())
        if decision.placement is not None:
            # kube-scheduler keeps only the nodes returned; the reasons of the others matter
            # only when the pod cannot be placed, so a success skips wording thousands of them.
            return wire.FilterResult(node_names=[decision.placement.node])
        failed: dict[str, str] = {str(k): v for k, v in decision.failed.items()}
        unresolvable: dict[str, str] = {}
        for node, reason in decision.failed.items():
            if reason == _NOT_REGISTERED:
                unresolvable[node] = failed.pop(node)
        message = describe_failures(failed | unresolvable, decision.considered)
        self.state.events.warn(ObjectRef.pod(pod.metadata), "FilteringFailed", message)
        return wire.FilterResult(
            node_names=[], failed_nodes=failed, failed_and_unresolvable_nodes=unresolvable
        )

    def prioritize(self, args: wire.FilterArgs) -> list[wire.HostPriority]:
        """10 for the node filter reserved, 0 for the rest (filter already chose)."""
        placement = self.state.ledger.placement(args.pod.metadata.uid)
        chosen = placement.node if placement is not None else None
        return [wire.HostPriority(n, 10 if n == chosen else 0) for n in args.node_names or ()]

    # -- bind --------------------------------------------------------------------------------

    async def bind(self, args: wire.BindArgs) -> wire.BindResult:
        if not self.is_leader():
            return self._bind_failed(args, BindFailure.NOT_LEADER, "not the leader; retry", None)
        uid = PodUid(args.pod_uid)
        pod = self.pod_lookup(args.pod_namespace, args.pod_name)
        if pod is None or pod.metadata.uid != uid:
            try:
                pod = await self.writer.get_pod(args.pod_namespace, args.pod_name)
            except kube_errors.KubeError as e:
                return self._bind_failed(args, BindFailure.API, f"reading the pod: {e}", None)
        if pod is None or pod.metadata.uid != uid:
            self.state.forget_pod(uid)
            return self._bind_failed(
                args, BindFailure.NOT_FOUND, "the pod is gone or was recreated", None
            )
        if pod.spec.node_name:
            if pod.spec.node_name == args.node:
                self.state.ledger.mark_bound(uid)
                return wire.BindResult()
            return self._bind_failed(
                args, BindFailure.CONFLICT, f"the pod is already bound to {pod.spec.node_name}", pod
            )
        placement = self._placement_for(pod, args.node)
        if isinstance(placement, str):
            return self._bind_failed(args, BindFailure.NO_FIT, placement, pod)
        self._binding.add(uid)
        try:
            return await self._bind_placement(args, pod, placement)
        finally:
            self._binding.discard(uid)

    def _placement_for(self, pod: objects.Pod, node: str) -> Placement | str:
        """The reservation for ``pod`` on ``node``, re-placed there if it was lost."""
        uid = PodUid(pod.metadata.uid)
        placement = self.state.ledger.placement(uid)
        if placement is not None and placement.node == node:
            return placement
        try:
            request = pod_request(pod)
        except api_errors.InputError as e:
            return str(e)
        if request is None:
            return "the pod asks for no GPU resource"
        decision = fit.place(self.state.ledger, request, [node], self.defaults, now=self.clock())
        if decision.placement is None:
            return f"its GPUs no longer fit on {node}: {decision.failed.get(NodeName(node), '')}"
        return decision.placement

    async def _bind_placement(
        self, args: wire.BindArgs, pod: objects.Pod, placement: Placement
    ) -> wire.BindResult:
        loop = asyncio.get_running_loop()
        uid, node = PodUid(args.pod_uid), NodeName(args.node)
        uuids = gpu_uuids(placement)
        handoffs = self.state.handoffs
        started = loop.time()
        deadline = started + self.timing.bind_timeout_s
        queued = False
        while True:
            blockers = [b for b in handoffs.overlapping(node, uuids, uid) if self._still_blocks(b)]
            if not blockers:
                break
            remaining = deadline - loop.time()
            if remaining <= 0:
                self.metrics.handoff_wait.observe(loop.time() - started)
                names = ", ".join(self._pod_label(b.pod) for b in blockers)
                return self._bind_failed(
                    args,
                    BindFailure.HANDOFF_TIMEOUT,
                    f"its GPUs on {node} are still being handed to {names}; retry",
                    pod,
                )
            queued = True
            changed = handoffs.changed(node)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), min(remaining, 1.0))
        if queued:
            self.metrics.handoff_wait.observe(loop.time() - started)
        existing = handoffs.get(uid)
        since = existing.since if existing is not None and existing.node == node else self.clock()
        prior = objects.annotations_of(pod.metadata).get(keys.HANDOFF)
        if prior is not None:
            try:
                doc = decode_handoff(prior)
                if doc.node == node and doc.phase == HandoffPhase.BINDING:
                    since = doc.since
            except api_errors.MalformedAnnotationError:
                pass
        handoffs.track(InFlight(uid, node, uuids, since))
        annotations = {
            keys.ALLOCATION: encode_allocation(placement.to_wire()),
            keys.HANDOFF: encode_handoff(
                HandoffV1(phase=HandoffPhase.BINDING, node=node, since=since)
            ),
        }
        try:
            await self.writer.patch_pod_annotations(args.pod_namespace, args.pod_name, annotations)
            await self.writer.bind_pod(args.pod_namespace, args.pod_name, uid, node)
        except kube_errors.ConflictError as e:
            current = await self._reread(args)
            if current is not None and current.spec.node_name == node:
                self.state.ledger.mark_bound(uid)
                return wire.BindResult()
            handoffs.release(uid)
            return self._bind_failed(args, BindFailure.CONFLICT, str(e), pod)
        except kube_errors.NotFoundError as e:
            self.state.forget_pod(uid)
            return self._bind_failed(args, BindFailure.NOT_FOUND, str(e), None)
        except kube_errors.KubeError as e:
            handoffs.release(uid)
            return self._bind_failed(args, BindFailure.API, str(e), pod)
        if self.state.ledger.placement(uid) is None:
            # Deleted while we wrote; the pod watch releases whatever is left.
            handoffs.release(uid)
        else:
            self.state.ledger.mark_bound(uid)
        return wire.BindResult()

    async def _reread(self, args: wire.BindArgs) -> objects.Pod | None:
        try:
            return await self.writer.get_pod(args.pod_namespace, args.pod_name)
        except kube_errors.KubeError:
            return None

    def _still_blocks(self, entry: InFlight) -> bool:
        """False (and released) when the hand-off's pod is gone or it timed out."""
        names = self.state.pod_name(entry.pod)
        gone = names is None and self.state.ledger.placement(entry.pod) is None
        if gone or self.clock() - entry.since >= self.timing.handoff_timeout_s:
            if gone:
                self.state.handoffs.release(entry.pod)
            else:
                self.metrics.handoffs_timed_out.inc()
                self.state.handoffs.time_out(entry.pod)
            return False
        return True

    def _pod_label(self, uid: PodUid) -> str:
        names = self.state.pod_name(uid)
        return f"{names[0]}/{names[1]}" if names else str(uid)

    def _bind_failed(
        self, args: wire.BindArgs, reason: BindFailure, message: str, pod: objects.Pod | None
    ) -> wire.BindResult:
        self.metrics.bind_failures.labels(reason.value).inc()
        text = f"binding to {args.node}: {message}"
        log.warning(
            "bind failed",
            extra={
                "pod": args.pod_name,
                "namespace": args.pod_namespace,
                "node": args.node,
                "reason": reason.value,
                "error": message,
            },
        )
        if pod is not None and reason != BindFailure.NOT_LEADER:
            self.state.events.warn(ObjectRef.pod(pod.metadata), "BindingFailed", text)
        return wire.BindResult(error=text)

    # -- housekeeping ------------------------------------------------------------------------

    def expire(self) -> int:
        """Release reservations older than the TTL (not while their bind runs) and hand-offs
        past their timeout; returns how many reservations were released."""
        now = self.clock()
        ttl = self.timing.reservation_ttl_s
        stale = [
            uid
            for uid, at in self.state.ledger.reservations()
            if now - at >= ttl and uid not in self._binding
        ]
        for uid in stale:
            self.state.ledger.remove(uid)
            log.info("reservation expired", extra={"pod": self._pod_label(uid)})
        if stale:
            self.metrics.reservations_expired.inc(len(stale))
        for entry in self.state.handoffs.older_than(now - self.timing.handoff_timeout_s):
            self.state.handoffs.time_out(entry.pod)
            self.metrics.handoffs_timed_out.inc()
            log.warning(
                "hand-off timed out", extra={"pod": self._pod_label(entry.pod), "node": entry.node}
            )
        return len(stale)

    async def housekeeping(self, period_s: float = 1.0) -> None:
        """Expire reservations and hand-offs, re-check heartbeats, forever."""
        while True:
            await asyncio.sleep(period_s)
            self.state.tick()
            self.expire()


class KubePodWriter:
    """:class:`PodWriter` over the Kubernetes adapter."""

    def __init__(self, client: KubeClient) -> None:
        self.client = client

    async def get_pod(self, namespace: str, name: str) -> objects.Pod | None:
        return await self.client.get_or_none(pod_path(namespace, name), objects.Pod)

    async def patch_pod_annotations(
        self, namespace: str, name: str, annotations: Mapping[str, str | None]
    ) -> objects.Pod:
        return await self.client.patch_annotations(
            pod_path(namespace, name), annotations, objects.Pod
        )

    async def bind_pod(self, namespace: str, name: str, uid: str, node: str) -> None:
        await self.client.bind_pod(namespace, name, uid, node)
