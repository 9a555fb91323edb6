"""Placement policies and scoring weights, parsed from settings and per-pod annotations."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from kantaloupe.api import keys
from kantaloupe.api.errors import InvalidRequestError


class NodePolicy(enum.StrEnum):
    """How to choose among nodes that fit."""

    BINPACK = "binpack"
    SPREAD = "spread"


class GpuPolicy(enum.StrEnum):
    """How to choose among a node's GPUs that fit."""

    BINPACK = "binpack"
    SPREAD = "spread"
    TOPOLOGY_AWARE = "topology-aware"
    FRAGMENTATION = "fragmentation"
    """Keep whole cards and large holes free: best fit on partly used cards first."""


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
