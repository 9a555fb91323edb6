"""Alibaba's openb GPU trace replayed through the scheduling core, by the published method.

Weng et al., "Beware of Fragmentation: Scheduling GPU-Sharing Workloads with Fragmentation
Gradient Descent" (USENIX ATC '23) score placement policies on this trace: the cluster's 1,523
nodes, the 8,152 tasks, inflated with random copies until their GPU requests reach 130 % of the
cluster's GPUs, shuffled, submitted one at a time with no departures. The score is the share of
the cluster's GPUs allocated when the arrived requests reach 100 % and 130 % of capacity.

How the trace maps onto the core (``docs/openb.md`` says why):

- Every GPU is a ``Device`` of 1,000 memory units and 1,000 core units (milli-cards), split 64,
  so a task's ``gpu_milli`` is asked exactly as memory *and* cores; a whole card takes both.
- Multi-GPU tasks take whole cards; ``gpu_spec`` becomes ``Constraints.use_types`` (checked at
  load time to match model names exactly, although the core matches substrings).
- Node CPU and memory are tracked by the ledger; the replay first keeps the nodes where the
  task's CPU, memory and GPU count fit (what kube-scheduler's own filters do before calling the
  extender), then the core decides among them.
- CPU-only tasks never reach the extender; the replay places them itself, on the fitting node
  with the least free GPU share (nodes without GPUs first), best fit on CPU among those.

Only ``load_trace`` reads files; everything else is pure.
"""

from __future__ import annotations

import csv
import io
import random
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kantaloupe.api.errors import InvalidScenarioError
from kantaloupe.api.ids import DeviceUuid, NodeName, PodUid
from kantaloupe.scheduling import fit, scoring
from kantaloupe.scheduling.ledger import BoolArray, IntArray, Ledger
from kantaloupe.scheduling.model import Device, Node, Placement
from kantaloupe.scheduling.policy import (
    DEFAULT_WORKLOAD,
    WORKLOAD_VOLUME_EXPONENT,
    GpuPolicy,
    NodePolicy,
    Workload,
)
from kantaloupe.scheduling.requests import Constraints, ContainerRequest, PodRequest
from kantaloupe.scheduling.scoring import FloatArray

NODE_FILE = "openb_node_list_all_node.csv"
TASK_FILE = "openb_pod_list_default.csv"
MILLI = 1000
SPLIT = 64
"""Sharing slots per card: high enough that slots never limit the trace."""
MAX_GPUS_PER_NODE = 64

Progress = Callable[[int, int], None]
Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class TraceNode:
    name: str
    cpu_milli: int
    memory_mib: int
    gpus: int
    model: str


@dataclass(frozen=True, slots=True)
class TraceTask:
    name: str
    cpu_milli: int
    memory_mib: int
    num_gpu: int
    gpu_milli: int
    """Share of each card, 0-1000; whole cards (1000) when ``num_gpu > 1``."""
    gpu_spec: tuple[str, ...] = ()

    @property
    def gpu_request_milli(self) -> int:
        """GPU asked in milli-cards: what counts toward arrived workload."""
        return self.num_gpu * self.gpu_milli


@dataclass(frozen=True, slots=True)
class Trace:
    nodes: tuple[TraceNode, ...]
    tasks: tuple[TraceTask, ...]

    @property
    def gpu_count(self) -> int:
        return sum(n.gpus for n in self.nodes)

    @property
    def capacity_milli(self) -> int:
        return self.gpu_count * MILLI

    def workload(self, *, volume_exponent: float = WORKLOAD_VOLUME_EXPONENT) -> Workload:
        """The trace's task mix, for fragmentation-aware policies.

        Each shape weighs tasks × (GPUs × share in cards) ** ``volume_exponent``: 0 counts
        tasks, as the paper does; 1 weighs by GPU volume; the default
        (``policy.WORKLOAD_VOLUME_EXPONENT``, -1.5) packs the trace best.
        """
        counts = Counter((t.num_gpu, t.gpu_milli, t.cpu_milli, t.gpu_spec) for t in self.tasks)
        workload = Workload.from_counts(dict(counts))
        return workload.reweighted(volume_exponent) if volume_exponent else workload

    def head(self, nodes: int, tasks: int) -> Trace:
        """The first ``nodes`` nodes and ``tasks`` tasks (for tests and quick looks)."""
        kept = self.nodes[:nodes]
        models = {n.model.lower() for n in kept if n.gpus}
        fitting = tuple(
            t for t in self.tasks if not t.gpu_spec or any(s.lower() in models for s in t.gpu_spec)
        )
        return Trace(kept, fitting[:tasks])


