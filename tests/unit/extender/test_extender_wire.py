"""The extender protocol on recorded kube-scheduler payloads: any casing in, PascalCase out."""

from __future__ import annotations

import contextlib
import json

import msgspec
import pytest
from extender_support import SAMPLES
from hypothesis import given
from hypothesis import strategies as st

from kantaloupe.api.errors import InputError, InvalidRequestError
from kantaloupe.extender import wire


def test_recorded_filter_args_decode() -> None:
    args = wire.decode_filter_args((SAMPLES / "extender-args-filter.json").read_bytes())
    assert args.pod.metadata.uid == "4f1e0803-86cd-4773-9fe5-b7885438f540"
    assert args.pod.metadata.namespace == "default"
    assert args.node_names == ("gpu-node-1",)
    limits = args.pod.spec.containers[0].resources.limits
    assert limits == {"nvidia.com/gpu": "1"}


def test_recorded_filter_args_after_unschedulable_decode() -> None:
    raw = (SAMPLES / "extender-args-filter-after-unschedulable.json").read_bytes()
    args = wire.decode_filter_args(raw)
    assert args.pod.status.phase == "Pending"
    assert args.node_names == ("gpu-node-1",)


def test_recorded_bind_args_decode() -> None:
    args = wire.decode_bind_args((SAMPLES / "extender-binding-args-bind.json").read_bytes())
    assert args == wire.BindArgs(
        "gpu-pod-2", "default", "4f1e0803-86cd-4773-9fe5-b7885438f540", "gpu-node-1"
    )


def test_keys_match_in_any_casing() -> None:
    doc = json.loads((SAMPLES / "extender-binding-args-bind.json").read_bytes())
    lowered = {k.lower(): v for k, v in doc.items()}
    assert wire.decode_bind_args(json.dumps(lowered).encode()).pod_uid == doc["PodUID"]
    raw = json.loads((SAMPLES / "extender-args-filter.json").read_bytes())
    shouted = {k.upper(): v for k, v in raw.items()}
    assert wire.decode_filter_args(json.dumps(shouted).encode()).node_names == ("gpu-node-1",)


def test_full_nodes_give_their_names() -> None:
    raw = json.loads((SAMPLES / "extender-args-filter.json").read_bytes())
    raw["NodeNames"] = None
    raw["Nodes"] = {"items": [{"metadata": {"name": "a"}}, {"metadata": {"name": "b"}}]}
    assert wire.decode_filter_args(json.dumps(raw).encode()).node_names == ("a", "b")


def test_filter_result_is_pascal_case_exactly() -> None:
    body = wire.encode_filter_result(
        wire.FilterResult(
            node_names=["n1"],
            failed_nodes={"n2": "x"},
            failed_and_unresolvable_nodes={"n3": "y"},
        )
    )
    assert json.loads(body) == {
        "NodeNames": ["n1"],
        "FailedNodes": {"n2": "x"},
        "FailedAndUnresolvableNodes": {"n3": "y"},
        "Error": "",
        "Nodes": None,
    }
    assert json.loads(wire.encode_bind_result(wire.BindResult("e"))) == {"Error": "e"}
    assert json.loads(wire.encode_priorities([wire.HostPriority("n", 10)])) == [
        {"Host": "n", "Score": 10}
    ]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"[]", id="array"),
        pytest.param(b"{", id="truncated"),
        pytest.param(b'{"Pod": 3}', id="pod-not-object"),
        pytest.param(b'{"Pod": {"metadata": {}}}', id="pod-without-uid"),
        pytest.param(b'{"Pod": {"metadata": {"uid": "u"}}, "NodeNames": "a"}', id="names-string"),
    ],
)
def test_bad_filter_bodies_are_input_errors(body: bytes) -> None:
    with pytest.raises(InvalidRequestError):
        wire.decode_filter_args(body)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"PodName": "p"}', id="missing-fields"),
        pytest.param(
            b'{"PodName": "p", "PodNamespace": "n", "PodUID": "", "Node": "x"}', id="empty"
        ),
        pytest.param(b'{"PodName": 1, "PodNamespace": "n", "PodUID": "u", "Node": "x"}', id="type"),
    ],
)
def test_bad_bind_bodies_are_input_errors(body: bytes) -> None:
    with pytest.raises(InvalidRequestError):
        wire.decode_bind_args(body)


@given(st.binary(max_size=200))
def test_any_bytes_decode_or_raise_input_error(body: bytes) -> None:
    for decode in (wire.decode_filter_args, wire.decode_bind_args):
        with contextlib.suppress(InputError):
            decode(body)


@given(
    st.dictionaries(
        st.sampled_from(["Pod", "pod", "NodeNames", "nodenames", "Nodes"]),
        st.one_of(st.none(), st.integers(), st.text(), st.lists(st.text())),
    )
)
def test_any_json_object_decodes_or_raises_input_error(doc: dict[str, object]) -> None:
    with contextlib.suppress(InputError):
        wire.decode_filter_args(msgspec.json.encode(doc))
