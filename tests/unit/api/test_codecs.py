"""Every wire codec round-trips, every decoder turns any input into a value or our error."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kantaloupe.api import allocation, handoff, registration
from kantaloupe.api.errors import InputError, MalformedAnnotationError
from kantaloupe.api.legacy import hami

uuids = st.from_regex(r"GPU-[0-9a-f]{4,12}", fullmatch=True)
small = st.integers(0, 2**31 - 1)

slices = st.builds(allocation.SliceV1, uuid=uuids, memory_mib=small, cores=st.integers(0, 100))
allocations = st.builds(
    allocation.AllocationV1,
    node=st.from_regex(r"[a-z][a-z0-9-]{0,30}", fullmatch=True),
    containers=st.lists(st.lists(slices, max_size=3).map(tuple), max_size=4).map(tuple),
)
devices = st.builds(
    registration.DeviceV1,
    uuid=uuids,
    index=st.integers(0, 64),
    model=st.sampled_from(["NVIDIA GeForce RTX 4090", "NVIDIA A100-SXM4-80GB"]),
    memory_mib=st.integers(1, 2**20),
    cores=st.integers(1, 400),
    split=st.integers(1, 100),
    numa=st.integers(0, 7),
    healthy=st.booleans(),
)
handoffs = st.builds(
    handoff.HandoffV1,
    phase=st.sampled_from(list(handoff.HandoffPhase)),
    node=st.from_regex(r"[a-z][a-z0-9-]{0,30}", fullmatch=True),
    since=st.floats(0, 2e9),
    served=st.lists(st.integers(0, 10), max_size=4).map(tuple),
    message=st.text(max_size=50),
)


@given(allocations)
def test_allocation_round_trips(doc: allocation.AllocationV1) -> None:
    assert allocation.decode_allocation(allocation.encode_allocation(doc)) == doc


@given(st.lists(devices, max_size=8, unique_by=(lambda d: d.uuid, lambda d: d.index)))
def test_registration_round_trips(items: list[registration.DeviceV1]) -> None:
    doc = registration.NodeDevicesV1(devices=tuple(items), agent_version="0.1.0")
    assert registration.decode_registration(registration.encode_registration(doc)) == doc


@given(handoffs)
def test_handoff_round_trips(doc: handoff.HandoffV1) -> None:
    assert handoff.decode_handoff(handoff.encode_handoff(doc)) == doc


@given(allocations.filter(lambda a: all(a.containers)))
def test_hami_strings_decode_to_the_same_allocation(doc: allocation.AllocationV1) -> None:
    legacy = hami.encode_hami_pod_devices(doc)
    assert hami.decode_hami_pod_devices(legacy, doc.node) == doc


DECODERS: list[Callable[[str], object]] = [
    allocation.decode_allocation,
    registration.decode_registration,
    handoff.decode_handoff,
    hami.decode_hami_registration,
    lambda raw: hami.decode_hami_pod_devices(raw, "node"),
]


@pytest.mark.parametrize("decode", DECODERS)
@given(
    raw=st.one_of(st.text(max_size=200), st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
)
def test_any_text_decodes_or_raises_our_error(decode: Callable[[str], object], raw: str) -> None:
    with contextlib.suppress(InputError):
        decode(raw)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(
            '{"v":1,"devices":[{"uuid":"a","index":0,"model":"m","memory_mib":1,'
            '"cores":100,"split":1},{"uuid":"a","index":1,"model":"m","memory_mib":1,'
            '"cores":100,"split":1}]}',
            id="duplicate-uuid",
        ),
        pytest.param(
            '{"v":1,"devices":[{"uuid":"a","index":0,"model":"m","memory_mib":0,'
            '"cores":100,"split":1}]}',
            id="zero-memory",
        ),
        pytest.param('{"v":9,"devices":[]}', id="unknown-version"),
        pytest.param("not json", id="garbage"),
    ],
)
def test_bad_registrations_are_malformed(raw: str) -> None:
    with pytest.raises(MalformedAnnotationError, match="kantaloupe.io/node-devices"):
        registration.decode_registration(raw)


def test_unknown_fields_are_tolerated_within_a_version() -> None:
    raw = '{"v":1,"node":"n","containers":[[]],"future_field":3}'
    assert allocation.decode_allocation(raw).node == "n"


def test_hami_json_registration() -> None:
    raw = (
        '[{"id":"GPU-aaa","index":0,"count":10,"devmem":24564,"devcore":100,'
        '"type":"NVIDIA-NVIDIA GeForce RTX 4090","numa":1,"mode":"hami-core","health":true}]'
    )
    doc = hami.decode_hami_registration(raw)
    (d,) = doc.devices
    assert (d.uuid, d.memory_mib, d.split, d.numa, d.healthy) == ("GPU-aaa", 24564, 10, 1, True)


def test_hami_legacy_registration_and_errors() -> None:
    doc = hami.decode_hami_registration(
        "GPU-0055,10,32768,100,NVIDIA-Tesla V100-PCIE-32GB,0,true:GPU-0056,10,32768,100,"
        "NVIDIA-Tesla V100-PCIE-32GB,0,false,1,hami-core:"
    )
    assert [d.index for d in doc.devices] == [0, 1]
    assert [d.healthy for d in doc.devices] == [True, False]
    with pytest.raises(MalformedAnnotationError, match="not 7 or 9"):
        hami.decode_hami_registration("GPU-1,10,100:")


def test_hami_pod_devices_with_empty_init_container() -> None:
    doc = hami.decode_hami_pod_devices(";GPU-x,NVIDIA,1000,30:GPU-y,NVIDIA,1000,30:;", "n1")
    assert doc.containers[0] == ()
    assert [s.uuid for s in doc.containers[1]] == ["GPU-x", "GPU-y"]
    with pytest.raises(MalformedAnnotationError, match="vgpu-node"):
        hami.decode_hami_pod_devices("GPU-x,NVIDIA,1,1:;", "")
