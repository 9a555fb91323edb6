"""Fit and choose: which node and which GPUs a pod gets, or why it gets none.

One decision tests every candidate GPU for the pod's first GPU container in a few vector
operations, ranks the nodes that can hold every container, and then fits the containers exactly
on the best node (falling back to the next ones). A miss is a result with per-node reasons, never
an exception.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from kantaloupe.api.ids import NodeName
from kantaloupe.scheduling import scoring
from kantaloupe.scheduling.ledger import Arrays, BoolArray, IntArray, Ledger
from kantaloupe.scheduling.model import DeviceSlice, Placement
from kantaloupe.scheduling.policy import GpuPolicy, NodePolicy, Weights, Workload
from kantaloupe.scheduling.reasons import NodeReason, Reason, describe_devices, summarize
from kantaloupe.scheduling.requests import Constraints, ContainerRequest, PodRequest


@dataclass(frozen=True, slots=True)
class Defaults:
    """Cluster-wide policies; a pod's annotations override them.

    HAMi's default is node binpack with GPU spread; ours is the fragmentation gradient (node
    and GPU chosen together), which places more pods before a whole-card request is stranded
    and beats the best published policy on Alibaba's openb trace (docs/openb.md).
    """

    node_policy: NodePolicy = NodePolicy.FRAGMENTATION_GRADIENT
    gpu_policy: GpuPolicy = GpuPolicy.FRAGMENTATION
    workload: Workload | None = None
    """Task mix for ``fragmentation-gradient`` (``None``: ``policy.DEFAULT_WORKLOAD``)."""


@dataclass(frozen=True, slots=True)
class Decision:
    """The chosen placement, or none, with the reason each rejected node gave."""

    placement: Placement | None
    failed: Mapping[NodeName, str] = field(default_factory=dict)
    considered: int = 0

    @property
    def summary(self) -> str:
        return summarize({str(k): v for k, v in self.failed.items()}, self.considered)


def decide(
    ledger: Ledger,
    request: PodRequest,
    candidates: Iterable[str] | None = None,
    defaults: Defaults = Defaults(),
) -> Decision:
    """Choose a node and GPUs for ``request`` among ``candidates`` (default: every node).

    GPUs whose previous pod is still being handed to kubelet are avoided when any other GPU
    fits, so a burst of pods spreads instead of queueing behind one hand-off.
    """
    if candidates is not None and not isinstance(candidates, Sequence):
        candidates = list(candidates)
    if ledger.arrays().busy.any():
        first = _decide(ledger, request, candidates, defaults, avoid_busy=True)
        if first.placement is not None:
            return first
    return _decide(ledger, request, candidates, defaults, avoid_busy=False)


def _decide(
    ledger: Ledger,
    request: PodRequest,
    candidates: Iterable[str] | None,
    defaults: Defaults,
    *,
    avoid_busy: bool,
) -> Decision:
    a = ledger.arrays()
    failed = _Failures()
    if candidates is None:
        names: list[NodeName] = [n for n in a.row_names if n is not None]
    else:
        names = list(candidates)  # type: ignore[arg-type]
    found = list(map(a.rows.get, names))
    if None in found:
        kept = [n for n, r in zip(names, found, strict=True) if r is not None]
        for n, r in zip(names, found, strict=True):
            if r is None:
                failed.fixed[NodeName(n)] = NodeReason.NOT_REGISTERED.value
        found = [r for r in found if r is not None]
    else:
        kept = names
    considered = len(names)
    if not found:
        return Decision(None, failed, considered)
    rows = np.fromiter(found, dtype=np.int64, count=len(found))
    failed.kept = kept
    node_policy = request.node_policy or defaults.node_policy
    gpu_policy = request.gpu_policy or defaults.gpu_policy

    ok = a.node_ok[rows].copy()
    failed.masks.append((~ok, NodeReason.NOT_SCHEDULABLE.value))
    if request.cpu_milli:
        short = (a.cpu_total[rows] > 0) & (a.cpu_total[rows] - a.cpu_used[rows] < request.cpu_milli)
        failed.masks.append((short & ok, NodeReason.CPU.value))
        ok &= ~short
    if request.memory_mib:
        short = (a.nmem_total[rows] > 0) & (
            a.nmem_total[rows] - a.nmem_used[rows] < request.memory_mib
        )
        failed.masks.append((short & ok, NodeReason.MEMORY.value))
        ok &= ~short

    first_fits: BoolArray | None = None
    for container in _distinct(request.gpu_containers):
        reason = device_reasons(a, rows, container, request.constraints, avoid_busy=avoid_busy)
        fits = reason == Reason.FITS
        if first_fits is None:
            first_fits = fits
        enough = _enough(a, rows, fits, container.count, request.constraints.numa_bind)
        failed.devices.append((ok & ~enough, reason, container, request.constraints))
        ok &= enough
    assert first_fits is not None

    chosen: Placement | None = None
    feasible = np.flatnonzero(ok)
    if feasible.size:
        order = scoring.rank_nodes(
            a, rows, feasible, first_fits, request, node_policy, gpu_policy, defaults.workload
        )
        for index in order.tolist():
            prefer = scoring.device_preference(
                a, int(rows[index]), request, node_policy, defaults.workload
            )
            outcome = fit_on_node(
                ledger, a, kept[index], request, gpu_policy, prefer, avoid_busy=avoid_busy
            )
            if isinstance(outcome, Placement):
                chosen = outcome
                break
            failed.late[index] = outcome.value
    return Decision(chosen, failed, considered)


def place(
    ledger: Ledger,
    request: PodRequest,
    candidates: Iterable[str] | None = None,
    defaults: Defaults = Defaults(),
    *,
    now: float = 0.0,
) -> Decision:
    """Decide and, when a node fits, reserve the placement in the ledger in the same call."""
    ledger.remove(request.uid)  # a retry: forget what this pod was given before
    decision = decide(ledger, request, candidates, defaults)
    if decision.placement is not None:
        ledger.add(decision.placement, now=now, bound=False)
    return decision


class _Failures(Mapping[NodeName, str]):
    """Per-node reasons, worded only when someone reads them (a successful filter never does)."""

    __slots__ = ("_done", "devices", "fixed", "kept", "late", "masks")

    def __init__(self) -> None:
        self.fixed: dict[NodeName, str] = {}
        self.kept: Sequence[str] = ()
        self.masks: list[tuple[BoolArray, str]] = []
        self.devices: list[tuple[BoolArray, IntArray, ContainerRequest, Constraints]] = []
        self.late: dict[int, str] = {}
        self._done: dict[NodeName, str] | None = None

    def _texts(self) -> dict[NodeName, str]:
        if self._done is None:
            by_index: dict[int, str] = {}
            for mask, text in self.masks:
                for index in np.flatnonzero(mask).tolist():
                    by_index.setdefault(index, text)
            for lacking, reason, container, constraints in self.devices:
                for index in np.flatnonzero(lacking).tolist():
                    by_index[index] = _device_text(reason[index], container, constraints)
            by_index.update(self.late)
            done = dict(self.fixed)
            for index, text in by_index.items():
                done[NodeName(self.kept[index])] = text
            self._done = done
        return self._done

    def __getitem__(self, key: NodeName) -> str:
        return self._texts()[key]

    def __iter__(self) -> Iterator[NodeName]:
        return iter(self._texts())

    def __len__(self) -> int:
        return len(self._texts())

    def __repr__(self) -> str:
        return repr(self._texts())


def _distinct(containers: Sequence[ContainerRequest]) -> list[ContainerRequest]:
    seen: dict[tuple[int, int, int, int], ContainerRequest] = {}
    for c in containers:
        seen.setdefault((c.count, c.memory_mib, c.memory_percent, c.cores), c)
    return list(seen.values())


def device_reasons(
    a: Arrays,
    rows: IntArray,
    c: ContainerRequest,
    constraints: Constraints,
    *,
    avoid_busy: bool = False,
) -> IntArray:
    """For every GPU of the given rows, the first reason it cannot host ``c`` (0: it can)."""
    mem_total = a.mem_total[rows]
    mem_free = mem_total - a.mem_used[rows]
    core_total = a.core_total[rows]
    core_used = a.core_used[rows]
    tenants = a.tenants[rows]
    need_mem = mem_total * c.memory_percent // 100 if not c.memory_mib else c.memory_mib
    reason = np.zeros(mem_total.shape, dtype=np.int64)
    # Assign lowest priority first so that the earliest check wins.
    if avoid_busy:
        reason[a.busy[rows] > 0] = Reason.HANDOFF_IN_FLIGHT
    if c.cores == 0:
        reason[core_used >= core_total] = Reason.CORES_FULL
    if c.cores == 100:
        reason[(core_total == 100) & (tenants > 0)] = Reason.EXCLUSIVE_CONFLICT
    reason[core_total - core_used < c.cores] = Reason.INSUFFICIENT_CORES
    reason[mem_free < need_mem] = Reason.INSUFFICIENT_MEMORY
    reason[tenants >= a.split[rows]] = Reason.SLOTS_EXHAUSTED
    if constraints.use_uuids or constraints.nouse_uuids:
        reason[~_uuid_mask(a, rows, constraints)] = Reason.UUID_MISMATCH
    if constraints.use_types or constraints.nouse_types:
        allowed = np.fromiter(
            (constraints.type_allowed(m) for m in a.models), dtype=bool, count=len(a.models)
        )
        reason[~allowed[a.type_id[rows]]] = Reason.TYPE_MISMATCH
    reason[a.cordon[rows]] = Reason.CORDONED
    reason[~a.healthy[rows]] = Reason.UNHEALTHY
    reason[~a.valid[rows]] = Reason.ABSENT
    return reason


def _uuid_mask(a: Arrays, rows: IntArray, constraints: Constraints) -> BoolArray:
    width = a.valid.shape[1]
    position = {int(r): i for i, r in enumerate(rows)}
    allowed = np.full((len(rows), width), not constraints.use_uuids, dtype=bool)
    for uuid in constraints.use_uuids:
        where = a.where.get(uuid)
        if where is not None and where[0] in position:
            allowed[position[where[0]], where[1]] = True
    for uuid in constraints.nouse_uuids:
        where = a.where.get(uuid)
        if where is not None and where[0] in position:
            allowed[position[where[0]], where[1]] = False
    return allowed


def _enough(a: Arrays, rows: IntArray, fits: BoolArray, count: int, numa_bind: bool) -> BoolArray:
    if not numa_bind or count == 1:
        result: BoolArray = fits.sum(axis=1) >= count
        return result
    numa = a.numa[rows]
    best = np.zeros(len(rows), dtype=np.int64)
    for value in np.unique(numa[fits]):
        best = np.maximum(best, (fits & (numa == value)).sum(axis=1))
    enough: BoolArray = best >= count
    return enough


_TEXT_CACHE: dict[tuple[bytes, int, bool], str] = {}


def _device_text(reason: IntArray, c: ContainerRequest, constraints: Constraints) -> str:
    key = (reason.tobytes(), c.count, constraints.numa_bind)
    text = _TEXT_CACHE.get(key)
    if text is None:
        counts = Counter(Reason(int(r)) for r in reason if r != Reason.ABSENT)
        total = sum(counts.values())
        if total == 0:
            text = NodeReason.NOT_REGISTERED.value
        elif constraints.numa_bind and counts.get(Reason.FITS, 0) >= c.count:
            text = NodeReason.NUMA.value
        else:
            text = describe_devices(counts, total, c.count)
        if len(_TEXT_CACHE) > 4096:
            _TEXT_CACHE.clear()
        _TEXT_CACHE[key] = text
    return text


# -- exact fit on one node ---------------------------------------------------------------------


def fit_on_node(
    ledger: Ledger,
    a: Arrays,
    name: NodeName,
    request: PodRequest,
    gpu_policy: GpuPolicy,
    prefer: Sequence[float] | None = None,
    *,
    avoid_busy: bool = False,
) -> Placement | NodeReason:
    """Fit every container of ``request`` on one node, init containers each on their own."""
    node = ledger.node(name)
    row = a.rows.get(name)
    if node is None or row is None:
        return NodeReason.NOT_REGISTERED
    n = len(node.devices)
    base = _RowUsage(
        [int(x) for x in a.mem_used[row, :n]],
        [int(x) for x in a.core_used[row, :n]],
        [int(x) for x in a.tenants[row, :n]],
    )
    shared = base.copy()
    avoid = frozenset(c for c in range(n) if a.busy[row, c] > 0) if avoid_busy else frozenset()
    out: list[tuple[DeviceSlice, ...]] = []
    for c in request.containers:
        if c is None:
            out.append(())
            continue
        usage = base.copy() if c.init else shared
        cols = _pick(
            node.devices,
            row,
            a,
            usage,
            c,
            request.constraints,
            gpu_policy,
            request.weights,
            prefer,
            avoid,
        )
        if cols is None:
            return NodeReason.CONTAINERS
        slices = []
        for col in cols:
            d = node.devices[col]
            memory = c.memory_on(d.memory_mib)
            usage.mem[col] += memory
            usage.cores[col] += c.cores
            usage.tenants[col] += 1
            slices.append(DeviceSlice(d.uuid, memory, c.cores))
        out.append(tuple(slices))
    return Placement(
        pod=request.uid,
        node=name,
        containers=tuple(out),
        init_count=request.init_count,
        names=request.names,
        cpu_milli=request.cpu_milli,
        memory_mib=request.memory_mib,
    )


@dataclass(slots=True)
class _RowUsage:
    mem: list[int]
    cores: list[int]
    tenants: list[int]

    def copy(self) -> _RowUsage:
        return _RowUsage(list(self.mem), list(self.cores), list(self.tenants))


def _pick(
    devices: Sequence[object],
    row: int,
    a: Arrays,
    usage: _RowUsage,
    c: ContainerRequest,
    constraints: Constraints,
    policy: GpuPolicy,
    weights: Weights,
    prefer: Sequence[float] | None = None,
    avoid: frozenset[int] = frozenset(),
) -> list[int] | None:
    from kantaloupe.scheduling.model import Device  # local: keeps the signature light

    fitting: list[tuple[tuple[float, ...], int, int]] = []
    for col, d in enumerate(devices):
        assert isinstance(d, Device)
        if not d.healthy or a.cordon[row, col] or col in avoid:
            continue
        if not constraints.type_allowed(d.model) or not constraints.uuid_allowed(d.uuid):
            continue
        tenants, mem_used, core_used = usage.tenants[col], usage.mem[col], usage.cores[col]
        need = c.memory_on(d.memory_mib)
        if tenants >= d.split or d.memory_mib - mem_used < need:
            continue
        if d.cores - core_used < c.cores:
            continue
        if c.cores == 100 and d.cores == 100 and tenants > 0:
            continue
        if c.cores == 0 and core_used >= d.cores:
            continue
        key = scoring.device_key(
            policy,
            weights,
            tenants,
            d.split,
            mem_used,
            need,
            d.memory_mib,
            core_used,
            c.cores,
            d.cores,
        )
        if prefer is not None:
            key = (prefer[col], *key)
        fitting.append((key, d.numa, col))
    if len(fitting) < c.count:
        return None
    fitting.sort()
    if c.count == 1:
        return [fitting[0][2]]
    return _choose_group(fitting, c.count, constraints.numa_bind)


def _choose_group(
    fitting: list[tuple[tuple[float, ...], int, int]], count: int, numa_bind: bool
) -> list[int] | None:
    """Topology-aware choice without enumerating combinations.

    Prefer the best-ranked GPUs that share one NUMA node; without one large enough (and without
    ``numa-bind``), take whole NUMA groups largest first, so the set spans as few as possible.
    """
    groups: dict[int, list[int]] = {}
    for _key, numa, col in fitting:  # already in policy order
        groups.setdefault(numa, []).append(col)
    whole = [g for g in groups.values() if len(g) >= count]
    if whole:
        rank = {col: i for i, (_k, _n, col) in enumerate(fitting)}
        best = min(whole, key=lambda g: sum(rank[c] for c in g[:count]))
        return sorted(best[:count])
    if numa_bind:
        return None
    chosen: list[int] = []
    for group in sorted(groups.values(), key=len, reverse=True):
        chosen.extend(group[: count - len(chosen)])
        if len(chosen) == count:
            break
    return sorted(chosen)
