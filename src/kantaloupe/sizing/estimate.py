"""GPU memory an inference server needs for a model and a workload, and the slice to ask for.

Per GPU (tensor parallelism splits weights, KV heads and activations across ``tensor_parallel``
cards)::

    weights      parameters × bytes per parameter (quantised formats keep embeddings in 16 bits)
    KV cache     2 × layers × kv_heads × head_dim × KV bytes × max_tokens × concurrency
    activations  the widest layer's buffers for one prefill chunk, plus fp32 logits per sequence
    engine       CUDA graphs, allocator slack, sampler buffers (``engine_reserve_mib``)
    context      the CUDA context and cuBLAS workspaces (``cuda_context_mib``)

The recommended ``nvidia.com/gpumem`` divides the total by ``gpu_utilization`` (an engine such
as vLLM only uses that share of the memory it sees) and rounds up to 256 MiB.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from kantaloupe.api.errors import InvalidRequestError
from kantaloupe.sizing.architecture import KV_PRECISIONS, Architecture, Precision

MIB = 1 << 20
ROUND_MIB = 256
"""Recommendations are multiples of this: coarse enough to read, fine enough to pack."""
MAX_TOKENS_LIMIT = 10_000_000
MAX_CONCURRENCY = 65_536
MAX_TENSOR_PARALLEL = 64
MAX_RESERVE_MIB = 1 << 20


@dataclass(frozen=True, slots=True)
class Workload:
    """What the server must hold at once. Field names match the annotation's keys."""

    max_tokens: int = 4096
    """Tokens per sequence, prompt and output together (vLLM's ``--max-model-len``)."""
    concurrency: int = 1
    """Sequences whose KV cache is resident at the same time (vLLM's ``--max-num-seqs``)."""
    precision: Precision | None = None
    """Weight format; None: the checkpoint's own."""
    kv_precision: Precision | None = None
    """KV-cache format; None: 16 bits (32 for fp32 weights)."""
    tensor_parallel: int = 1
    """GPUs the model is split across; the estimate is per GPU."""
    prefill_chunk_tokens: int = 8192
    """Tokens processed in one forward pass (vLLM's ``--max-num-batched-tokens``)."""
    engine_reserve_mib: int = 1024
    cuda_context_mib: int = 512
    gpu_utilization: float = 1.0
    """Share of the slice the engine lets itself use (vLLM's ``--gpu-memory-utilization``)."""

    def __post_init__(self) -> None:
        _check_range("max-tokens", self.max_tokens, 1, MAX_TOKENS_LIMIT)
        _check_range("concurrency", self.concurrency, 1, MAX_CONCURRENCY)
        _check_range("tensor-parallel", self.tensor_parallel, 1, MAX_TENSOR_PARALLEL)
        _check_range("prefill-chunk", self.prefill_chunk_tokens, 1, MAX_TOKENS_LIMIT)
        _check_range("engine-reserve", self.engine_reserve_mib, 0, MAX_RESERVE_MIB)
        _check_range("cuda-context", self.cuda_context_mib, 0, MAX_RESERVE_MIB)
        if not 0.05 <= self.gpu_utilization <= 1.0 or math.isnan(self.gpu_utilization):
            raise InvalidRequestError(
                "gpu-utilization",
                self.gpu_utilization,
                "must be between 0.05 and 1",
                "give the engine's memory share, e.g. 0.9 for vLLM's default",
            )
        if self.kv_precision is not None and self.kv_precision not in KV_PRECISIONS:
            raise InvalidRequestError(
                "kv-dtype",
                self.kv_precision.value,
                "is not a KV-cache format",
                f"use one of {', '.join(p.value for p in KV_PRECISIONS)}",
            )


def _check_range(where: str, value: int, low: int, high: int) -> None:
    if isinstance(value, bool) or not low <= value <= high:
        raise InvalidRequestError(
            where,
            value,
            f"must be a whole number from {low} to {high}",
            f"set {where} in that range",
        )


