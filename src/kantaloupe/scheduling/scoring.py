"""Scoring policies: how nodes are ranked and how a node's GPUs are ordered.

Node score (HAMi's, before placement): the node's used share of sharing slots + of cores + of
memory. ``binpack`` prefers the fullest node, ``spread`` the emptiest.

GPU score (HAMi's): ``w_slot·(tenants+1)/split + w_core·(used+req)/total + w_mem·(used+req)/total``;
``binpack`` prefers the highest, ``spread`` the lowest. Ties go to the GPU that leaves the smallest
hole (best fit), which keeps larger holes free for larger requests. ``fragmentation`` goes further:
cards already shared first, then best fit, so whole cards stay whole as long as possible.

Node policies that look at more than one GPU (Weng et al., "Beware of Fragmentation", ATC '23):

- ``best-fit``: the node left with the least free CPU and GPU share, each normalised by the
  largest node and weighted equally.
- ``fragmentation-gradient`` (FGD): a node's *fragmentation* w.r.t. a task shape is the GPU share
  that shape could not use there (all of it when the node cannot host the shape at all, else the
  cards with less free share than the shape asks); its expected fragmentation weighs the shapes of
  a ``Workload``. The pod goes to the node *and GPU* whose expected fragmentation grows least,
  plus a little best fit (``FGD_BEST_FIT_BLEND``). Scores are exact (no integer rounding) and
  computed for every candidate GPU at once: per node, per share level, with prefix sums over the
  workload's CPU and share levels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from kantaloupe.scheduling.ledger import Arrays, BoolArray, IntArray
from kantaloupe.scheduling.policy import (
    DEFAULT_WORKLOAD,
    GpuPolicy,
    NodePolicy,
    TaskShape,
    Weights,
    Workload,
)
from kantaloupe.scheduling.requests import ContainerRequest, PodRequest

FloatArray = npt.NDArray[np.float64]


def device_key(
    policy: GpuPolicy,
    weights: Weights,
    tenants: int,
    split: int,
    mem_used: int,
    mem_need: int,
    mem_total: int,
    core_used: int,
    core_need: int,
    core_total: int,
) -> tuple[float, ...]:
    """Sort key of one GPU for one container: smaller sorts first (is preferred)."""
    score = (
        weights.slot * (tenants + 1) / split
        + weights.core * (core_used + core_need) / core_total
        + weights.memory * (mem_used + mem_need) / mem_total
    )
    leftover = (mem_total - mem_used - mem_need) / mem_total
    if policy is GpuPolicy.SPREAD:
        return (score, leftover)
    if policy is GpuPolicy.FRAGMENTATION:
        return (0.0 if tenants else 1.0, leftover, -score)
    return (-score, leftover)


def node_scores(a: Arrays, rows: IntArray) -> FloatArray:
    """HAMi's node score for each row, computed before placement."""
    valid = a.valid[rows]
    split = np.where(valid, a.split[rows], 0).sum(axis=1)
    cores = np.where(valid, a.core_total[rows], 0).sum(axis=1)
    memory = np.where(valid, a.mem_total[rows], 0).sum(axis=1)
    score: FloatArray = (
        a.tenants[rows].sum(axis=1) / np.maximum(split, 1)
        + a.core_used[rows].sum(axis=1) / np.maximum(cores, 1)
        + a.mem_used[rows].sum(axis=1) / np.maximum(memory, 1)
    )
    return score


def rank_nodes(
    a: Arrays,
    rows: IntArray,
    feasible: IntArray,
    first_fits: BoolArray,
    request: PodRequest,
    node_policy: NodePolicy,
    gpu_policy: GpuPolicy,
    workload: Workload | None = None,
) -> IntArray:
    """Indexes into ``rows`` of the feasible nodes, best first."""
    r = rows[feasible]
    if node_policy is NodePolicy.BEST_FIT:
        primary = best_fit_scores(a, r, request.cpu_milli)
    elif node_policy is NodePolicy.FRAGMENTATION_GRADIENT:
        c = request.gpu_containers[0]
        terms = node_terms(a, r, workload or DEFAULT_WORKLOAD)
        free = terms.f
        deltas = fragmentation_deltas(
            a, r, c, first_fits[feasible], request.cpu_milli, workload or DEFAULT_WORKLOAD, terms
        )
        _RECENT.keep(a, r, request, workload, deltas)
        tie = best_fit_scores(a, r, request.cpu_milli, free, FGD_BLEND_CPU_WEIGHT)
        primary = deltas.min(axis=1) + FGD_BEST_FIT_BLEND * 1000.0 * tie
        order = np.lexsort((feasible, tie, primary))
        joint: IntArray = feasible[order]
        return joint
    else:
        primary = node_scores(a, r)
        if node_policy is NodePolicy.BINPACK:
            primary = -primary
    secondary = _best_device_keys(a, r, first_fits[feasible], request, gpu_policy)
    order = np.lexsort((feasible, secondary, primary))
    ranked: IntArray = feasible[order]
    return ranked