@dataclass(frozen=True, slots=True)
class TracePolicy:
    name: str
    node_policy: NodePolicy
    gpu_policy: GpuPolicy
    summary: str


POLICIES: Mapping[str, TracePolicy] = {
    p.name: p
    for p in (
        TracePolicy(
            "hami-default",
            NodePolicy.BINPACK,
            GpuPolicy.SPREAD,
            "HAMi's default: fullest node, emptiest GPU",
        ),
        TracePolicy("binpack", NodePolicy.BINPACK, GpuPolicy.BINPACK, "fullest node, fullest GPU"),
        TracePolicy(
            "binpack-fragmentation",
            NodePolicy.BINPACK,
            GpuPolicy.FRAGMENTATION,
            "fullest node; shared GPUs first, smallest hole",
        ),
        TracePolicy(
            "best-fit",
            NodePolicy.BEST_FIT,
            GpuPolicy.FRAGMENTATION,
            "least free CPU + GPU share left on the node (Weng et al.'s best fit)",
        ),
        TracePolicy(
            "fragmentation-gradient",
            NodePolicy.FRAGMENTATION_GRADIENT,
            GpuPolicy.FRAGMENTATION,
            "least growth of expected fragmentation (FGD), exact, best-fit ties",
        ),
    )
}
BEST_POLICY = "fragmentation-gradient"


@dataclass(frozen=True, slots=True)
class RunResult:
    """One replay of the method: one policy, one seed."""

    policy: str
    seed: int
    tasks: int
    placed: int
    failed: int
    arrived_pct: tuple[float, ...]
    """After each task: GPU requests arrived so far, % of cluster capacity."""
    alloc_pct: tuple[float, ...]
    """After each task: GPU share allocated, % of cluster capacity."""
    alloc_pct_at_100: float
    alloc_pct_at_130: float
    decision_s: tuple[float, ...] = ()
    """Seconds per core decision (GPU tasks only), when a clock was given."""
    ledger: Ledger | None = field(default=None, repr=False, compare=False)
    """The final ledger, when asked for (``keep_ledger``), to check invariants."""


# -- loading -------------------------------------------------------------------------------------


def load_trace(directory: Path) -> Trace:
    """Read the node list and the task list from ``directory`` (the only I/O here)."""
    if not directory.is_dir():
        raise InvalidScenarioError(
            "--trace-dir",
            str(directory),
            "is not a directory",
            "point --trace-dir (or KANTALOUPE_OPENB_DIR) at the folder holding "
            f"{NODE_FILE} and {TASK_FILE}",
        )
    texts: dict[str, str] = {}
    for name in (NODE_FILE, TASK_FILE):
        path = directory / name
        try:
            texts[name] = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise InvalidScenarioError(
                str(path), name, "is missing", "copy the openb trace files into that folder"
            ) from None
        except (OSError, UnicodeDecodeError) as e:
            raise InvalidScenarioError(
                str(path), name, f"cannot be read ({e})", "check the file's permissions and format"
            ) from e
    nodes = parse_nodes(texts[NODE_FILE], str(directory / NODE_FILE))
    tasks = parse_tasks(texts[TASK_FILE], str(directory / TASK_FILE), nodes)
    return Trace(nodes, tasks)


