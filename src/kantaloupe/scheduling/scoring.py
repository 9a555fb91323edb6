"""Scoring policies: how nodes are ranked and how a node's GPUs are ordered.

Node score (HAMi's, before placement): the node's used share of sharing slots + of cores + of
memory. ``binpack`` prefers the fullest node, ``spread`` the emptiest.

GPU score (HAMi's): ``w_slot·(tenants+1)/split + w_core·(used+req)/total + w_mem·(used+req)/total``;
``binpack`` prefers the highest, ``spread`` the lowest. Ties go to the GPU that leaves the smallest
hole (best fit), which keeps larger holes free for larger requests. ``fragmentation`` goes further:
cards already shared first, then best fit, so whole cards stay whole as long as possible.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from kantaloupe.scheduling.ledger import Arrays, BoolArray, IntArray
from kantaloupe.scheduling.policy import GpuPolicy, NodePolicy, Weights
from kantaloupe.scheduling.requests import PodRequest

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
) -> IntArray:
    """Indexes into ``rows`` of the feasible nodes, best first."""
    r = rows[feasible]
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