def _best_device_keys(
    a: Arrays, r: IntArray, fits: BoolArray, request: PodRequest, policy: GpuPolicy
) -> FloatArray:
    """Per node, the first GPU container's best GPU key under ``policy`` (smaller is better)."""
    c = request.gpu_containers[0]
    w = request.weights
    mem_total = a.mem_total[r]
    need = mem_total * c.memory_percent // 100 if not c.memory_mib else c.memory_mib
    safe_mem = np.maximum(mem_total, 1)
    mem_after = a.mem_used[r] + need
    score = (
        w.slot * (a.tenants[r] + 1) / np.maximum(a.split[r], 1)
        + w.core * (a.core_used[r] + c.cores) / np.maximum(a.core_total[r], 1)
        + w.memory * mem_after / safe_mem
    )
    leftover = (mem_total - mem_after) / safe_mem
    if policy is GpuPolicy.SPREAD:
        key = score
    elif policy is GpuPolicy.FRAGMENTATION:
        key = np.where(a.tenants[r] > 0, 0.0, 10.0) + leftover
    else:
        key = -score
    best: FloatArray = np.where(fits, key, np.inf).min(axis=1)
    return best


def device_preference(
    a: Arrays,
    row: int,
    request: PodRequest,
    node_policy: NodePolicy,
    workload: Workload | None = None,
) -> list[float] | None:
    """Per GPU of one node, a sort key that goes before the GPU policy's (``None``: no opinion).

    Joint policies choose the GPU together with the node; ``fit`` honours this order on the node
    it tries, so the pod lands on the GPU the node was ranked by.
    """
    if node_policy is not NodePolicy.FRAGMENTATION_GRADIENT:
        return None
    known = _RECENT.find(a, row, request, workload)
    if known is not None:
        return known
    c = request.gpu_containers[0]
    r = np.asarray([row], dtype=np.int64)
    mem_free = a.mem_total[r] - a.mem_used[r]
    core_free = a.core_total[r] - a.core_used[r]
    need = a.mem_total[r] * c.memory_percent // 100 if not c.memory_mib else c.memory_mib
    fits = (
        a.valid[r]
        & a.healthy[r]
        & ~a.cordon[r]
        & (a.tenants[r] < a.split[r])
        & (mem_free >= need)
        & (core_free >= c.cores)
    )
    if c.cores == 100:
        fits &= ~((a.core_total[r] == 100) & (a.tenants[r] > 0))
    deltas = fragmentation_deltas(a, r, c, fits, request.cpu_milli, workload or DEFAULT_WORKLOAD)
    return [float(x) for x in deltas[0]]


