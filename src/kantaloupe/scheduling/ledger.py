"""The ledger: every node's GPUs and what each pod holds on them, kept as dense arrays.

Usage is stored per device in numpy arrays (one row per node, one column per GPU) so that a
placement decision can test and score every candidate GPU in a handful of vector operations.
Pods are keyed by UID: adding the same placement twice, or removing an unknown pod, changes
nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from kantaloupe.api.ids import DeviceUuid, NodeName, PodUid
from kantaloupe.scheduling.model import Device, Node, Placement

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class DeviceUsage:
    """A read-only snapshot of one GPU and what is allocated on it."""

    node: NodeName
    device: Device
    used_memory_mib: int
    used_cores: int
    tenants: int
    cordoned: bool = False


@dataclass(slots=True)
class _Entry:
    placement: Placement
    reserved_at: float
    bound: bool
    settled: bool
    """The node agent has handed the devices out; until then the pod's GPUs count as busy."""


class Ledger:
    """Nodes, their GPUs, and the pods placed on them. Changed only through its methods."""

    __slots__ = (
        "_busy",
        "_by_node",
        "_cordon",
        "_core_total",
        "_core_used",
        "_cpu_total",
        "_cpu_used",
        "_free_rows",
        "_healthy",
        "_mem_total",
        "_mem_used",
        "_model_ids",
        "_models",
        "_nmem_total",
        "_nmem_used",
        "_node_ok",
        "_nodes",
        "_numa",
        "_pods",
        "_row_names",
        "_row_version",
        "_rows",
        "_split",
        "_tenants",
        "_type_id",
        "_valid",
        "_where",
        "version",
    )

    def __init__(self, nodes: Iterable[Node] = (), *, width: int = 8, capacity: int = 64) -> None:
        self._nodes: dict[NodeName, Node] = {}
        self._rows: dict[NodeName, int] = {}
        self._row_names: list[NodeName | None] = []
        self._free_rows: list[int] = []
        self._where: dict[DeviceUuid, tuple[int, int]] = {}
        self._pods: dict[PodUid, _Entry] = {}
        self._by_node: dict[NodeName, set[PodUid]] = {}
        self._models: list[str] = []
        self._model_ids: dict[str, int] = {}
        self.version = 0
        """Bumped on every change, so callers can cache derived views."""
        self._allocate(max(capacity, 1), max(width, 1))
        for node in nodes:
            self.set_node(node)

    # -- storage -------------------------------------------------------------------------------

    def _allocate(self, rows: int, width: int) -> None:
        shape = (rows, width)
        self._valid: BoolArray = np.zeros(shape, dtype=bool)
        self._healthy: BoolArray = np.zeros(shape, dtype=bool)
        self._cordon: BoolArray = np.zeros(shape, dtype=bool)
        self._mem_total: IntArray = np.zeros(shape, dtype=np.int64)
        self._mem_used: IntArray = np.zeros(shape, dtype=np.int64)
        self._core_total: IntArray = np.zeros(shape, dtype=np.int64)
        self._core_used: IntArray = np.zeros(shape, dtype=np.int64)
        self._split: IntArray = np.zeros(shape, dtype=np.int64)
        self._tenants: IntArray = np.zeros(shape, dtype=np.int64)
        self._busy: IntArray = np.zeros(shape, dtype=np.int64)
        self._numa: IntArray = np.zeros(shape, dtype=np.int64)
        self._type_id: IntArray = np.zeros(shape, dtype=np.int64)
        self._node_ok: BoolArray = np.zeros(rows, dtype=bool)
        self._cpu_total: IntArray = np.zeros(rows, dtype=np.int64)
        self._cpu_used: IntArray = np.zeros(rows, dtype=np.int64)
        self._nmem_total: IntArray = np.zeros(rows, dtype=np.int64)
        self._nmem_used: IntArray = np.zeros(rows, dtype=np.int64)
        self._row_version: IntArray = np.zeros(rows, dtype=np.int64)

    def _grow(self, rows: int, width: int) -> None:
        old = {name: getattr(self, name) for name in _ARRAY_FIELDS}
        old_rows, old_width = self._valid.shape
        self._allocate(rows, width)
        for name, array in old.items():
            target = getattr(self, name)
            if array.ndim == 2:
                target[:old_rows, :old_width] = array
            else:
                target[:old_rows] = array

    def _model_id(self, model: str) -> int:
        found = self._model_ids.get(model)
        if found is None:
            found = self._model_ids[model] = len(self._models)
            self._models.append(model)
        return found

    # -- nodes ---------------------------------------------------------------------------------

    def set_node(self, node: Node) -> None:
        """Add or replace a node. Pods already placed there keep their usage."""
        self.version += 1
        row = self._rows.get(node.name)
        if row is None:
            row = self._free_rows.pop() if self._free_rows else len(self._row_names)
            if row == len(self._row_names):
                self._row_names.append(None)
            self._rows[node.name] = row
            self._row_names[row] = node.name
        else:
            self._clear_row(row)
        rows, width = self._valid.shape
        if row >= rows or len(node.devices) > width:
            self._grow(
                max(rows * 2 if row >= rows else rows, row + 1), max(width, len(node.devices))
            )
        self._nodes[node.name] = node
        self._row_version[row] = self.version
        self._node_ok[row] = node.schedulable
        self._cpu_total[row] = node.cpu_milli
        self._nmem_total[row] = node.memory_mib
        for col, d in enumerate(node.devices):
            self._where[d.uuid] = (row, col)
            self._valid[row, col] = True
            self._healthy[row, col] = d.healthy
            self._cordon[row, col] = d.uuid in node.cordoned
            self._mem_total[row, col] = d.memory_mib
            self._core_total[row, col] = d.cores
            self._split[row, col] = d.split
            self._numa[row, col] = d.numa
            self._type_id[row, col] = self._model_id(d.model)
        for pod in self._by_node.get(node.name, ()):
            entry = self._pods[pod]
            self._apply(entry.placement, +1)
            if not entry.settled:
                self._apply_busy(entry.placement, +1)

    def _clear_row(self, row: int) -> None:
        name = self._row_names[row]
        if name is not None and (old := self._nodes.get(name)) is not None:
            for d in old.devices:
                if self._where.get(d.uuid, (-1, -1))[0] == row:
                    del self._where[d.uuid]
        for name_ in _ARRAY_FIELDS:
            getattr(self, name_)[row] = 0

    def remove_node(self, name: NodeName | str) -> None:
        """Forget a node. Its pods stay in the ledger and count again if it comes back."""
        row = self._rows.pop(NodeName(name), None)
        if row is None:
            return
        self.version += 1
        self._clear_row(row)
        self._row_version[row] = self.version
        self._nodes.pop(NodeName(name), None)
        self._row_names[row] = None
        self._free_rows.append(row)

    def node(self, name: str) -> Node | None:
        return self._nodes.get(NodeName(name))

    def nodes(self) -> Iterator[Node]:
        return iter(self._nodes.values())

    def __len__(self) -> int:
        return len(self._nodes)

    # -- pods ----------------------------------------------------------------------------------

    def add(
        self,
        placement: Placement,
        *,
        now: float = 0.0,
        bound: bool = True,
        settled: bool | None = None,
    ) -> bool:
        """Record a placement; returns False when this exact placement was already recorded.

        A different placement for a known pod replaces the old one. ``settled`` (default: the
        same as ``bound``) says whether the node agent has already handed the devices out.
        """
        settled = bound if settled is None else settled
        entry = self._pods.get(placement.pod)
        if entry is not None:
            if entry.placement == placement:
                entry.bound = entry.bound or bound
                if settled:
                    self.mark_settled(placement.pod)
                return False
            self.remove(placement.pod)
        self.version += 1
        self._pods[placement.pod] = _Entry(placement, now, bound, settled)
        self._by_node.setdefault(placement.node, set()).add(placement.pod)
        self._apply(placement, +1)
        if not settled:
            self._apply_busy(placement, +1)
        return True

    def remove(self, pod: PodUid | str) -> Placement | None:
        entry = self._pods.pop(PodUid(pod), None)
        if entry is None:
            return None
        self.version += 1
        placement = entry.placement
        pods = self._by_node.get(placement.node)
        if pods is not None:
            pods.discard(placement.pod)
            if not pods:
                del self._by_node[placement.node]
        self._apply(placement, -1)
        if not entry.settled:
            self._apply_busy(placement, -1)
        return placement

    def mark_bound(self, pod: PodUid | str) -> bool:
        entry = self._pods.get(PodUid(pod))
        if entry is None:
            return False
        entry.bound = True
        return True

    def mark_settled(self, pod: PodUid | str) -> bool:
        """The node agent handed the pod's devices out (or gave up): its GPUs are no longer busy."""
        entry = self._pods.get(PodUid(pod))
        if entry is None or entry.settled:
            return False
        self.version += 1
        entry.settled = True
        self._apply_busy(entry.placement, -1)
        return True

    def is_settled(self, pod: PodUid | str) -> bool:
        entry = self._pods.get(PodUid(pod))
        return entry is not None and entry.settled

    def placement(self, pod: PodUid | str) -> Placement | None:
        entry = self._pods.get(PodUid(pod))
        return None if entry is None else entry.placement

    def is_bound(self, pod: PodUid | str) -> bool:
        entry = self._pods.get(PodUid(pod))
        return entry is not None and entry.bound

    def pods(self) -> Iterator[Placement]:
        return (e.placement for e in self._pods.values())

    def pods_on(self, node: str) -> frozenset[PodUid]:
        return frozenset(self._by_node.get(NodeName(node), ()))

    def reservations(self) -> Iterator[tuple[PodUid, float]]:
        """Pods placed but not yet bound, with the time they were reserved."""
        return ((uid, e.reserved_at) for uid, e in self._pods.items() if not e.bound)

    def expire(self, now: float, ttl_s: float) -> list[Placement]:
        """Release reservations older than ``ttl_s`` whose pods never bound."""
        stale = [uid for uid, at in self.reservations() if now - at >= ttl_s]
        return [p for uid in stale if (p := self.remove(uid)) is not None]

    def _apply_busy(self, placement: Placement, sign: int) -> None:
        row = self._rows.get(placement.node)
        if row is None:
            return
        self._row_version[row] = self.version
        for uuid in {s.uuid for c in placement.containers for s in c}:
            where = self._where.get(uuid)
            if where is not None and where[0] == row:
                self._busy[where] += sign

    def _apply(self, placement: Placement, sign: int) -> None:
        row = self._rows.get(placement.node)
        if row is None:
            return
        self._row_version[row] = self.version
        self._cpu_used[row] += sign * placement.cpu_milli
        self._nmem_used[row] += sign * placement.memory_mib
        for uuid, (memory, cores, tenants) in placement.charges().items():
            where = self._where.get(uuid)
            if where is None or where[0] != row:
                continue
            self._mem_used[where] += sign * memory
            self._core_used[where] += sign * cores
            self._tenants[where] += sign * tenants

    # -- views ---------------------------------------------------------------------------------

    def devices(self) -> Iterator[DeviceUsage]:
        """A snapshot of every GPU with its usage."""
        for name, node in self._nodes.items():
            row = self._rows[name]
            for col, d in enumerate(node.devices):
                yield DeviceUsage(
                    node=name,
                    device=d,
                    used_memory_mib=int(self._mem_used[row, col]),
                    used_cores=int(self._core_used[row, col]),
                    tenants=int(self._tenants[row, col]),
                    cordoned=bool(self._cordon[row, col]),
                )

    def usage_of(self, uuid: DeviceUuid | str) -> tuple[int, int, int] | None:
        """(memory, cores, tenants) used on one GPU, or None if it is unknown."""
        where = self._where.get(DeviceUuid(uuid))
        if where is None:
            return None
        return int(self._mem_used[where]), int(self._core_used[where]), int(self._tenants[where])

    def node_usage(self, name: str) -> tuple[int, int]:
        """(cpu_milli, memory_mib) used on a node by placed pods."""
        row = self._rows[NodeName(name)]
        return int(self._cpu_used[row]), int(self._nmem_used[row])

    def arrays(self) -> Arrays:
        """The live arrays, for the fit module only (read-only by convention)."""
        fields = {name.lstrip("_"): getattr(self, name) for name in _ARRAY_FIELDS}
        return Arrays(
            **fields,
            models=self._models,
            rows=self._rows,
            row_names=self._row_names,
            where=self._where,
        )


