"""A model's shape as the memory estimate needs it, and the number formats it may be stored in.

Pure values: the catalogue and the ``config.json`` reader build them, the estimator reads them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Precision(enum.StrEnum):
    """How weights (or the KV cache) are stored. The value is what users write."""

    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"
    FP8 = "fp8"
    INT8 = "int8"
    INT4 = "int4"
    AWQ = "awq"
    """4-bit AWQ, group size 128: a 16-bit scale and a 4-bit zero per group."""
    GPTQ = "gptq"
    """4-bit GPTQ, group size 128 (GPTQ-Int4)."""
    GPTQ_INT8 = "gptq-int8"

    @property
    def weight_bytes(self) -> float:
        """Bytes per quantised parameter, group scales and zeros included."""
        return _WEIGHT_BYTES[self]

    @property
    def is_quantised(self) -> bool:
        """Quantised checkpoints keep embeddings and the LM head in 16 bits."""
        return self not in (Precision.FP32, Precision.FP16, Precision.BF16)

    @property
    def compute_bytes(self) -> int:
        """Bytes per activation and, by default, per KV-cache element."""
        return 4 if self is Precision.FP32 else 2


_GROUP_OVERHEAD = (2 + 0.5) / 128
_WEIGHT_BYTES: dict[Precision, float] = {
    Precision.FP32: 4.0,
    Precision.FP16: 2.0,
    Precision.BF16: 2.0,
    Precision.FP8: 1.0,
    Precision.INT8: 1.0,
    Precision.INT4: 0.5,
    Precision.AWQ: 0.5 + _GROUP_OVERHEAD,
    Precision.GPTQ: 0.5 + _GROUP_OVERHEAD,
    Precision.GPTQ_INT8: 1.0 + _GROUP_OVERHEAD,
}

KV_PRECISIONS = (Precision.FP32, Precision.FP16, Precision.BF16, Precision.FP8)
"""Formats an engine can keep its KV cache in (``fp8`` is vLLM's ``--kv-cache-dtype fp8``)."""


def parse_precision(text: str) -> Precision | None:
    """The precision ``text`` names, accepting common spellings; None if unknown."""
    key = text.strip().lower().replace("_", "-")
    return _SPELLINGS.get(key)


_SPELLINGS: dict[str, Precision] = {p.value: p for p in Precision} | {
    "float32": Precision.FP32,
    "float": Precision.FP32,
    "float16": Precision.FP16,
    "half": Precision.FP16,
    "bfloat16": Precision.BF16,
    "float8": Precision.FP8,
    "fp8-e4m3": Precision.FP8,
    "e4m3": Precision.FP8,
    "w8a8": Precision.INT8,
    "int4-awq": Precision.AWQ,
    "awq-int4": Precision.AWQ,
    "gptq-int4": Precision.GPTQ,
    "gptq4": Precision.GPTQ,
    "gptq8": Precision.GPTQ_INT8,
    "nf4": Precision.INT4,
    "q4": Precision.INT4,
    "q8": Precision.INT8,
}


@dataclass(frozen=True, slots=True)
class Architecture:
    """A decoder-only transformer, in the terms of a Hugging Face ``config.json``."""

    name: str
    parameters: int
    """Total parameters, every expert of a mixture included (all must sit in GPU memory)."""
    layers: int
    hidden_size: int
    attention_heads: int
    kv_heads: int
    head_dim: int
    vocab_size: int
    intermediate_size: int
    """MLP width; for a mixture of experts, the width of one expert."""
    dtype: Precision = Precision.BF16
    """The format the checkpoint is published in."""
    tie_word_embeddings: bool = False
    experts: int = 1
    experts_per_token: int = 1
    max_context: int = 0
    """``max_position_embeddings``; 0 when unknown."""
    kv_latent_dim: int = 0
    """Multi-head latent attention (DeepSeek V2/V3): cached width per token and layer, else 0."""

    @property
    def embedding_parameters(self) -> int:
        """Input embedding plus LM head (one matrix when tied): kept in 16 bits when quantised."""
        return self.vocab_size * self.hidden_size * (1 if self.tie_word_embeddings else 2)

    @property
    def kv_elements_per_token(self) -> int:
        """KV-cache elements one token occupies across all layers (K and V)."""
        if self.kv_latent_dim:
            return self.layers * self.kv_latent_dim
        return 2 * self.layers * self.kv_heads * self.head_dim


def estimate_parameters(
    *,
    layers: int,
    hidden_size: int,
    attention_heads: int,
    kv_heads: int,
    head_dim: int,
    vocab_size: int,
    intermediate_size: int,
    tie_word_embeddings: bool,
    experts: int = 1,
    shared_intermediate_size: int = 0,
) -> int:
    """Parameters of a Llama-style decoder (gated MLP, GQA), for configs that do not state it.

    Within a few percent for Llama, Qwen, Mistral, Gemma and Phi; norms and biases are ignored.
    """
    attention = hidden_size * head_dim * (2 * attention_heads + 2 * kv_heads)
    mlp = 3 * hidden_size * (intermediate_size * experts + shared_intermediate_size)
    router = hidden_size * experts if experts > 1 else 0
    embeddings = vocab_size * hidden_size * (1 if tie_word_embeddings else 2)
    return layers * (attention + mlp + router) + embeddings