class _Recent:
    """The last ranking's per-GPU deltas, so that ``device_preference`` on the node it ranked
    first need not score that node again. Trusted only for the same request and workload
    objects and a node whose usage has not changed since."""

    __slots__ = ("core", "cpu", "deltas", "mem", "request", "rows", "tenants", "total", "workload")

    def __init__(self) -> None:
        self.request: PodRequest | None = None
        self.workload: Workload | None = None
        self.rows: IntArray = np.zeros(0, dtype=np.int64)
        self.deltas: FloatArray = np.zeros((0, 0))
        self.mem: IntArray = self.rows
        self.core: IntArray = self.rows
        self.tenants: IntArray = self.rows
        self.cpu: IntArray = self.rows
        self.total: IntArray = self.rows

    def keep(
        self,
        a: Arrays,
        r: IntArray,
        request: PodRequest,
        workload: Workload | None,
        deltas: FloatArray,
    ) -> None:
        self.request, self.workload, self.rows, self.deltas = request, workload, r, deltas
        self.mem, self.core, self.tenants = a.mem_used[r], a.core_used[r], a.tenants[r]
        self.cpu, self.total = a.cpu_used[r], a.mem_total[r]

    def find(
        self, a: Arrays, row: int, request: PodRequest, workload: Workload | None
    ) -> list[float] | None:
        if self.request is not request or self.workload is not workload:
            return None
        hits = np.flatnonzero(self.rows == row)
        if not hits.size:
            return None
        i = int(hits[0])
        width = self.mem.shape[1]
        same = (
            np.array_equal(self.mem[i], a.mem_used[row, :width])
            and np.array_equal(self.core[i], a.core_used[row, :width])
            and np.array_equal(self.tenants[i], a.tenants[row, :width])
            and np.array_equal(self.total[i], a.mem_total[row, :width])
            and int(self.cpu[i]) == int(a.cpu_used[row])
        )
        return [float(x) for x in self.deltas[i]] if same else None


_RECENT = _Recent()


def best_fit_scores(
    a: Arrays, r: IntArray, cpu_milli: int, free: IntArray | None = None, cpu_weight: float = 0.5
) -> FloatArray:
    """Free CPU and free GPU share after placement, each over the largest node's, weighted 1:1.

    Smaller is better. Untracked CPU (capacity 0) counts as nothing free.
    """
    share = _free_share(a, r) if free is None else free
    cards = share.sum(axis=1) / 1000.0
    gpu_max = max(int(a.valid.sum(axis=1).max(initial=0)), 1)
    cpu_total = a.cpu_total[r]
    cpu_max = max(int(a.cpu_total.max(initial=0)), 1)
    cpu_left = np.where(cpu_total > 0, cpu_total - a.cpu_used[r] - cpu_milli, 0)
    score: FloatArray = cpu_weight * cpu_left / cpu_max + (1.0 - cpu_weight) * cards / gpu_max
    return score


def _free_share(a: Arrays, r: IntArray) -> IntArray:
    """Free share of each GPU in milli-cards (0-1000): the scarcer of memory and cores."""
    mem_total = a.mem_total[r]
    core_total = a.core_total[r]
    mem_free = (mem_total - a.mem_used[r]) * 1000 // np.maximum(mem_total, 1)
    core_free = (core_total - a.core_used[r]) * 1000 // np.maximum(core_total, 1)
    usable = a.valid[r] & a.healthy[r] & ~a.cordon[r] & (a.tenants[r] < a.split[r])
    free: IntArray = np.where(usable, np.clip(np.minimum(mem_free, core_free), 0, 1000), 0)
    return free


# -- fragmentation gradient ---------------------------------------------------------------------

FGD_BEST_FIT_BLEND = 0.1
"""Weight of best fit in the ``fragmentation-gradient`` node score, in milli-cards per unit of
best-fit score (0-1: the CPU and GPU share a node would have left). Pure FGD (0) leaves many
near-ties that best fit settles well; on the openb trace 0.1 packs 0.1-0.2 points more than 0."""

FGD_BLEND_CPU_WEIGHT = 0.5
"""Share of free CPU (the rest: free GPU share) in that best-fit nudge."""

_UNTRACKED_CPU = 1 << 60


@dataclass(frozen=True, slots=True)
class _Tables:
    """A workload's shapes, arranged for vector lookups on one ledger's GPU models."""

    levels: IntArray
    """Sorted distinct shares of the single-GPU shapes."""
    cpu_levels: IntArray
    """Sorted distinct CPU asks of the single-GPU shapes."""
    single: FloatArray
    """(model, cpu index, level): probability of single-GPU shapes of that share whose CPU ask
    is within the first ``cpu index`` CPU levels and that accept the model."""
    prefix: FloatArray
    """``single`` summed over the levels below each: (model, cpu index, levels + 1)."""
    multi: tuple[tuple[int, int, IntArray, FloatArray], ...]
    """Multi-GPU shapes by (GPUs, share): their CPU levels and, per (model, cpu index), the
    probability of the group's shapes within the first ``cpu index`` CPU levels."""
    mass: float
    """Total probability of the GPU shapes: 1, or 0 for a workload without any."""


_TABLE_CACHE: dict[tuple[int, int], tuple[Workload, list[str], _Tables]] = {}