_ARRAY_FIELDS = (
    "_valid",
    "_healthy",
    "_cordon",
    "_mem_total",
    "_mem_used",
    "_core_total",
    "_core_used",
    "_split",
    "_tenants",
    "_busy",
    "_numa",
    "_type_id",
    "_node_ok",
    "_cpu_total",
    "_cpu_used",
    "_nmem_total",
    "_nmem_used",
    "_row_version",
)


@dataclass(frozen=True, slots=True)
class Arrays:
    """The ledger's live arrays (rows: nodes, columns: GPUs), for ``fit`` only; do not write."""

    valid: BoolArray
    healthy: BoolArray
    cordon: BoolArray
    mem_total: IntArray
    mem_used: IntArray
    core_total: IntArray
    core_used: IntArray
    split: IntArray
    tenants: IntArray
    busy: IntArray
    """Per GPU, pods placed there whose hand-off has not finished."""
    numa: IntArray
    type_id: IntArray
    node_ok: BoolArray
    cpu_total: IntArray
    cpu_used: IntArray
    nmem_total: IntArray
    nmem_used: IntArray
    row_version: IntArray
    """Per row, the ledger ``version`` of the row's last change: a derived per-node view is
    stale exactly where this moved."""
    models: list[str]
    rows: dict[NodeName, int]
    row_names: list[NodeName | None]
    where: dict[DeviceUuid, tuple[int, int]]