def _rows(text: str, source: str, fields: Sequence[str]) -> list[tuple[int, dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    missing = [f for f in fields if f not in header]
    if missing:
        raise InvalidScenarioError(
            f"{source}:1",
            ",".join(header),
            f"lacks the column(s) {', '.join(missing)}",
            f"the header must name {', '.join(fields)}",
        )
    out: list[tuple[int, dict[str, str]]] = []
    for row in reader:
        line = reader.line_num
        if None in row or any(row.get(f) is None for f in fields):
            raise InvalidScenarioError(
                f"{source}:{line}",
                ",".join(str(v) for v in row.values()),
                "has a different number of fields than the header",
                "write one value per column",
            )
        out.append((line, row))
    return out


def _int(
    source: str, line: int, row: Mapping[str, str], field: str, low: int, high: int | None = None
) -> int:
    raw = row[field].strip()
    where = f"{source}:{line} {field}"
    try:
        value = int(raw)
    except ValueError:
        raise InvalidScenarioError(
            where, raw, "is not an integer", "write a whole number"
        ) from None
    if value < low or (high is not None and value > high):
        span = f"{low}-{high}" if high is not None else f"at least {low}"
        raise InvalidScenarioError(where, raw, f"must be {span}", f"write a value {span}")
    return value


def parse_nodes(text: str, source: str) -> tuple[TraceNode, ...]:
    """Nodes from the CSV text of ``openb_node_list_*.csv`` (``source`` names it in errors)."""
    nodes: list[TraceNode] = []
    seen: set[str] = set()
    for line, row in _rows(text, source, ("sn", "cpu_milli", "memory_mib", "gpu", "model")):
        name = row["sn"].strip()
        if not name or name in seen:
            raise InvalidScenarioError(
                f"{source}:{line} sn",
                name,
                "is empty" if not name else "names a node twice",
                "give every node a unique name",
            )
        seen.add(name)
        gpus = _int(source, line, row, "gpu", 0, MAX_GPUS_PER_NODE)
        model = row["model"].strip()
        if gpus and not model:
            raise InvalidScenarioError(
                f"{source}:{line} model", model, "is empty on a node with GPUs", "name the model"
            )
        nodes.append(
            TraceNode(
                name=name,
                cpu_milli=_int(source, line, row, "cpu_milli", 0),
                memory_mib=_int(source, line, row, "memory_mib", 0),
                gpus=gpus,
                model=model,
            )
        )
    if not nodes:
        raise InvalidScenarioError(source, "", "lists no nodes", "add at least one node row")
    return tuple(nodes)


def parse_tasks(text: str, source: str, nodes: Sequence[TraceNode]) -> tuple[TraceTask, ...]:
    """Tasks from the CSV text of ``openb_pod_list_*.csv``; ``gpu_spec`` is checked on ``nodes``.

    A ``gpu_spec`` entry must name a model of the cluster, and no other model may contain it
    (the core matches GPU types by substring, as HAMi does).
    """
    models = sorted({n.model for n in nodes if n.gpus})
    fields = ("name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli", "gpu_spec")
    tasks: list[TraceTask] = []
    for line, row in _rows(text, source, fields):
        num_gpu = _int(source, line, row, "num_gpu", 0, MAX_GPUS_PER_NODE)
        gpu_milli = _int(source, line, row, "gpu_milli", 0, MILLI)
        if num_gpu == 0 and gpu_milli:
            raise InvalidScenarioError(
                f"{source}:{line} gpu_milli",
                gpu_milli,
                "is set on a task without GPUs",
                "set num_gpu, or gpu_milli to 0",
            )
        if num_gpu and not gpu_milli:
            raise InvalidScenarioError(
                f"{source}:{line} gpu_milli", 0, "is 0 on a GPU task", "write 1-1000"
            )
        if num_gpu > 1:
            gpu_milli = MILLI  # multi-GPU tasks take whole cards
        spec = tuple(s.strip() for s in row["gpu_spec"].split("|") if s.strip())
        for s in spec:
            matches = [m for m in models if s.lower() in m.lower()]
            if [m.lower() for m in matches] != [s.lower()]:
                others = ", ".join(m for m in matches if m.lower() != s.lower())
                problem = (
                    f"would also match {others}" if others else "names no GPU model of the cluster"
                )
                raise InvalidScenarioError(
                    f"{source}:{line} gpu_spec",
                    row["gpu_spec"],
                    problem,
                    f"use exact model names separated by '|' ({', '.join(models)})",
                )
        tasks.append(
            TraceTask(
                name=row["name"].strip() or f"task-{line}",
                cpu_milli=_int(source, line, row, "cpu_milli", 0),
                memory_mib=_int(source, line, row, "memory_mib", 0),
                num_gpu=num_gpu,
                gpu_milli=gpu_milli,
                gpu_spec=spec,
            )
        )
    if not tasks:
        raise InvalidScenarioError(source, "", "lists no tasks", "add at least one task row")
    return tuple(tasks)


# -- the method ----------------------------------------------------------------------------------


def inflate(trace: Trace, seed: int, target: float = 1.3) -> list[TraceTask]:
    """The trace's tasks plus random copies until GPU requests reach ``target`` × capacity,
    shuffled."""
    rng = random.Random(seed)
    tasks = list(trace.tasks)
    total = sum(t.gpu_request_milli for t in tasks)
    goal = target * trace.capacity_milli
    if any(t.gpu_request_milli for t in trace.tasks):
        while total < goal:
            task = rng.choice(trace.tasks)
            tasks.append(task)
            total += task.gpu_request_milli
    rng.shuffle(tasks)
    return tasks


def build_nodes(trace: Trace) -> list[Node]:
    return [
        Node(
            name=NodeName(n.name),
            devices=tuple(
                Device(
                    uuid=DeviceUuid(f"{n.name}/{i}"),
                    index=i,
                    model=n.model,
                    memory_mib=MILLI,
                    cores=MILLI,
                    split=SPLIT,
                )
                for i in range(n.gpus)
            ),
            cpu_milli=n.cpu_milli,
            memory_mib=n.memory_mib,
        )
        for n in trace.nodes
    ]


def run_method(
    trace: Trace,
    policy: str,
    seed: int,
    *,
    workload: Workload | None = None,
    clock: Clock | None = None,
    progress: Progress | None = None,
    target: float = 1.3,
    limit: int | None = None,
    dedupe: bool = True,
    keep_ledger: bool = False,
) -> RunResult:
    """One replay of the published method under ``policy`` (a key of ``POLICIES``).

    ``limit`` stops after that many tasks (for timing probes); ``dedupe=False`` offers every
    fitting node to the core, as a live cluster would (same decisions, slower).
    """
    chosen = POLICIES.get(policy)
    if chosen is None:
        raise InvalidScenarioError(
            "--policy", policy, "is not a trace policy", f"use one of {', '.join(POLICIES)}"
        )
    defaults = fit.Defaults(
        node_policy=chosen.node_policy,
        gpu_policy=chosen.gpu_policy,
        workload=workload if workload is not None else trace.workload(),
    )
    replay = _Replay(trace)
    tasks = inflate(trace, seed, target)
    if limit is not None:
        tasks = tasks[:limit]
    capacity = max(trace.capacity_milli, 1)
    arrived = 0
    arrived_pct: list[float] = []
    alloc_pct: list[float] = []
    decision_s: list[float] = []
    placed = failed = 0
    for i, task in enumerate(tasks):
        arrived += task.gpu_request_milli
        if replay.submit(task, f"{task.name}#{i}", defaults, clock, decision_s, dedupe):
            placed += 1
        else:
            failed += 1
        arrived_pct.append(100.0 * arrived / capacity)
        alloc_pct.append(100.0 * replay.allocated_milli / capacity)
        if progress is not None and (i % 500 == 0 or i + 1 == len(tasks)):
            progress(i + 1, len(tasks))
    return RunResult(
        policy=policy,
        seed=seed,
        tasks=len(tasks),
        placed=placed,
        failed=failed,
        arrived_pct=tuple(arrived_pct),
        alloc_pct=tuple(alloc_pct),
        alloc_pct_at_100=alloc_at(arrived_pct, alloc_pct, 100.0),
        alloc_pct_at_130=alloc_at(arrived_pct, alloc_pct, 100.0 * target),
        decision_s=tuple(decision_s),
        ledger=replay.ledger if keep_ledger else None,
    )


def alloc_at(arrived_pct: Sequence[float], alloc_pct: Sequence[float], level: float) -> float:
    """Allocation right after the task whose arrival first reaches ``level`` % (else the last)."""
    for arrived, alloc in zip(arrived_pct, alloc_pct, strict=True):
        if arrived >= level - 1e-9:
            return alloc
    return alloc_pct[-1] if alloc_pct else 0.0


class _Replay:
    """The ledger plus the replay's own view of free resources (for the pre-filter)."""

    __slots__ = (
        "allocated_milli",
        "cpu_free",
        "gpu_free",
        "klass",
        "ledger",
        "mem_free",
        "models",
        "names",
        "pristine",
        "type_masks",
        "where",
    )

    def __init__(self, trace: Trace) -> None:
        nodes = build_nodes(trace)
        self.ledger = Ledger(nodes, width=max((n.gpus for n in trace.nodes), default=1))
        self.names = [n.name for n in nodes]
        width = max((n.gpus for n in trace.nodes), default=0)
        self.gpu_free = np.full((len(nodes), max(width, 1)), -1, dtype=np.int64)
        for row, n in enumerate(trace.nodes):
            self.gpu_free[row, : n.gpus] = MILLI
        self.cpu_free = np.asarray([n.cpu_milli for n in trace.nodes], dtype=np.int64)
        self.mem_free = np.asarray([n.memory_mib for n in trace.nodes], dtype=np.int64)
        self.models = np.asarray([n.model.lower() for n in trace.nodes])
        self.where = {
            d.uuid: (row, col) for row, n in enumerate(nodes) for col, d in enumerate(n.devices)
        }
        self.type_masks: dict[tuple[str, ...], BoolArray] = {}
        self.allocated_milli = 0
        # Untouched nodes of one kind are interchangeable, and every policy breaks exact ties by
        # node order, so only the first untouched node of each kind needs to be offered: the
        # decision is the same, and the core scores a few hundred nodes instead of 1,500.
        kinds: dict[tuple[str, int, int, int], int] = {}
        self.klass = np.asarray(
            [
                kinds.setdefault((n.model, n.gpus, n.cpu_milli, n.memory_mib), len(kinds))
                for n in trace.nodes
            ],
            dtype=np.int64,
        )
        self.pristine = np.ones(len(nodes), dtype=bool)

    def submit(
        self,
        task: TraceTask,
        uid: str,
        defaults: fit.Defaults,
        clock: Clock | None,
        timings: list[float],
        dedupe: bool = True,
    ) -> bool:
        ok = (self.cpu_free >= task.cpu_milli) & (self.mem_free >= task.memory_mib)
        if task.num_gpu == 0:
            return self._place_cpu_only(task, uid, ok, defaults)
        ok &= (self.gpu_free >= task.gpu_milli).sum(axis=1) >= task.num_gpu
        if task.gpu_spec:
            ok &= self._type_mask(task.gpu_spec)
        if dedupe:
            fresh = ok & self.pristine
            fresh_rows = np.flatnonzero(fresh)
            if fresh_rows.size:
                _, first = np.unique(self.klass[fresh_rows], return_index=True)
                ok &= ~fresh
                ok[fresh_rows[first]] = True
        rows = np.flatnonzero(ok)
        if not rows.size:
            return False
        request = PodRequest(
            uid=PodUid(uid),
            containers=(
                ContainerRequest(
                    name="main",
                    count=task.num_gpu,
                    memory_mib=task.gpu_milli,
                    memory_percent=0,
                    cores=task.gpu_milli,
                ),
            ),
            names=("main",),
            init_count=0,
            constraints=Constraints(use_types=tuple(s.lower() for s in task.gpu_spec)),
            cpu_milli=task.cpu_milli,
            memory_mib=task.memory_mib,
        )
        candidates = [self.names[r] for r in rows.tolist()]
        started = clock() if clock is not None else 0.0
        decision = fit.place(self.ledger, request, candidates, defaults)
        if clock is not None:
            timings.append(clock() - started)
        placement = decision.placement
        if placement is None:
            return False
        # No kubelet in the trace: the pod binds and is handed off at once.
        self.ledger.mark_bound(request.uid)
        self.ledger.mark_settled(request.uid)
        row = -1
        for container in placement.containers:
            for s in container:
                row, col = self.where[s.uuid]
                self.gpu_free[row, col] -= s.memory_mib
                self.allocated_milli += s.memory_mib
        self.cpu_free[row] -= task.cpu_milli
        self.mem_free[row] -= task.memory_mib
        self.pristine[row] = False
        return True

    def _type_mask(self, spec: tuple[str, ...]) -> BoolArray:
        mask = self.type_masks.get(spec)
        if mask is None:
            mask = np.isin(self.models, [s.lower() for s in spec])
            self.type_masks[spec] = mask
        return mask

    def _place_cpu_only(
        self, task: TraceTask, uid: str, ok: BoolArray, defaults: fit.Defaults
    ) -> bool:
        """Least free GPU share left beside the task, then best fit on CPU. The paper's
        policies score every task, CPU-only ones too: under ``best-fit`` its score comes first,
        under ``fragmentation-gradient`` the growth of expected fragmentation (the CPU taken
        can strand GPUs)."""
        rows = np.flatnonzero(ok)
        if not rows.size:
            return False
        gpu_left = np.where(self.gpu_free[rows] > 0, self.gpu_free[rows], 0).sum(axis=1)
        cpu_left = self.cpu_free[rows] - task.cpu_milli
        keys: list[IntArray | FloatArray] = [rows, cpu_left, gpu_left]
        if defaults.node_policy is NodePolicy.BEST_FIT:
            keys.append(scoring.best_fit_scores(self.ledger.arrays(), rows, task.cpu_milli))
        elif defaults.node_policy is NodePolicy.FRAGMENTATION_GRADIENT:
            a = self.ledger.arrays()  # rows are the trace's order: the ledger was built from it
            cpu_only = ContainerRequest(
                name="cpu", count=1, memory_mib=0, memory_percent=0, cores=0
            )
            deltas = scoring.fragmentation_deltas(
                a,
                rows,
                cpu_only,
                a.valid[rows],
                task.cpu_milli,
                defaults.workload or DEFAULT_WORKLOAD,
            )
            keys.append(np.where(a.valid[rows].any(axis=1), deltas.min(axis=1), 0.0))
        row = int(rows[np.lexsort(tuple(keys))[0]])
        self.ledger.add(
            Placement(
                pod=PodUid(uid),
                node=NodeName(self.names[row]),
                containers=(),
                cpu_milli=task.cpu_milli,
                memory_mib=task.memory_mib,
            )
        )
        self.cpu_free[row] -= task.cpu_milli
        self.mem_free[row] -= task.memory_mib
        self.pristine[row] = False
        return True
