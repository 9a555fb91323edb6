"""Read a Hugging Face style ``config.json`` into an :class:`Architecture`.

Reads the fields transformers' Llama, Qwen, Mistral, Mixtral, Gemma, Phi and DeepSeek configs
share; a multimodal config's ``text_config`` is used when present. The parameter count is
estimated from the shape, and untied embeddings are assumed when the file does not say
(the larger, safer answer).
"""

from __future__ import annotations

from typing import Any

import msgspec

from kantaloupe.api.errors import InvalidConfigError, shorten
from kantaloupe.sizing.architecture import (
    Architecture,
    Precision,
    estimate_parameters,
    parse_precision,
)

_FIX = "give the config.json of a decoder-only transformer, or size a catalogue model by name"


class QuantizationConfig(msgspec.Struct, frozen=True):
    quant_method: str | None = None
    bits: int | None = None
    w_bit: int | None = None
    load_in_4bit: bool | None = None
    load_in_8bit: bool | None = None
    quant_algo: str | None = None
    config_groups: dict[str, Any] | None = None


class HfConfig(msgspec.Struct, frozen=True):
    """The fields we read; every other field is ignored."""

    num_hidden_layers: int | None = None
    n_layer: int | None = None
    hidden_size: int | None = None
    n_embd: int | None = None
    num_attention_heads: int | None = None
    n_head: int | None = None
    num_key_value_heads: int | None = None
    head_dim: int | None = None
    vocab_size: int | None = None
    intermediate_size: int | None = None
    n_inner: int | None = None
    moe_intermediate_size: int | None = None
    shared_expert_intermediate_size: int | None = None
    n_shared_experts: int | None = None
    num_local_experts: int | None = None
    num_experts: int | None = None
    n_routed_experts: int | None = None
    num_experts_per_tok: int | None = None
    kv_lora_rank: int | None = None
    qk_rope_head_dim: int | None = None
    max_position_embeddings: int | None = None
    tie_word_embeddings: bool | None = None
    torch_dtype: str | None = None
    dtype: str | None = None
    quantization_config: QuantizationConfig | None = None
    text_config: HfConfig | None = None


_DECODER = msgspec.json.Decoder(HfConfig)


def architecture_from_config(
    raw: bytes | str, *, name: str, where: str, dtype: Precision | None = None
) -> Architecture:
    """The architecture ``raw`` describes; ``dtype`` overrides (and excuses) its quantisation."""
    try:
        top = _DECODER.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise InvalidConfigError(
            where, shorten(str(raw), 60), f"does not decode ({e})", _FIX
        ) from e
    cfg = top.text_config or top
    layers = _required(where, "num_hidden_layers", cfg.num_hidden_layers or cfg.n_layer)
    hidden = _required(where, "hidden_size", cfg.hidden_size or cfg.n_embd)
    heads = _required(where, "num_attention_heads", cfg.num_attention_heads or cfg.n_head)
    vocab = _required(where, "vocab_size", cfg.vocab_size or top.vocab_size)
    kv_heads = _positive(where, "num_key_value_heads", cfg.num_key_value_heads or heads)
    head_dim = _positive(where, "head_dim", cfg.head_dim or hidden // heads)
    experts = _positive(
        where, "num_experts", cfg.num_local_experts or cfg.num_experts or cfg.n_routed_experts or 1
    )
    dense_width = cfg.intermediate_size or cfg.n_inner or 4 * hidden
    width = cfg.moe_intermediate_size if experts > 1 and cfg.moe_intermediate_size else dense_width
    width = _positive(where, "intermediate_size", width)
    shared = cfg.shared_expert_intermediate_size or (cfg.n_shared_experts or 0) * width
    tied = bool(cfg.tie_word_embeddings if cfg.tie_word_embeddings is not None else False)
    params = estimate_parameters(
        layers=layers,
        hidden_size=hidden,
        attention_heads=heads,
        kv_heads=kv_heads,
        head_dim=head_dim,
        vocab_size=vocab,
        intermediate_size=width,
        tie_word_embeddings=tied,
        experts=experts,
        shared_intermediate_size=shared,
    )
    latent = (cfg.kv_lora_rank or 0) + (cfg.qk_rope_head_dim or 0) if cfg.kv_lora_rank else 0
    return Architecture(
        name=name,
        parameters=params,
        layers=layers,
        hidden_size=hidden,
        attention_heads=heads,
        kv_heads=min(kv_heads, heads),
        head_dim=head_dim,
        vocab_size=vocab,
        intermediate_size=width,
        dtype=dtype or _precision(where, top, cfg),
        tie_word_embeddings=tied,
        experts=experts,
        experts_per_token=min(experts, cfg.num_experts_per_tok or 1),
        max_context=max(0, cfg.max_position_embeddings or 0),
        kv_latent_dim=latent,
    )


def _required(where: str, field: str, value: int | None) -> int:
    if value is None:
        raise InvalidConfigError(f"{where}: {field}", None, "is missing", _FIX)
    return _positive(where, field, value)


def _positive(where: str, field: str, value: int) -> int:
    if not 1 <= value <= 2**31:
        raise InvalidConfigError(f"{where}: {field}", value, "must be a positive count", _FIX)
    return value


def _precision(where: str, top: HfConfig, cfg: HfConfig) -> Precision:
    quant = top.quantization_config or cfg.quantization_config
    if quant is not None:
        return _quantised(where, quant)
    text = top.torch_dtype or top.dtype or cfg.torch_dtype or cfg.dtype or "bfloat16"
    precision = parse_precision(text)
    if precision is None:
        raise InvalidConfigError(
            f"{where}: torch_dtype", text, "is not a known dtype", "pass --dtype to choose one"
        )
    return precision


def _quantised(where: str, quant: QuantizationConfig) -> Precision:
    method = (quant.quant_method or "").lower().replace("_", "-")
    bits = quant.bits or quant.w_bit or 4
    if method in ("awq", "awq-marlin"):
        return Precision.AWQ
    if method in ("gptq", "gptq-marlin"):
        return Precision.GPTQ_INT8 if bits == 8 else Precision.GPTQ
    if method in ("fp8", "fbgemm-fp8") or (quant.quant_algo or "").lower() == "fp8":
        return Precision.FP8
    if method == "bitsandbytes":
        return Precision.INT8 if quant.load_in_8bit else Precision.INT4
    if method == "mxfp4":
        return Precision.INT4
    if method == "compressed-tensors":
        return _compressed_tensors(quant.config_groups or {})
    raise InvalidConfigError(
        f"{where}: quantization_config.quant_method",
        quant.quant_method,
        "is not a quantisation we can size",
        "pass --dtype (e.g. int4, int8, fp8) to say how many bits a weight takes",
    )


def _compressed_tensors(groups: dict[str, Any]) -> Precision:
    for group in groups.values():
        weights = group.get("weights") if isinstance(group, dict) else None
        if isinstance(weights, dict):
            bits = weights.get("num_bits")
            kind = weights.get("type")
            if bits == 8:
                return Precision.FP8 if kind == "float" else Precision.INT8
            if bits == 4:
                return Precision.GPTQ
    return Precision.INT8
