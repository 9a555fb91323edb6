"""The bundled model and GPU catalogues: they load, they agree with themselves, lookups help."""

from __future__ import annotations

import pytest

from kantaloupe.api.errors import InvalidRequestError
from kantaloupe.sizing import Architecture, Precision, catalogue
from kantaloupe.sizing.architecture import estimate_parameters

REQUIRED = [
    "llama-3.1-8b",
    "llama-3.1-70b",
    "llama-3.2-1b",
    "llama-3.2-3b",
    "qwen2.5-0.5b-instruct",
    "qwen2.5-1.5b-instruct",
    "qwen2.5-7b-instruct",
    "qwen2.5-14b-instruct",
    "qwen2.5-32b-instruct",
    "qwen2.5-72b-instruct",
    "mistral-7b",
    "mixtral-8x7b",
    "gemma-2-2b",
    "gemma-2-9b",
    "gemma-2-27b",
    "phi-3-mini",
    "deepseek-r1-distill-qwen-7b",
]


@pytest.mark.parametrize("name", REQUIRED)
def test_popular_models_are_catalogued(name: str) -> None:
    assert catalogue.find_model(name).architecture.parameters > 0


@pytest.mark.parametrize("arch", catalogue.models(), ids=lambda a: a.name)
def test_published_parameter_counts_agree_with_the_shape(arch: Architecture) -> None:
    estimated = estimate_parameters(
        layers=arch.layers,
        hidden_size=arch.hidden_size,
        attention_heads=arch.attention_heads,
        kv_heads=arch.kv_heads,
        head_dim=arch.head_dim,
        vocab_size=arch.vocab_size,
        intermediate_size=arch.intermediate_size,
        tie_word_embeddings=arch.tie_word_embeddings,
        experts=arch.experts,
    )
    assert estimated == pytest.approx(arch.parameters, rel=0.03)
    assert arch.kv_heads <= arch.attention_heads
    assert arch.attention_heads % arch.kv_heads == 0


@pytest.mark.parametrize(
    ("name", "canonical", "implied"),
    [
        pytest.param("Qwen/Qwen2.5-7B-Instruct", "qwen2.5-7b", None, id="hf-repo-id"),
        pytest.param("meta-llama/Meta-Llama-3.1-8B-Instruct", "llama-3.1-8b", None, id="meta-"),
        pytest.param("qwen2.5-7b-instruct-awq", "qwen2.5-7b", Precision.AWQ, id="awq-suffix"),
        pytest.param("Qwen2.5-72B-Instruct-GPTQ-Int4", "qwen2.5-72b", Precision.GPTQ, id="gptq"),
        pytest.param("llama-3.1-70b-instruct-fp8", "llama-3.1-70b", Precision.FP8, id="fp8"),
        pytest.param("Llama 3.3 70B Instruct", "llama-3.1-70b", None, id="spaces"),
    ],
)
def test_names_normalise(name: str, canonical: str, implied: Precision | None) -> None:
    choice = catalogue.find_model(name)
    assert choice.architecture.name == canonical
    assert choice.implied_precision is implied


def test_unknown_model_suggests_close_names() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        catalogue.find_model("qwen2.5-8b-instruct")
    message = str(caught.value)
    assert "qwen2.5-7b-instruct" in message
    assert "--list-models" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("RTX 4090", "RTX 4090", id="short"),
        pytest.param("NVIDIA GeForce RTX 4090", "RTX 4090", id="nvml-name"),
        pytest.param("4090", "RTX 4090", id="number"),
        pytest.param("NVIDIA A100-SXM4-80GB", "A100 80GB", id="a100-sxm"),
        pytest.param("Tesla T4", "T4", id="tesla"),
        pytest.param("NVIDIA H100 80GB HBM3", "H100 80GB", id="h100"),
        pytest.param("h200", "H200", id="lower"),
    ],
)
def test_gpu_names_resolve(text: str, expected: str) -> None:
    gpu = catalogue.find_gpu(text)
    assert gpu is not None
    assert gpu.name == expected


@pytest.mark.parametrize("text", ["A100", "", "GTX 9999"], ids=["ambiguous", "empty", "unknown"])
def test_gpu_names_that_do_not_resolve(text: str) -> None:
    assert catalogue.find_gpu(text) is None


def test_gpu_catalogue_memory_is_nvml_mib() -> None:
    memory = {g.name: g.memory_mib for g in catalogue.gpu_models()}
    assert memory["RTX 4090"] < 24 * 1024 + 1
    assert memory["H200"] > 140 * 1024
    assert memory["A100 80GB"] == 81920