def _tables(workload: Workload, models: list[str]) -> _Tables:
    # Keyed by identity (hashing a workload of many shapes on every decision costs more than
    # the lookup saves); the entry keeps both objects alive, and the ledger's model list only
    # grows, so its length tells a stale entry.
    key = (id(workload), id(models))
    entry = _TABLE_CACHE.get(key)
    if entry is not None and entry[0] is workload and len(entry[1]) == entry[2].single.shape[0]:
        return entry[2]
    gpu = [s for s in workload.shapes if s.count > 0 and s.weight > 0]
    total = sum(s.weight for s in gpu) or 1.0
    lowered = [m.lower() for m in models] or [""]

    def allowed(types: tuple[str, ...]) -> BoolArray:
        wanted = {t.lower() for t in types}
        mask: BoolArray = np.asarray([not wanted or m in wanted for m in lowered], dtype=bool)
        return mask

    single = [s for s in gpu if s.count == 1]
    multi = [s for s in gpu if s.count > 1]
    levels = np.asarray(sorted({min(max(s.share_milli, 1), 1000) for s in single}), dtype=np.int64)
    cpu_levels = np.asarray(sorted({s.cpu_milli for s in single}), dtype=np.int64)
    table = np.zeros((len(lowered), len(cpu_levels) + 1, len(levels)), dtype=np.float64)
    for s in single:
        u = int(np.searchsorted(levels, min(max(s.share_milli, 1), 1000)))
        j = int(np.searchsorted(cpu_levels, s.cpu_milli)) + 1
        table[allowed(s.types), j, u] += s.weight / total
    table = np.cumsum(table, axis=1)
    groups: dict[tuple[int, int], list[TaskShape]] = {}
    for s in multi:
        groups.setdefault((s.count, min(max(s.share_milli, 1), 1000)), []).append(s)
    multi_tables: list[tuple[int, int, IntArray, FloatArray]] = []
    for (count, share), shapes in sorted(groups.items()):
        levels_g = np.asarray(sorted({s.cpu_milli for s in shapes}), dtype=np.int64)
        table_g = np.zeros((len(lowered), len(levels_g) + 1), dtype=np.float64)
        for s in shapes:
            table_g[allowed(s.types), int(np.searchsorted(levels_g, s.cpu_milli)) + 1] += (
                s.weight / total
            )
        multi_tables.append((count, share, levels_g, np.cumsum(table_g, axis=1)))
    result = _Tables(
        levels=levels,
        cpu_levels=cpu_levels,
        single=table,
        prefix=np.concatenate([np.zeros((*table.shape[:2], 1)), np.cumsum(table, axis=2)], axis=2),
        multi=tuple(multi_tables),
        mass=1.0 if gpu else 0.0,
    )
    if len(_TABLE_CACHE) > 16:
        _TABLE_CACHE.clear()
    _TABLE_CACHE[key] = (workload, models, result)
    return result


@dataclass(frozen=True, slots=True)
class _Terms:
    """Per node, what the fragmentation gradient needs of the node as it is."""

    f: IntArray
    """Free share of each GPU (``_free_share``)."""
    total: IntArray
    m1: IntArray
    """Largest free share, and ``c1`` how many cards have it, ``m2`` the next smaller one."""
    c1: IntArray
    m2: IntArray
    cpu: IntArray
    """Free CPU (``_UNTRACKED_CPU`` when the node does not track it)."""
    model: IntArray
    idx: IntArray
    """Per card, the first share level the card cannot host."""
    frag: FloatArray
    """Expected fragmentation (milli-cards) w.r.t. the workload."""
    multi: tuple[tuple[IntArray, IntArray], ...]
    """Per multi-GPU group of the workload: cards that fit it, share stranded below it."""


