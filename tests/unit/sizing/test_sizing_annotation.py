"""The kantaloupe.io/llm annotation: parsing, the decision, and the refusals."""

from __future__ import annotations

import pytest

from kantaloupe.api import keys
from kantaloupe.api.errors import InvalidRequestError
from kantaloupe.api.sizing import decode_sizing, encode_sizing
from kantaloupe.sizing import GpuModel, Precision, decide_from_annotation, parse_llm_annotation

RTX_4090 = GpuModel("RTX 4090", 24564)
T4 = GpuModel("T4", 15360)
H100 = GpuModel("H100 80GB", 81559)


def test_parses_every_knob() -> None:
    request = parse_llm_annotation(
        " model=qwen2.5-7b-instruct, dtype=BF16 ,max-tokens=8k,concurrency=4,kv-dtype=fp8,"
        "tensor-parallel=2,prefill-chunk=4096,engine-reserve=2Gi,cuda-context=300,"
        "gpu-utilization=0.9,"
    )
    w = request.workload
    assert request.model == "qwen2.5-7b-instruct"
    assert (w.precision, w.kv_precision) == (Precision.BF16, Precision.FP8)
    assert (w.max_tokens, w.concurrency, w.tensor_parallel) == (8192, 4, 2)
    assert (w.prefill_chunk_tokens, w.engine_reserve_mib, w.cuda_context_mib) == (4096, 2048, 300)
    assert w.gpu_utilization == 0.9


def test_decides_gpumem_and_records_it() -> None:
    text = "model=qwen2.5-7b-instruct,dtype=bf16,max-tokens=8192,concurrency=4"
    decision = decide_from_annotation(text, [T4, RTX_4090, H100])
    assert decision.gpumem_mib % 256 == 0
    assert 16_000 < decision.gpumem_mib < 24_564
    assert decision.gpus == 1
    assert [f.per_card for f in decision.fits] == [0, 1, 4]
    record = decision.record
    assert record.gpumem_mib == decision.gpumem_mib
    assert record.fits == ("RTX 4090", "H100 80GB")
    assert record.total_mib <= record.gpumem_mib
    assert decode_sizing(encode_sizing(record)) == record


def test_an_unknown_cluster_never_refuses_for_fit() -> None:
    decision = decide_from_annotation("model=llama-3.1-70b,max-tokens=131072,concurrency=8", [])
    assert decision.fits == ()
    assert decision.record.fits == ()
    assert decision.gpumem_mib > 200_000


def test_name_suffix_sets_dtype_unless_given() -> None:
    assert decide_from_annotation("model=qwen2.5-7b-instruct-awq", []).record.dtype == "awq"
    text = "model=qwen2.5-7b-instruct-awq,dtype=int4"
    assert decide_from_annotation(text, []).record.dtype == "int4"


def test_tensor_parallel_sizes_each_gpu() -> None:
    one = decide_from_annotation("model=llama-3.1-70b,max-tokens=8192", [])
    two = decide_from_annotation("model=llama-3.1-70b,max-tokens=8192,tensor-parallel=2", [])
    assert two.gpus == 2
    assert two.gpumem_mib < one.gpumem_mib * 0.6


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        pytest.param("", "names no model", id="empty"),
        pytest.param("dtype=bf16", "names no model", id="no-model"),
        pytest.param("model", "is not key=value", id="bare-word"),
        pytest.param("model=", "is not key=value", id="empty-value"),
        pytest.param(
            "model=qwen2.5-7b;dtype=bf16", "is not in the model catalogue", id="semicolon"
        ),
        pytest.param("model=a,model=b", "given twice", id="duplicate"),
        pytest.param("model=qwen2.5-7b,tokens=8192", "not a known key", id="unknown-key"),
        pytest.param("model=qwen2.5-7b,max-tokens=lots", "give a whole number", id="nan-tokens"),
        pytest.param("model=qwen2.5-7b,max-tokens=0", "from 1 to", id="zero-tokens"),
        pytest.param("model=qwen2.5-7b,concurrency=-1", "not valid", id="negative"),
        pytest.param("model=qwen2.5-7b,dtype=fp4096", "not valid", id="bad-dtype"),
        pytest.param("model=qwen2.5-7b,kv-dtype=awq", "not a KV-cache format", id="kv-awq"),
        pytest.param("model=qwen2.5-7b,gpu-utilization=1.5", "not valid", id="util-over-1"),
        pytest.param("model=qwen2.5-7b,gpu-utilization=0.01", "between 0.05", id="util-tiny"),
        pytest.param("model=qwen2.5-7b,tensor-parallel=100", "from 1 to 64", id="tp-100"),
        pytest.param("model=" + "x" * 2000, "longer than", id="too-long"),
    ],
)
def test_malformed_text_is_refused(text: str, fragment: str) -> None:
    with pytest.raises(InvalidRequestError, match=fragment) as caught:
        decide_from_annotation(text, [])
    assert caught.value.where.startswith(keys.LLM)


def test_unknown_model_is_refused_with_suggestions() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        decide_from_annotation("model=qwen2.5-7b-instruc", [RTX_4090])
    assert "did you mean qwen2.5-7b-instruct" in str(caught.value)
    assert caught.value.where == f"{keys.LLM}: model"


@pytest.mark.parametrize(
    ("text", "fleet"),
    [
        pytest.param("model=llama-3.1-70b", [RTX_4090, T4], id="70b-on-small-cards"),
        pytest.param("model=qwen2.5-7b,max-tokens=32768,concurrency=16", [RTX_4090], id="long"),
        pytest.param("model=mixtral-8x7b,dtype=bf16", [H100], id="mixtral-bf16-on-h100"),
    ],
)
def test_refused_when_no_gpu_model_can_hold_it(text: str, fleet: list[GpuModel]) -> None:
    with pytest.raises(InvalidRequestError, match="more than any GPU model") as caught:
        decide_from_annotation(text, fleet)
    assert "tensor-parallel" in caught.value.fix


def test_a_registered_split_limits_slices_per_card() -> None:
    decision = decide_from_annotation("model=qwen2.5-0.5b", [GpuModel("H200", 143771, split=4)])
    assert decision.fits[0].per_card == 4
