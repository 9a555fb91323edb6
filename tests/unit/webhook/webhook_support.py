"""Builders and a strict RFC 6902 applier for the webhook's tests (imported by file name)."""

from __future__ import annotations

import base64
import copy
import json
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kantaloupe.webhook import mutation, review

SAMPLE = (
    Path(__file__).resolve().parents[4]
    / "shared/reference/samples/admission-review-pod-create.json"
)
if not SAMPLE.exists():  # a checkout without the shared folder beside it
    SAMPLE = Path("/work/shared/reference/samples/admission-review-pod-create.json")

ADMIN = {"username": "test-admin", "groups": ["system:masters", "system:authenticated"]}
SCHEDULER_SA = "system:serviceaccount:kantaloupe:kantaloupe-scheduler"


class PatchError(ValueError):
    pass


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _walk(doc: Any, tokens: Sequence[str]) -> Any:
    for t in tokens:
        if isinstance(doc, dict):
            if t not in doc:
                raise PatchError(f"missing member {t!r}")
            doc = doc[t]
        elif isinstance(doc, list):
            if not t.isdigit() or int(t) >= len(doc):
                raise PatchError(f"bad index {t!r}")
            doc = doc[int(t)]
        else:
            raise PatchError(f"cannot descend into {type(doc).__name__} at {t!r}")
    return doc


def apply_patch(doc: Any, patch: Sequence[Mapping[str, Any]]) -> Any:
    """A strict RFC 6902 applier for ``add``, ``replace`` and ``remove``: a missing parent fails."""
    doc = copy.deepcopy(doc)
    for op in patch:
        path = op["path"]
        if not path.startswith("/"):
            raise PatchError(f"path {path!r} must start with /")
        tokens = [_unescape(t) for t in path[1:].split("/")]
        parent = _walk(doc, tokens[:-1])
        last = tokens[-1]
        kind = op["op"]
        if isinstance(parent, dict):
            if kind == "add":
                parent[last] = copy.deepcopy(op["value"])
            elif kind in ("replace", "remove"):
                if last not in parent:
                    raise PatchError(f"{kind} of missing {path}")
                if kind == "remove":
                    del parent[last]
                else:
                    parent[last] = copy.deepcopy(op["value"])
            else:
                raise PatchError(f"unsupported op {kind}")
        elif isinstance(parent, list):
            if kind == "add" and last == "-":
                parent.append(copy.deepcopy(op["value"]))
            elif kind == "add" and last.isdigit() and int(last) <= len(parent):
                parent.insert(int(last), copy.deepcopy(op["value"]))
            else:
                raise PatchError(f"unsupported list op {kind} at {path}")
        else:
            raise PatchError(f"parent of {path} is not a container")
    return doc


def container(
    name: str = "main",
    *,
    limits: Mapping[str, str] | None = None,
    requests: Mapping[str, str] | None = None,
    privileged: bool | None = None,
) -> dict[str, Any]:
    c: dict[str, Any] = {"name": name, "image": "busybox"}
    res: dict[str, Any] = {}
    if limits is not None:
        res["limits"] = dict(limits)
    if requests is not None:
        res["requests"] = dict(requests)
    if limits is not None or requests is not None:
        c["resources"] = res
    if privileged is not None:
        c["securityContext"] = {"privileged": privileged}
    return c


def gpu(limits: Mapping[str, str], name: str = "main", **kw: Any) -> dict[str, Any]:
    """A container with ``limits`` in limits and requests (as the apiserver defaults them)."""
    return container(name, limits=limits, requests=limits, **kw)


def pod(
    *containers: dict[str, Any],
    init: Sequence[dict[str, Any]] = (),
    annotations: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    scheduler: str | None = "default-scheduler",
    node_name: str | None = None,
    runtime_class: str | None = None,
    name: str = "p",
    namespace: str = "default",
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if annotations is not None:
        meta["annotations"] = dict(annotations)
    if labels is not None:
        meta["labels"] = dict(labels)
    spec: dict[str, Any] = {"containers": list(containers) or [container()]}
    if init:
        spec["initContainers"] = list(init)
    if scheduler is not None:
        spec["schedulerName"] = scheduler
    if node_name is not None:
        spec["nodeName"] = node_name
    if runtime_class is not None:
        spec["runtimeClassName"] = runtime_class
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def review_body(
    obj: Mapping[str, Any],
    *,
    operation: str = "CREATE",
    user: Mapping[str, Any] = ADMIN,
    old: Mapping[str, Any] | None = None,
    namespace: str | None = None,
) -> bytes:
    ns = namespace or obj.get("metadata", {}).get("namespace", "default")
    request = {
        "uid": str(uuid.uuid4()),
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": ns,
        "name": obj.get("metadata", {}).get("name", ""),
        "operation": operation,
        "userInfo": dict(user),
        "object": obj,
        "oldObject": old,
        "dryRun": False,
    }
    return json.dumps(
        {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}
    ).encode()


def decide(
    obj: Mapping[str, Any],
    settings: mutation.Settings | None = None,
    *,
    operation: str = "CREATE",
    user: Mapping[str, Any] = ADMIN,
    old: Mapping[str, Any] | None = None,
    fleet: Sequence[Any] = (),
) -> mutation.Decision:
    """Decode ``obj`` through the real codec and decide with the given settings."""
    rev = review.decode_review(review_body(obj, operation=operation, user=user, old=old))
    assert rev.pod is not None and rev.operation is not None
    return mutation.decide(
        rev.operation,
        rev.pod,
        rev.user,
        settings or mutation.Settings(),
        old=rev.old_pod,
        fleet=fleet,
    )


def patched(obj: Mapping[str, Any], decision: mutation.Decision) -> Any:
    """``obj`` after the decision's patch, applied from its wire encoding."""
    ops = json.loads(review.encode_patch(decision.patch)) if decision.patch else []
    return apply_patch(obj, ops)


def response_of(body: bytes) -> dict[str, Any]:
    doc = json.loads(body)
    assert doc["apiVersion"] == "admission.k8s.io/v1" and doc["kind"] == "AdmissionReview"
    return dict(doc["response"])


def patch_of(response: Mapping[str, Any]) -> list[dict[str, Any]]:
    if "patch" not in response:
        return []
    assert response["patchType"] == "JSONPatch"
    return list(json.loads(base64.b64decode(response["patch"])))
