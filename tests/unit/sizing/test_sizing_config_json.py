"""Reading a Hugging Face config.json into an architecture."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kantaloupe.api.errors import InvalidConfigError
from kantaloupe.sizing import Architecture, Precision, catalogue
from kantaloupe.sizing.config_json import architecture_from_config

# Qwen/Qwen2.5-7B-Instruct config.json (the fields we read, verbatim values).
QWEN25_7B: dict[str, Any] = {
    "architectures": ["Qwen2ForCausalLM"],
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "max_position_embeddings": 32768,
    "model_type": "qwen2",
    "num_attention_heads": 28,
    "num_hidden_layers": 28,
    "num_key_value_heads": 4,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "vocab_size": 152064,
}


def read(doc: dict[str, Any], **kwargs: Any) -> Architecture:
    return architecture_from_config(json.dumps(doc), name="m", where="config.json", **kwargs)


def test_reads_a_dense_model_like_the_catalogue() -> None:
    arch = read(QWEN25_7B)
    known = catalogue.find_model("qwen2.5-7b").architecture
    assert (arch.layers, arch.kv_heads, arch.head_dim) == (28, 4, 128)
    assert arch.dtype is Precision.BF16
    assert arch.parameters == pytest.approx(known.parameters, rel=0.01)
    assert arch.kv_elements_per_token == known.kv_elements_per_token


@pytest.mark.parametrize(
    ("quant", "expected"),
    [
        pytest.param({"quant_method": "awq", "bits": 4}, Precision.AWQ, id="awq"),
        pytest.param({"quant_method": "gptq", "bits": 4}, Precision.GPTQ, id="gptq-int4"),
        pytest.param({"quant_method": "gptq", "bits": 8}, Precision.GPTQ_INT8, id="gptq-int8"),
        pytest.param({"quant_method": "fp8"}, Precision.FP8, id="fp8"),
        pytest.param(
            {"quant_method": "bitsandbytes", "load_in_4bit": True}, Precision.INT4, id="bnb-4bit"
        ),
        pytest.param(
            {
                "quant_method": "compressed-tensors",
                "config_groups": {"group_0": {"weights": {"num_bits": 8, "type": "float"}}},
            },
            Precision.FP8,
            id="compressed-tensors-fp8",
        ),
    ],
)
def test_quantisation_config_sets_the_precision(quant: dict[str, Any], expected: Precision) -> None:
    assert read(QWEN25_7B | {"quantization_config": quant}).dtype is expected


def test_unknown_quantisation_is_refused_unless_dtype_is_given() -> None:
    doc = QWEN25_7B | {"quantization_config": {"quant_method": "exotic"}}
    with pytest.raises(InvalidConfigError, match="--dtype"):
        read(doc)
    assert read(doc, dtype=Precision.INT4).dtype is Precision.INT4


def test_mixture_of_experts_counts_every_expert() -> None:
    # mistralai/Mixtral-8x7B-v0.1 config.json
    doc = {
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_attention_heads": 32,
        "num_hidden_layers": 32,
        "num_key_value_heads": 8,
        "num_local_experts": 8,
        "num_experts_per_tok": 2,
        "vocab_size": 32000,
        "torch_dtype": "bfloat16",
    }
    arch = read(doc)
    assert arch.experts == 8
    assert arch.experts_per_token == 2
    assert arch.parameters == pytest.approx(46.7e9, rel=0.02)


def test_multimodal_config_uses_its_text_config() -> None:
    doc = {"architectures": ["LlavaForConditionalGeneration"], "text_config": QWEN25_7B}
    assert read(doc).layers == 28


def test_multi_head_latent_attention_caches_the_latent() -> None:
    doc = QWEN25_7B | {"kv_lora_rank": 512, "qk_rope_head_dim": 64}
    assert read(doc).kv_elements_per_token == 28 * (512 + 64)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        pytest.param({"hidden_size": 10}, "num_hidden_layers", id="missing-layers"),
        pytest.param(QWEN25_7B | {"num_hidden_layers": -1}, "positive", id="negative"),
        pytest.param(QWEN25_7B | {"torch_dtype": "complex64"}, "dtype", id="bad-dtype"),
        pytest.param(QWEN25_7B | {"num_hidden_layers": "28"}, "decode", id="string-count"),
    ],
)
def test_bad_configs_are_refused(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidConfigError, match=message):
        read(doc)


def test_not_json_is_refused() -> None:
    with pytest.raises(InvalidConfigError, match="does not decode"):
        architecture_from_config(b"{nope", name="m", where="config.json")
