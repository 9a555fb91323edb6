"""The kantaloupe.io/sizing codec: round trip, and any input decodes or is refused."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kantaloupe.api import keys
from kantaloupe.api.errors import InputError, MalformedAnnotationError
from kantaloupe.api.sizing import Sizing, decode_sizing, encode_sizing

mib = st.integers(0, 2**31 - 1)
count = st.integers(1, 2**31 - 1)
names = st.text(min_size=1, max_size=40)
records = st.builds(
    Sizing,
    model=names,
    dtype=names,
    kv_dtype=names,
    max_tokens=count,
    concurrency=count,
    gpumem_mib=mib,
    weights_mib=mib,
    kv_cache_mib=mib,
    activations_mib=mib,
    engine_reserve_mib=mib,
    cuda_context_mib=mib,
    total_mib=mib,
    tensor_parallel=count,
    gpu_utilization=st.floats(0.05, 1.0),
    fits=st.lists(names, max_size=4).map(tuple),
)


@given(records)
def test_round_trip(record: Sizing) -> None:
    text = encode_sizing(record)
    assert text.startswith('{"v":1,')
    assert decode_sizing(text) == record


@given(st.one_of(st.binary(max_size=300), st.text(max_size=300)))
def test_any_input_decodes_or_is_refused(raw: bytes | str) -> None:
    with contextlib.suppress(InputError):
        decode_sizing(raw)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param('{"v":2,"model":"m"}', id="future-version"),
        pytest.param('{"v":1,"model":"m"}', id="missing-fields"),
        pytest.param("not json", id="not-json"),
    ],
)
def test_malformed_records_name_the_key(raw: str) -> None:
    with pytest.raises(MalformedAnnotationError) as caught:
        decode_sizing(raw)
    assert caught.value.where == keys.SIZING


def test_unknown_fields_are_tolerated_within_a_version() -> None:
    record = Sizing("m", "bf16", "bf16", 1, 1, 256, 1, 1, 1, 1, 1, 5)
    text = encode_sizing(record)[:-1] + ',"future":true}'
    assert decode_sizing(text) == record
