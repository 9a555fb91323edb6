"""Placement policies and scoring weights, parsed from settings and per-pod annotations."""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from kantaloupe.api import keys
from kantaloupe.api.errors import InvalidRequestError


class NodePolicy(enum.StrEnum):
    """How to choose among nodes that fit."""

    BINPACK = "binpack"
    SPREAD = "spread"
    BEST_FIT = "best-fit"
    """The node left with the least free CPU and GPU share (equal weights), as in Weng et al."""
    FRAGMENTATION_GRADIENT = "fragmentation-gradient"
    """Node and GPU that least increase the node's expected fragmentation (FGD, Weng et al.,
    ATC '23) w.r.t. a workload distribution, nudged by best fit. Chooses the GPU jointly."""


class GpuPolicy(enum.StrEnum):
    """How to choose among a node's GPUs that fit."""

    BINPACK = "binpack"
    SPREAD = "spread"
    TOPOLOGY_AWARE = "topology-aware"
    FRAGMENTATION = "fragmentation"
    """Keep whole cards and large holes free: best fit on partly used cards first."""


@dataclass(frozen=True, slots=True)
class TaskShape:
    """One kind of task in a workload distribution, for fragmentation-aware policies."""

    weight: float
    """Relative frequency (any positive scale; normalised over the GPU shapes)."""
    count: int
    """GPUs per task; 0 for CPU-only tasks (they never change which node is best)."""
    share_milli: int
    """Share of each GPU, 1-1000 (1000 = a whole card)."""
    cpu_milli: int = 0
    types: tuple[str, ...] = ()
    """Acceptable GPU models (exact, case-insensitive); empty = any."""


@dataclass(frozen=True, slots=True)
class Workload:
    """The task mix a fragmentation-aware policy expects to arrive next.

    The benchmark learns it from the trace it replays (``Workload.from_counts``); the live
    scheduler uses ``DEFAULT_WORKLOAD`` unless settings give another one.
    """

    shapes: tuple[TaskShape, ...]

    @classmethod
    def from_counts(cls, counts: dict[tuple[int, int, int, tuple[str, ...]], int]) -> Workload:
        """From ``{(count, share_milli, cpu_milli, types): tasks}``, most frequent first."""
        ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        return cls(
            tuple(
                TaskShape(float(n), count, share, cpu, types)
                for (count, share, cpu, types), n in ordered
                if n > 0
            )
        )

    def reweighted(self, volume_exponent: float) -> Workload:
        """Each GPU shape's weight times (GPUs × share in cards) ** ``volume_exponent``.

        0 keeps task counts, 1 weighs by GPU volume; below 0 favours small tasks, whose holes
        are what the last percent of a full cluster is filled with. CPU-only shapes are dropped
        (they never change which node is best).
        """
        return Workload(
            tuple(
                replace(s, weight=s.weight * (s.count * s.share_milli / 1000) ** volume_exponent)
                for s in self.shapes
                if s.count > 0 and s.share_milli > 0
            )
        )


WORKLOAD_VOLUME_EXPONENT = -1.5
"""How a fragmentation-aware policy weighs a task mix (``Workload.reweighted``): task count
times GPU volume ** -1.5, so small tasks weigh far more than their count. On the openb trace
this packs best of the exponents tried (1, 0.5, 0 as the paper, -0.5, -1, -1.5, -2; tuned on
seeds 0-9, docs/openb.md): small tasks are what fills the holes the large ones leave in a full
cluster, so the holes they fit are the ones worth keeping."""

OPENB_MIX = Workload(
    (
        # The GPU-share mix of Alibaba's openb trace (2023): percent of its GPU tasks, by task
        # count. CPU left out because it varies by site. A whole card is the most common ask,
        # then 0.81 and ~0.5 cards.
        TaskShape(55.4, 1, 1000),
        TaskShape(15.3, 1, 810),
        TaskShape(10.6, 1, 470),
        TaskShape(4.6, 1, 320),
        TaskShape(3.6, 1, 650),
        TaskShape(2.0, 1, 230),
        TaskShape(1.8, 1, 460),
        TaskShape(1.1, 1, 590),
        TaskShape(1.0, 1, 160),
        TaskShape(1.0, 1, 550),
        TaskShape(0.9, 1, 220),
        TaskShape(0.7, 1, 370),
        TaskShape(0.3, 1, 110),
        TaskShape(0.3, 1, 480),
        TaskShape(0.1, 1, 50),
        TaskShape(0.6, 8, 1000),
        TaskShape(0.2, 2, 1000),
        TaskShape(0.2, 4, 1000),
    )
)
DEFAULT_WORKLOAD = OPENB_MIX.reweighted(WORKLOAD_VOLUME_EXPONENT)
"""Used when no workload is configured: the openb mix, a typical sharing cluster's, weighed
for fragmentation-aware policies."""


@dataclass(frozen=True, slots=True)
class Weights:
    """``hami.io/device-scoring-weights``: how much each resource counts in a GPU's score."""

    slot: int = 1
    core: int = 1
    memory: int = 1


def parse_node_policy(raw: str, where: str = keys.NODE_SCHEDULER_POLICY) -> NodePolicy:
    try:
        return NodePolicy(raw.strip().lower())
    except ValueError:
        raise InvalidRequestError(
            where, raw, "is not a node policy", f"use one of {', '.join(NodePolicy)}"
        ) from None


def parse_gpu_policy(raw: str, where: str = keys.GPU_SCHEDULER_POLICY) -> GpuPolicy:
    """One policy; HAMi's comma chains keep their first sort key (``binpack,numa`` → binpack)."""
    first = raw.split(",")[0].strip().lower()
    if first == "numa":
        return GpuPolicy.SPREAD
    try:
        return GpuPolicy(first)
    except ValueError:
        raise InvalidRequestError(
            where, raw, "is not a GPU policy", f"use one of {', '.join(GpuPolicy)}"
        ) from None


def parse_weights(raw: str) -> Weights:
    where = keys.DEVICE_SCORING_WEIGHTS
    fix = "write slot=<int>,core=<int>,memory=<int> with at least one above 0"
    values: dict[str, int] = {}
    for part in raw.split(","):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in ("slot", "core", "memory") or name in values:
            raise InvalidRequestError(where, raw, f"has a bad entry {part.strip()!r}", fix)
        if not value.strip().isdigit() or int(value) > 1000:
            raise InvalidRequestError(where, raw, f"{name} must be an integer 0-1000", fix)
        values[name] = int(value)
    if len(values) != 3 or not any(values.values()):
        raise InvalidRequestError(where, raw, "needs slot, core and memory", fix)
    return Weights(slot=values["slot"], core=values["core"], memory=values["memory"])
