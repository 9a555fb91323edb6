"""kube-scheduler's extender protocol (``k8s.io/kube-scheduler/extender/v1``).

The Go types have no json tags: kube-scheduler writes PascalCase and reads any casing. We do
the same: keys are matched case-insensitively on input and written exactly in PascalCase.
A body that does not decode raises :class:`~kantaloupe.api.errors.InvalidRequestError`, which
the server answers with the ``Error`` field (never a 500).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import msgspec

from kantaloupe.api.errors import InvalidRequestError, shorten
from kantaloupe.kube.objects import Node, ObjectList, Pod


@dataclass(frozen=True, slots=True)
class FilterArgs:
    pod: Pod
    node_names: tuple[str, ...] | None
    """``None`` when the scheduler sent full Node objects only (no names: see ``nodes``)."""


@dataclass(frozen=True, slots=True)
class BindArgs:
    pod_name: str
    pod_namespace: str
    pod_uid: str
    node: str


class FilterResult(msgspec.Struct, rename="pascal"):
    node_names: list[str] | None = None
    failed_nodes: dict[str, str] = msgspec.field(default_factory=dict)
    failed_and_unresolvable_nodes: dict[str, str] = msgspec.field(default_factory=dict)
    error: str = ""
    nodes: None = None


class BindResult(msgspec.Struct, rename="pascal"):
    error: str = ""


class HostPriority(msgspec.Struct, rename="pascal"):
    host: str
    score: int


_TOP: Final = msgspec.json.Decoder(dict[str, msgspec.Raw])
_POD: Final = msgspec.json.Decoder(Pod)
_NODES: Final = msgspec.json.Decoder(ObjectList[Node] | None)
_NAMES: Final = msgspec.json.Decoder(list[str] | None)
_STR: Final = msgspec.json.Decoder(str | None)
_ENCODER: Final = msgspec.json.Encoder()


def _fields(body: bytes, what: str) -> dict[str, msgspec.Raw]:
    try:
        top = _TOP.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise InvalidRequestError(
            what,
            shorten(body.decode("utf-8", "replace")),
            f"is not a JSON object ({e})",
            "kube-scheduler sends ExtenderArgs; check the extender's urlPrefix and verbs",
        ) from None
    return {k.lower(): v for k, v in top.items()}


def _field(
    fields: dict[str, msgspec.Raw], name: str, decoder: msgspec.json.Decoder[object], what: str
) -> object:
    raw = fields.get(name.lower())
    if raw is None:
        return None
    try:
        return decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise InvalidRequestError(
            f"{what}.{name}",
            shorten(bytes(raw).decode("utf-8", "replace")),
            f"does not decode ({e})",
            "send the field in kube-scheduler's extender v1 shape",
        ) from None


def decode_filter_args(body: bytes) -> FilterArgs:
    what = "ExtenderArgs"
    fields = _fields(body, what)
    pod = _field(fields, "Pod", _POD, what)  # type: ignore[arg-type]
    if not isinstance(pod, Pod) or not pod.metadata.uid:
        raise InvalidRequestError(
            f"{what}.Pod",
            None,
            "is missing or has no metadata.uid",
            "send the pod being scheduled in the Pod field",
        )
    names = _field(fields, "NodeNames", _NAMES, what)  # type: ignore[arg-type]
    if names is None:
        nodes = _field(fields, "Nodes", _NODES, what)  # type: ignore[arg-type]
        if isinstance(nodes, ObjectList):
            names = [n.metadata.name for n in nodes.items]
    return FilterArgs(pod, tuple(names) if isinstance(names, list) else None)


def decode_bind_args(body: bytes) -> BindArgs:
    what = "ExtenderBindingArgs"
    fields = _fields(body, what)
    values: dict[str, str] = {}
    for name in ("PodName", "PodNamespace", "PodUID", "Node"):
        value = _field(fields, name, _STR, what)  # type: ignore[arg-type]
        if not isinstance(value, str) or not value:
            raise InvalidRequestError(
                f"{what}.{name}",
                value,
                "is missing or empty",
                "send PodName, PodNamespace, PodUID and Node",
            )
        values[name] = value
    return BindArgs(values["PodName"], values["PodNamespace"], values["PodUID"], values["Node"])


def encode_filter_result(result: FilterResult) -> bytes:
    return _ENCODER.encode(result)


def encode_bind_result(result: BindResult) -> bytes:
    return _ENCODER.encode(result)


def encode_priorities(items: list[HostPriority]) -> bytes:
    return _ENCODER.encode(items)
