"""AdmissionReview v1 (``admission.k8s.io/v1``): the one codec for the webhook's wire format.

:func:`decode_review` turns a request body into typed values (:class:`Review`) or raises
:class:`MalformedReviewError` (the face answers HTTP 400); :func:`encode_response` writes the
response with the request's ``uid`` echoed and, when there is one, a base64 JSON Patch.
Only the fields the webhook reads are decoded; everything else in the pod is ignored.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Final

import msgspec

from kantaloupe.api.errors import shorten
from kantaloupe.webhook import mutation

API_VERSION: Final = "admission.k8s.io/v1"
KIND: Final = "AdmissionReview"

Quantity = str | int | float


class MalformedReviewError(ValueError):
    """The body is not an AdmissionReview v1 for a pod; the face answers HTTP 400."""


# ---- wire structs (request) -------------------------------------------------------------------


class _SecurityContext(msgspec.Struct, frozen=True):
    privileged: bool | None = None


class _Resources(msgspec.Struct, frozen=True):
    limits: dict[str, Quantity] | None = None
    requests: dict[str, Quantity] | None = None


class _Container(msgspec.Struct, frozen=True, rename="camel"):
    name: str = ""
    resources: _Resources | None = None
    security_context: _SecurityContext | None = None


class _PodSpec(msgspec.Struct, frozen=True, rename="camel"):
    containers: list[_Container] | None = None
    init_containers: list[_Container] | None = None
    scheduler_name: str | None = None
    node_name: str | None = None
    runtime_class_name: str | None = None


class _Metadata(msgspec.Struct, frozen=True, rename="camel"):
    name: str | None = None
    generate_name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


class _PodObject(msgspec.Struct, frozen=True):
    metadata: _Metadata | None = None
    spec: _PodSpec | None = None


class _UserInfo(msgspec.Struct, frozen=True):
    username: str = ""
    groups: list[str] | None = None


class _GroupVersionResource(msgspec.Struct, frozen=True):
    group: str = ""
    version: str = ""
    resource: str = ""


class _Request(msgspec.Struct, frozen=True, rename="camel"):
    uid: str
    operation: str = ""
    namespace: str = ""
    name: str = ""
    resource: _GroupVersionResource | None = None
    sub_resource: str = ""
    user_info: _UserInfo | None = None
    object: _PodObject | None = None
    old_object: _PodObject | None = None
    dry_run: bool | None = None


class _ReviewIn(msgspec.Struct, frozen=True, rename="camel"):
    api_version: str = ""
    kind: str = ""
    request: _Request | None = None


# ---- wire structs (response) ------------------------------------------------------------------


class _Status(msgspec.Struct, frozen=True, omit_defaults=True):
    code: int
    message: str
    reason: str = ""


class _Response(msgspec.Struct, frozen=True, rename="camel", omit_defaults=True):
    uid: str
    allowed: bool
    status: _Status | None = None
    patch: str | None = None
    patch_type: str | None = None
    warnings: list[str] | None = None


class _ReviewOut(msgspec.Struct, frozen=True, rename="camel"):
    response: _Response
    api_version: str = API_VERSION
    kind: str = KIND


class _PatchOp(msgspec.Struct, frozen=True):
    op: str
    path: str
    value: object


_DECODER: Final = msgspec.json.Decoder(_ReviewIn)
_ENCODER: Final = msgspec.json.Encoder()


# ---- typed values -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Review:
    """One admission request, decoded. ``pod`` is ``None`` when the resource is not a pod."""

    uid: str
    operation: mutation.Operation | None
    """``None`` for an operation this webhook does not know (it is allowed unchanged)."""
    user: mutation.User
    pod: mutation.Pod | None
    old_pod: mutation.Pod | None
    dry_run: bool


def _container(raw: _Container) -> mutation.Container:
    res = raw.resources
    return mutation.Container(
        name=raw.name,
        limits=None if res is None or res.limits is None else dict(res.limits),
        requests=None if res is None or res.requests is None else dict(res.requests),
        has_resources=res is not None,
        privileged=bool(raw.security_context and raw.security_context.privileged),
    )


def _pod(raw: _PodObject, namespace: str) -> mutation.Pod:
    meta = raw.metadata or _Metadata()
    spec = raw.spec or _PodSpec()
    return mutation.Pod(
        namespace=namespace or meta.namespace or "",
        name=meta.name or "",
        generate_name=meta.generate_name or "",
        uid=meta.uid or "",
        labels=dict(meta.labels or {}),
        annotations=None if meta.annotations is None else dict(meta.annotations),
        containers=tuple(_container(c) for c in spec.containers or ()),
        init_containers=tuple(_container(c) for c in spec.init_containers or ()),
        scheduler_name=spec.scheduler_name,
        node_name=spec.node_name,
        runtime_class_name=spec.runtime_class_name,
    )


def decode_review(body: bytes) -> Review:
    """Decode a request body; raise :class:`MalformedReviewError` naming what is wrong."""
    try:
        raw = _DECODER.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise MalformedReviewError(f"not an AdmissionReview: {shorten(str(e))}") from e
    except (UnicodeDecodeError, ValueError, OverflowError, RecursionError) as e:
        raise MalformedReviewError(f"not an AdmissionReview: {shorten(str(e))}") from e
    if raw.api_version != API_VERSION or raw.kind != KIND:
        raise MalformedReviewError(
            f"expected apiVersion {API_VERSION} kind {KIND}, got "
            f"{shorten(raw.api_version, 64)!r} {shorten(raw.kind, 64)!r}; list only v1 in the "
            "webhook configuration's admissionReviewVersions"
        )
    if raw.request is None:
        raise MalformedReviewError("the AdmissionReview has no request")
    req = raw.request
    try:
        operation: mutation.Operation | None = mutation.Operation(req.operation)
    except ValueError:
        operation = None
    is_pod = (
        req.resource is None or (req.resource.group, req.resource.resource) == ("", "pods")
    ) and not req.sub_resource
    user = mutation.User(
        username=req.user_info.username if req.user_info else "",
        groups=tuple(req.user_info.groups or ()) if req.user_info else (),
    )
    pod = _pod(req.object, req.namespace) if is_pod and req.object is not None else None
    old = _pod(req.old_object, req.namespace) if is_pod and req.old_object is not None else None
    return Review(
        uid=req.uid,
        operation=operation,
        user=user,
        pod=pod,
        old_pod=old,
        dry_run=bool(req.dry_run),
    )


def encode_patch(patch: tuple[mutation.PatchOperation, ...]) -> bytes:
    """The RFC 6902 document (JSON, not yet base64)."""
    return _ENCODER.encode([_PatchOp(p.op, p.path, p.value) for p in patch])


def encode_response(uid: str, decision: mutation.Decision) -> bytes:
    """The AdmissionReview response for ``decision``, echoing ``uid``."""
    status = None
    if decision.denial is not None:
        code = decision.denial.code
        status = _Status(
            code=code,
            message=decision.denial.message,
            reason="Forbidden" if code == 403 else "BadRequest",
        )
    patch = patch_type = None
    if decision.allowed and decision.patch:
        patch = base64.b64encode(encode_patch(decision.patch)).decode()
        patch_type = "JSONPatch"
    response = _Response(
        uid=uid,
        allowed=decision.allowed,
        status=status,
        patch=patch,
        patch_type=patch_type,
        warnings=list(decision.warnings) or None,
    )
    return _ENCODER.encode(_ReviewOut(response=response))
