"""The estimator against memory figures published for real models (each within ±10 %).

Weights and KV cache are the parts vendors publish; the rest (activations, reserve, context) is
engine-specific and covered by the properties and the CLI tests.
"""

from __future__ import annotations

import pytest

from kantaloupe.sizing import Precision, Workload, estimate, find_model
from kantaloupe.sizing.estimate import weights_bytes

GB = 10**9
GIB = 2**30
TOLERANCE = 0.10

LLAMA31 = "https://huggingface.co/blog/llama31#inference-memory-requirements"
MIXTRAL_FP16 = (
    "https://huggingface.co/blog/mixtral: 'Mixtral requires 90GB of VRAM in half-precision' "
    "(quoted by https://www.hardware-corner.net/mixtral-8x7b-hefty-vram-needs/)"
)
MIXTRAL_Q = "https://canitrun.dev/models/mixtral-8x7b/ (weights: Q8 46.7 GB, Q4_K_M 23.4 GB)"
LLAMA32_1B = "https://canitrun.dev/models/llama-3.2-1b (weights at FP16: 2.5 GB)"
LLAMA32_3B = "https://llmrun.dev/model/1024m-llama-3-2-3b-base (BF16 file size: 6.43 GB)"


@pytest.mark.parametrize(
    ("model", "precision", "published_gb", "source"),
    [
        pytest.param("llama-3.1-8b", Precision.BF16, 16, LLAMA31, id="llama-3.1-8b-bf16"),
        pytest.param("llama-3.1-70b", Precision.BF16, 140, LLAMA31, id="llama-3.1-70b-bf16"),
        pytest.param("llama-3.1-70b", Precision.FP8, 70, LLAMA31, id="llama-3.1-70b-fp8"),
        pytest.param("llama-3.2-1b", Precision.BF16, 2.5, LLAMA32_1B, id="llama-3.2-1b-bf16"),
        pytest.param("llama-3.2-3b", Precision.BF16, 6.43, LLAMA32_3B, id="llama-3.2-3b-bf16"),
        pytest.param("mixtral-8x7b", Precision.FP16, 90, MIXTRAL_FP16, id="mixtral-fp16"),
        pytest.param("mixtral-8x7b", Precision.INT8, 46.7, MIXTRAL_Q, id="mixtral-int8"),
        pytest.param("mixtral-8x7b", Precision.INT4, 23.4, MIXTRAL_Q, id="mixtral-int4"),
        pytest.param(
            "qwen2.5-7b-instruct",
            Precision.BF16,
            15.23,
            "https://huggingface.co/Qwen/Qwen2.5-7B-Instruct/tree/main (4 safetensors shards, "
            "15.23 GB; model card: 7.61B parameters, BF16)",
            id="qwen2.5-7b-bf16",
        ),
        pytest.param(
            "gemma-2-9b-it",
            Precision.BF16,
            18.5,
            "https://huggingface.co/google/gemma-2-9b-it/tree/main (safetensors, 9.24B "
            "parameters in BF16, 18.5 GB)",
            id="gemma-2-9b-bf16",
        ),
        pytest.param(
            "phi-3-mini-4k-instruct",
            Precision.BF16,
            7.64,
            "https://huggingface.co/microsoft/Phi-3-mini-4k-instruct/tree/main (2 safetensors "
            "shards, 7.64 GB; 3.8B parameters)",
            id="phi-3-mini-bf16",
        ),
    ],
)
def test_weights_match_published_sizes(
    model: str, precision: Precision, published_gb: float, source: str
) -> None:
    arch = find_model(model).architecture
    estimated_gb = weights_bytes(arch, precision) / GB
    assert estimated_gb == pytest.approx(published_gb, rel=TOLERANCE), source


@pytest.mark.parametrize(
    ("model", "tokens", "published_gib"),
    [
        # LLAMA31 KV-cache table (FP16): 8B 1.95 GB at 16k and 15.62 GB at 128k tokens; 70B
        # 4.88 GB at 16k and 39.06 GB at 128k ("16k" = 16,000 tokens, sizes in GiB; see
        # https://github.com/huggingface/blog/issues/2345 for the arithmetic).
        pytest.param("llama-3.1-8b", 16_000, 1.95, id="llama-3.1-8b-16k"),
        pytest.param("llama-3.1-8b", 128_000, 15.62, id="llama-3.1-8b-128k"),
        pytest.param("llama-3.1-70b", 16_000, 4.88, id="llama-3.1-70b-16k"),
        pytest.param("llama-3.1-70b", 128_000, 39.06, id="llama-3.1-70b-128k"),
    ],
)
def test_kv_cache_matches_published_sizes(model: str, tokens: int, published_gib: float) -> None:
    arch = find_model(model).architecture
    result = estimate(arch, Workload(max_tokens=tokens, kv_precision=Precision.FP16))
    assert result.kv_cache_bytes / GIB == pytest.approx(published_gib, rel=TOLERANCE), LLAMA31


def test_fp8_kv_cache_halves_it() -> None:
    arch = find_model("qwen2.5-7b").architecture
    full = estimate(arch, Workload(max_tokens=8192, concurrency=4))
    half = estimate(arch, Workload(max_tokens=8192, concurrency=4, kv_precision=Precision.FP8))
    assert half.kv_cache_bytes * 2 == full.kv_cache_bytes
    # Qwen2.5-7B: 2 × 28 layers × 4 KV heads × 128 × 2 bytes = 56 KiB per token.
    assert full.kv_bytes_per_token == 56 * 1024


def test_quantised_formats_keep_embeddings_in_16_bits() -> None:
    arch = find_model("llama-3.1-8b").architecture
    embeddings = arch.embedding_parameters
    fp8 = weights_bytes(arch, Precision.FP8)
    assert fp8 == (arch.parameters - embeddings) + embeddings * 2
    assert weights_bytes(arch, Precision.AWQ) < fp8 < weights_bytes(arch, Precision.BF16)


def test_total_matches_a_published_calculator() -> None:
    # https://canitrun.dev/models/llama-3.1-8b: FP16 at 8k context, weights 16.0 GB +
    # KV cache 1.07 GB + overhead = 19.1 GB in total.
    arch = find_model("llama-3.1-8b-instruct").architecture
    result = estimate(arch, Workload(max_tokens=8192, precision=Precision.FP16))
    assert result.kv_cache_bytes / GB == pytest.approx(1.07, rel=TOLERANCE)
    assert result.total_bytes / GB == pytest.approx(19.1, rel=TOLERANCE)