@dataclass(frozen=True, slots=True)
class Estimate:
    """Memory one GPU needs, part by part, in bytes; and the slice to request."""

    architecture: Architecture
    workload: Workload
    precision: Precision
    kv_precision: Precision
    weights_bytes: int
    kv_cache_bytes: int
    activations_bytes: int
    engine_reserve_bytes: int
    cuda_context_bytes: int
    kv_bytes_per_token: int
    """Per GPU, across all layers."""

    @property
    def total_bytes(self) -> int:
        return (
            self.weights_bytes
            + self.kv_cache_bytes
            + self.activations_bytes
            + self.engine_reserve_bytes
            + self.cuda_context_bytes
        )

    @property
    def gpumem_mib(self) -> int:
        """The ``nvidia.com/gpumem`` to request per GPU: total ÷ utilisation, up to 256 MiB."""
        needed_mib = math.ceil(self.total_bytes / self.workload.gpu_utilization / MIB)
        return max(ROUND_MIB, math.ceil(needed_mib / ROUND_MIB) * ROUND_MIB)

    def parts_mib(self) -> dict[str, int]:
        """The breakdown in MiB (each part rounded up), for people and JSON."""
        return {
            "weights": to_mib(self.weights_bytes),
            "kv_cache": to_mib(self.kv_cache_bytes),
            "activations": to_mib(self.activations_bytes),
            "engine_reserve": to_mib(self.engine_reserve_bytes),
            "cuda_context": to_mib(self.cuda_context_bytes),
            "total": to_mib(self.total_bytes),
        }


def to_mib(n_bytes: int) -> int:
    return math.ceil(n_bytes / MIB)


def weights_bytes(arch: Architecture, precision: Precision) -> int:
    """All weights on one card: quantised formats keep embeddings and LM head in 16 bits."""
    if not precision.is_quantised:
        return math.ceil(arch.parameters * precision.weight_bytes)
    embeddings = min(arch.embedding_parameters, arch.parameters)
    body = arch.parameters - embeddings
    return math.ceil(body * precision.weight_bytes) + embeddings * 2


def kv_bytes_per_token(arch: Architecture, kv_precision: Precision, tensor_parallel: int) -> int:
    """KV cache one token needs on one GPU; KV heads split across GPUs, never below one."""
    if arch.kv_latent_dim:
        elements = arch.layers * arch.kv_latent_dim
    else:
        heads = math.ceil(arch.kv_heads / tensor_parallel)
        elements = 2 * arch.layers * heads * arch.head_dim
    return elements * int(kv_precision.weight_bytes)


def activations_bytes(arch: Architecture, workload: Workload, compute_bytes: int) -> int:
    """Peak transient buffers: one prefill chunk through the widest layer, plus logits."""
    chunk = min(workload.max_tokens * workload.concurrency, workload.prefill_chunk_tokens)
    per_token = (
        4 * arch.hidden_size
        + (arch.attention_heads + 2 * arch.kv_heads) * arch.head_dim
        + 3 * arch.intermediate_size * arch.experts_per_token
    )
    layer = math.ceil(chunk * per_token * compute_bytes / workload.tensor_parallel)
    logits = workload.concurrency * arch.vocab_size * 4 * 2
    return layer + logits


def estimate(arch: Architecture, workload: Workload) -> Estimate:
    """The memory ``arch`` needs per GPU to serve ``workload``."""
    precision = workload.precision or arch.dtype
    kv_precision = workload.kv_precision or (
        precision
        if precision in KV_PRECISIONS and precision is not Precision.FP8
        else Precision.BF16
    )
    tp = workload.tensor_parallel
    per_token = kv_bytes_per_token(arch, kv_precision, tp)
    return Estimate(
        architecture=arch,
        workload=workload,
        precision=precision,
        kv_precision=kv_precision,
        weights_bytes=math.ceil(weights_bytes(arch, precision) / tp),
        kv_cache_bytes=per_token * workload.max_tokens * workload.concurrency,
        activations_bytes=activations_bytes(arch, workload, precision.compute_bytes),
        engine_reserve_bytes=workload.engine_reserve_mib * MIB,
        cuda_context_bytes=workload.cuda_context_mib * MIB,
        kv_bytes_per_token=per_token,
    )
