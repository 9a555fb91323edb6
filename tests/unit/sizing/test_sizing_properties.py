"""Properties: the estimate grows with tokens and concurrency; any text decides or is refused."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kantaloupe.api.errors import InputError
from kantaloupe.sizing import (
    Architecture,
    GpuModel,
    Precision,
    Workload,
    catalogue,
    decide_from_annotation,
)
from kantaloupe.sizing.annotation import KNOWN_KEYS
from kantaloupe.sizing.estimate import estimate

models = st.sampled_from(catalogue.models())
precisions = st.sampled_from(list(Precision))
tokens = st.integers(min_value=1, max_value=1_000_000)
concurrency = st.integers(min_value=1, max_value=512)
tensor_parallel = st.sampled_from([1, 2, 4, 8])
fleets = st.lists(
    st.builds(GpuModel, st.text(min_size=1, max_size=20), st.integers(1, 200_000)), max_size=4
)


@given(models, precisions, tensor_parallel, tokens, tokens, concurrency, concurrency)
def test_estimate_never_shrinks_with_tokens_or_concurrency(
    arch: Architecture,
    precision: Precision,
    tp: int,
    tokens_a: int,
    tokens_b: int,
    conc_a: int,
    conc_b: int,
) -> None:
    low = Workload(
        max_tokens=min(tokens_a, tokens_b),
        concurrency=min(conc_a, conc_b),
        precision=precision,
        tensor_parallel=tp,
    )
    high = Workload(
        max_tokens=max(tokens_a, tokens_b),
        concurrency=max(conc_a, conc_b),
        precision=precision,
        tensor_parallel=tp,
    )
    small, large = estimate(arch, low), estimate(arch, high)
    assert small.kv_cache_bytes <= large.kv_cache_bytes
    assert small.activations_bytes <= large.activations_bytes
    assert small.total_bytes <= large.total_bytes
    assert small.gpumem_mib <= large.gpumem_mib
    assert large.gpumem_mib * (1 << 20) >= large.total_bytes


@given(models, tokens, concurrency)
def test_more_tokens_strictly_grow_the_kv_cache(
    arch: Architecture, n_tokens: int, n_seqs: int
) -> None:
    a = estimate(arch, Workload(max_tokens=n_tokens, concurrency=n_seqs))
    b = estimate(arch, Workload(max_tokens=n_tokens + 1, concurrency=n_seqs))
    assert b.kv_cache_bytes > a.kv_cache_bytes


pair_values = st.one_of(
    st.text(max_size=12),
    st.integers(-5, 10**7).map(str),
    st.sampled_from(["bf16", "fp8", "awq", "0.9", "8k", "2Gi", "qwen2.5-7b", "llama-3.1-70b"]),
)
annotation_texts = st.one_of(
    st.text(max_size=200),
    st.lists(st.tuples(st.sampled_from([*KNOWN_KEYS, "junk"]), pair_values), max_size=6).map(
        lambda pairs: ",".join(f"{k}={v}" for k, v in pairs)
    ),
)


@given(annotation_texts, fleets)
def test_any_text_decides_or_is_refused_as_input(text: str, fleet: list[GpuModel]) -> None:
    try:
        decision = decide_from_annotation(text, fleet)
    except InputError:
        return
    assert decision.gpumem_mib >= decision.record.total_mib
    assert decision.gpumem_mib % 256 == 0
