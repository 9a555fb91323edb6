"""Why a GPU or a node does not fit, and how to say it to a user."""

from __future__ import annotations

import enum
from collections import Counter


class Reason(enum.IntEnum):
    """Per-GPU reasons in the order they are checked (the first that applies is reported)."""

    FITS = 0
    UNHEALTHY = 1
    CORDONED = 2
    TYPE_MISMATCH = 3
    UUID_MISMATCH = 4
    SLOTS_EXHAUSTED = 5
    INSUFFICIENT_MEMORY = 6
    INSUFFICIENT_CORES = 7
    EXCLUSIVE_CONFLICT = 8
    CORES_FULL = 9
    ABSENT = 10
    """Padding column: no GPU there (never reported)."""
    HANDOFF_IN_FLIGHT = 11
    """Its last pod is still being handed to kubelet (avoided only while others fit)."""


DEVICE_TEXT = {
    Reason.UNHEALTHY: "unhealthy",
    Reason.CORDONED: "cordoned",
    Reason.TYPE_MISMATCH: "type mismatch",
    Reason.UUID_MISMATCH: "UUID mismatch",
    Reason.SLOTS_EXHAUSTED: "all sharing slots taken",
    Reason.INSUFFICIENT_MEMORY: "insufficient memory",
    Reason.INSUFFICIENT_CORES: "insufficient cores",
    Reason.EXCLUSIVE_CONFLICT: "in use (exclusive request)",
    Reason.CORES_FULL: "cores fully allocated",
    Reason.HANDOFF_IN_FLIGHT: "hand-off in flight",
}


class NodeReason(enum.StrEnum):
    """Reasons that concern a whole node; values are the user-facing text."""

    NOT_REGISTERED = "no GPUs registered by the node agent"
    NOT_SCHEDULABLE = "node agent not ready or node cordoned"
    TOO_FEW_GPUS = "too few fitting GPUs"
    NUMA = "too few fitting GPUs on one NUMA node"
    CPU = "insufficient CPU"
    MEMORY = "insufficient node memory"
    CONTAINERS = "containers do not fit together"


def describe_devices(counts: Counter[Reason], total: int, needed: int) -> str:
    """``"3/8 insufficient memory, 5/8 type mismatch"`` (most frequent first)."""
    parts = [
        f"{n}/{total} {DEVICE_TEXT[r]}"
        for r, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        if r not in (Reason.FITS, Reason.ABSENT)
    ]
    fitting = counts.get(Reason.FITS, 0)
    if fitting:
        parts.append(f"{fitting}/{total} fit but {needed} needed")
    return ", ".join(parts) or NodeReason.TOO_FEW_GPUS.value


def summarize(failed: dict[str, str], total: int) -> str:
    """The aggregate users see in an event: ``0/5 nodes fit: 3× …; 2× …``."""
    by_reason = Counter(failed.values())
    fitting = total - len(failed)
    head = f"{fitting}/{total} nodes fit"
    if not by_reason:
        return head
    groups = sorted(by_reason.items(), key=lambda kv: -kv[1])
    return head + ": " + "; ".join(f"{n} node(s) {text}" for text, n in groups[:5])