def _compute_terms(a: Arrays, r: IntArray, t: _Tables) -> _Terms:
    f = _free_share(a, r)
    total = f.sum(axis=1)
    m1 = f.max(axis=1, initial=0)
    c1 = (f == m1[:, None]).sum(axis=1)
    m2 = np.where(f < m1[:, None], f, 0).max(axis=1, initial=0)
    cpu_total = a.cpu_total[r]
    cpu = np.where(cpu_total > 0, cpu_total - a.cpu_used[r], _UNTRACKED_CPU)
    model = a.type_id[r, 0]
    levels = t.levels
    prefix = t.prefix.ravel()
    stride = len(levels) + 1
    idx = np.searchsorted(levels, f, side="right")  # a card strands its share for levels >= idx
    # Single-GPU shapes: with P(u) the probability of the shapes of share level u the node can
    # host (CPU, model), and L the levels its largest free card reaches, the node strands
    # sum_u<L P(u) * (share on cards below level u) + total * (mass - sum_u<L P(u))
    #   = sum_cards f * (A(L) - A(idx))+ + total * (mass - A(L)), A the prefix sum of P.
    base = (model * (len(t.cpu_levels) + 1) + np.searchsorted(t.cpu_levels, cpu, "right")) * stride
    reach = prefix[base + np.searchsorted(levels, m1, side="right")]
    below = prefix[base[:, None] + idx]
    frag = (f * np.maximum(reach[:, None] - below, 0.0)).sum(axis=1) + total * (t.mass - reach)
    multi = []
    for count, share, levels_g, table_g in t.multi:
        fitting_cards = (f >= share).sum(axis=1)
        strand = (f * (f < share)).sum(axis=1)
        p = table_g[model, np.searchsorted(levels_g, cpu, side="right")]
        frag += np.where(fitting_cards >= count, p, 0.0) * (strand - total)
        multi.append((fitting_cards, strand))
    return _Terms(f, total, m1, c1, m2, cpu, model, idx, frag, tuple(multi))


class _RowTerms:
    """``_Terms`` of every ledger row, recomputed only for rows whose ``row_version`` moved
    since (one ledger and one workload at a time; another one starts afresh)."""

    __slots__ = ("seen", "stamp", "tables", "terms")

    def __init__(self) -> None:
        self.stamp: IntArray | None = None
        self.tables: _Tables | None = None
        self.seen: IntArray = np.zeros(0, dtype=np.int64)
        self.terms: _Terms | None = None

    def get(self, a: Arrays, r: IntArray, t: _Tables) -> _Terms:
        if self.stamp is not a.row_version or self.tables is not t or self.terms is None:
            # A new ledger, a grown one (new arrays) or another workload: start afresh.
            rows = np.arange(a.row_version.shape[0], dtype=np.int64)
            self.terms = _compute_terms(a, rows, t)
            self.stamp, self.tables = a.row_version, t
            self.seen = a.row_version.copy()
        else:
            stale = r[self.seen[r] != a.row_version[r]]
            if stale.size:
                fresh = _compute_terms(a, stale, t)
                for name in ("f", "total", "m1", "c1", "m2", "cpu", "model", "idx", "frag"):
                    getattr(self.terms, name)[stale] = getattr(fresh, name)
                for (cards, strand), (cards_new, strand_new) in zip(
                    self.terms.multi, fresh.multi, strict=True
                ):
                    cards[stale] = cards_new
                    strand[stale] = strand_new
                self.seen[stale] = a.row_version[stale]
        k = self.terms
        return _Terms(
            k.f[r],
            k.total[r],
            k.m1[r],
            k.c1[r],
            k.m2[r],
            k.cpu[r],
            k.model[r],
            k.idx[r],
            k.frag[r],
            tuple((cards[r], strand[r]) for cards, strand in k.multi),
        )


_ROW_TERMS = _RowTerms()


def reset_caches() -> None:
    """Forget every cached view (for benchmarks that time a cold decision)."""
    global _ROW_TERMS, _RECENT
    _ROW_TERMS = _RowTerms()
    _RECENT = _Recent()
    _TABLE_CACHE.clear()


def node_terms(a: Arrays, r: IntArray, workload: Workload) -> _Terms:
    """The per-node terms of ``fragmentation_deltas`` for rows ``r`` (cached per ledger row)."""
    return _ROW_TERMS.get(a, r, _tables(workload, a.models))


