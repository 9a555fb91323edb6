"""The agent's side of the hand-off protocol (``api.handoff``), as pure decisions.

Kubelet's Allocate names device slots, not a pod. The agent picks, among the pods on its node in
phase BINDING, the one whose next unserved GPU container uses exactly the GPUs kubelet chose
(oldest ``since`` first when several could), answers, records the container in ``served``, and
moves the hand-off to DONE once every GPU container is served (FAILED with a message on errors).
This module decides; :mod:`kantaloupe.node.plugin` reads pods and writes the results.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import msgspec

from kantaloupe.api import keys, resources
from kantaloupe.api.allocation import AllocationV1, SliceV1, decode_allocation
from kantaloupe.api.errors import InputError, MalformedAnnotationError
from kantaloupe.api.handoff import HandoffPhase, HandoffV1, decode_handoff
from kantaloupe.api.ids import DeviceUuid, SlotId, split_slot_id
from kantaloupe.api.quantities import parse_count
from kantaloupe.kube.objects import Pod, annotations_of

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A pod on this node whose hand-off is in flight, its documents decoded."""

    namespace: str
    name: str
    uid: str
    resource_version: str
    allocation: AllocationV1
    handoff: HandoffV1
    container_names: tuple[str, ...]
    """Init containers first, as the allocation lists them."""
    priorities: tuple[int | None, ...]
    """``nvidia.com/priority`` of each container (same order), None where unset."""

    def next_container(self) -> int | None:
        """The first GPU container not yet served, or None when all are."""
        for i, slices in enumerate(self.allocation.containers):
            if slices and i not in self.handoff.served:
                return i
        return None

    def container_name(self, index: int) -> str:
        names = self.allocation.names or self.container_names
        return names[index] if index < len(names) else f"container-{index}"

    def slices(self, index: int) -> tuple[SliceV1, ...]:
        return self.allocation.containers[index]


def candidates(pods: Iterable[Pod], node: str) -> list[Candidate]:
    """Pods bound to ``node`` with a BINDING hand-off, oldest first; malformed ones are skipped."""
    out: list[Candidate] = []
    for pod in pods:
        annotations = annotations_of(pod.metadata)
        raw_handoff = annotations.get(keys.HANDOFF)
        raw_allocation = annotations.get(keys.ALLOCATION)
        if raw_handoff is None or raw_allocation is None or pod.metadata.deletion_timestamp:
            continue
        try:
            handoff = decode_handoff(raw_handoff)
            allocation = decode_allocation(raw_allocation)
        except MalformedAnnotationError as e:
            log.warning("hand-off skipped: %s", e, extra={"pod": pod.metadata.name})
            continue
        if handoff.phase != HandoffPhase.BINDING or handoff.node != node:
            continue
        specs = (*pod.spec.init_containers, *pod.spec.containers)
        out.append(
            Candidate(
                namespace=pod.metadata.namespace,
                name=pod.metadata.name,
                uid=pod.metadata.uid,
                resource_version=pod.metadata.resource_version,
                allocation=allocation,
                handoff=handoff,
                container_names=tuple(c.name for c in specs),
                priorities=tuple(_priority(c.resources.limits or {}) for c in specs),
            )
        )
    out.sort(key=lambda c: (c.handoff.since, c.namespace, c.name))
    return out


def _priority(limits: dict[str, str]) -> int | None:
    raw = limits.get(resources.GPU_PRIORITY)
    if raw is None:
        return None
    try:
        return parse_count(resources.GPU_PRIORITY, raw, fix="use 0 (high) or 1 (low)")
    except InputError:
        return None


def requested_uuids(slot_ids: Sequence[str]) -> tuple[DeviceUuid, ...]:
    """The distinct GPUs behind kubelet's slot ids, first seen first (ValueError: malformed)."""
    seen: list[DeviceUuid] = []
    for slot in slot_ids:
        uuid, _ = split_slot_id(SlotId(slot))
        if uuid not in seen:
            seen.append(uuid)
    return tuple(seen)


def find(pool: Sequence[Candidate], uuids: Sequence[DeviceUuid]) -> tuple[Candidate, int] | None:
    """The candidate (and container index) whose next GPU container uses exactly ``uuids``."""
    wanted = sorted(uuids)
    for c in pool:
        index = c.next_container()
        if index is not None and sorted(s.uuid for s in c.slices(index)) == wanted:
            return c, index
    return None


def serve(c: Candidate, index: int) -> Candidate:
    """``c`` with container ``index`` served; DONE once every GPU container is."""
    served = tuple(sorted({*c.handoff.served, index}))
    handoff = msgspec.structs.replace(c.handoff, served=served)
    if all(not s or i in served for i, s in enumerate(c.allocation.containers)):
        handoff = msgspec.structs.replace(handoff, phase=HandoffPhase.DONE, message="")
    return replace(c, handoff=handoff)


def fail(c: Candidate, message: str) -> Candidate:
    failed = msgspec.structs.replace(c.handoff, phase=HandoffPhase.FAILED, message=message[:1024])
    return replace(c, handoff=failed)


def prefer(
    pool: Sequence[Candidate], available: Sequence[str], must_include: Sequence[str], size: int
) -> list[str]:
    """Kubelet's preferred slots: on the GPUs the scheduler chose for a pod in hand-off, else
    spread over distinct GPUs with the most free slots. Always ``size`` ids (fewer only when
    ``available`` has fewer)."""
    free: dict[DeviceUuid, list[str]] = {}
    for slot in available:
        try:
            uuid, _ = split_slot_id(SlotId(slot))
        except ValueError:
            continue
        free.setdefault(uuid, []).append(slot)
    for slots in free.values():
        slots.sort(key=_replica)
    chosen = list(dict.fromkeys(must_include))[:size]
    for c in pool:
        index = c.next_container()
        if index is None:
            continue
        uuids = [DeviceUuid(s.uuid) for s in c.slices(index)]
        if len(uuids) != size or any(u not in free for u in uuids):
            continue
        picked = _pick(free, uuids, chosen)
        if picked is not None:
            return picked
    by_room = sorted(free, key=lambda u: (-len(free[u]), u))
    out = list(chosen)
    for uuid in by_room:
        if len(out) >= size:
            break
        if not any(split_slot_id(SlotId(s))[0] == uuid for s in out):
            out.append(free[uuid][0])
    for slots in free.values():
        for slot in slots:
            if len(out) >= size:
                return out
            if slot not in out:
                out.append(slot)
    return out


def _pick(
    free: dict[DeviceUuid, list[str]], uuids: list[DeviceUuid], chosen: list[str]
) -> list[str] | None:
    out = list(chosen)
    covered = {split_slot_id(SlotId(s))[0] for s in out}
    if not covered <= set(uuids):
        return None
    for uuid in uuids:
        if uuid not in covered:
            out.append(free[uuid][0])
    return out


def _replica(slot: str) -> int:
    return split_slot_id(SlotId(slot))[1]