def fragmentation_deltas(
    a: Arrays,
    r: IntArray,
    c: ContainerRequest,
    fits: BoolArray,
    cpu_milli: int,
    workload: Workload,
    terms: _Terms | None = None,
) -> FloatArray:
    """Growth of each node's expected fragmentation (milli-cards) if ``c`` takes each GPU.

    Shape ``(len(r), width)``; ``inf`` where the GPU does not fit. For a multi-GPU container the
    growth is that of taking ``c.count`` GPUs of the smallest fitting free share (exact for whole
    cards), given to every fitting GPU of the node. Cards of a node equal in free share and in
    the share the pod would leave them are scored once. ``terms``: ``node_terms(a, r,
    workload)``, when the caller has them already.
    """
    t = _tables(workload, a.models)
    k = c.count
    if terms is None:
        terms = _ROW_TERMS.get(a, r, t)
    f, total, m1, c1, m2 = terms.f, terms.total, terms.m1, terms.c1, terms.m2
    cpu, model, idx, frag = terms.cpu, terms.model, terms.idx, terms.frag
    multi_before = terms.multi
    n_rows, width = f.shape
    mem_total = a.mem_total[r]
    mem_free = mem_total - a.mem_used[r]
    core_total = a.core_total[r]
    core_free = core_total - a.core_used[r]
    need = mem_total * c.memory_percent // 100 if not c.memory_mib else c.memory_mib
    after = np.minimum(
        (mem_free - need) * 1000 // np.maximum(mem_total, 1),
        (core_free - c.cores) * 1000 // np.maximum(core_total, 1),
    )
    f1_all = np.where(a.tenants[r] + 1 >= a.split[r], 0, np.clip(after, 0, 1000))
    levels = t.levels
    prefix = t.prefix.ravel()
    stride = len(levels) + 1

    # Candidates: per node, one fitting card per free share; for multi-GPU containers the
    # smallest fitting card per node.
    if k == 1:
        # same[n, j, i]: card i fits and has card j's free share before and after; the first
        # such card stands for all of them (same node, same shares: same growth).
        same = (
            (f[:, :, None] == f[:, None, :])
            & (f1_all[:, :, None] == f1_all[:, None, :])
            & fits[:, None, :]
        )
        first = same.argmax(axis=2)
        flat = np.flatnonzero((fits & (first == np.arange(width))).ravel())
    else:
        rows_fit = np.flatnonzero(fits.any(axis=1))
        cols = np.where(fits, f, 1 << 20)[rows_fit].argmin(axis=1)
        flat = rows_fit * width + cols
    n = flat // width
    f0 = f.ravel()[flat]
    f1 = f1_all.ravel()[flat]
    total_after = total[n] - k * (f0 - f1)
    top = np.where((f0 < m1[n]) | (c1[n] > k), m1[n], m2[n])
    max_after = np.maximum(f1, top)
    cpu_after = cpu[n] - cpu_milli
    model_n = model[n]
    base_after = (
        model_n * (len(t.cpu_levels) + 1) + np.searchsorted(t.cpu_levels, cpu_after, "right")
    ) * stride
    reach_after = prefix[base_after + np.searchsorted(levels, max_after, side="right")]
    below_after = prefix[base_after[:, None] + idx[n]]
    on_cards = (f[n] * np.maximum(reach_after[:, None] - below_after, 0.0)).sum(axis=1)
    below0 = prefix[base_after + np.searchsorted(levels, f0, side="right")]
    below1 = prefix[base_after + np.searchsorted(levels, f1, side="right")]
    on_cards += k * (
        f1 * np.maximum(reach_after - below1, 0.0) - f0 * np.maximum(reach_after - below0, 0.0)
    )
    frag_after = on_cards + total_after * (t.mass - reach_after)
    for (count, share, levels_g, table_g), (fitting_cards, strand) in zip(
        t.multi, multi_before, strict=True
    ):
        cards_after = fitting_cards[n] - k * ((f0 >= share).astype(np.int64) - (f1 >= share))
        strand_after = strand[n] - k * (f0 * (f0 < share) - f1 * (f1 < share))
        p = table_g[model_n, np.searchsorted(levels_g, cpu_after, side="right")]
        frag_after += np.where(cards_after >= count, p, 0.0) * (strand_after - total_after)
    delta = frag_after - frag[n]

    out = np.full(n_rows * width, np.inf)
    out[flat] = delta
    if k == 1:
        deltas = np.where(
            fits, out.reshape(n_rows, width)[np.arange(n_rows)[:, None], first], np.inf
        )
    else:
        by_row = np.full(n_rows, np.inf)
        by_row[n] = delta
        deltas = np.where(fits, by_row[:, None], np.inf)
    result: FloatArray = deltas
    return result
