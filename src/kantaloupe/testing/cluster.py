"""Cluster helpers for tests on the real control plane (async, ``kubernetes_asyncio``).

The plane has no kubelet and no controller-manager, so these helpers do their jobs: a node is
created, made Ready through ``/status`` and stripped of the ``node.kubernetes.io/not-ready``
taint that admission puts on every new Node; a namespace gets its ``default`` ServiceAccount;
pods are deleted with grace period 0 (no kubelet confirms a graceful deletion); a deleted
namespace is finalized by hand (no namespace controller empties it).

Every wait polls with a deadline and raises :class:`WaitTimeoutError` saying what it waited for
and what it saw last. ``kubernetes_asyncio`` is untyped, so its model objects are typed ``Any``
here (``KubeObject``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import itertools
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.client.exceptions import ApiException

__all__ = [
    "NOT_READY_TAINT",
    "PAUSE_IMAGE",
    "KubeObject",
    "WaitTimeoutError",
    "api_client",
    "create_gpu_node",
    "create_namespace",
    "create_node",
    "create_pod",
    "delete_namespace",
    "delete_node",
    "delete_pod",
    "pod_manifest",
    "poll_until",
    "set_node_ready",
    "unique_name",
    "wait_for_event",
    "wait_for_pod",
    "wait_for_pod_bound",
    "wait_for_pod_condition",
]

KubeObject = Any
"""A ``kubernetes_asyncio`` model object (``V1Pod``, ``V1Node``, ...); the library is untyped."""

T = TypeVar("T")

NOT_READY_TAINT = "node.kubernetes.io/not-ready"
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
_POLL_S = 0.05
_counter = itertools.count()


class WaitTimeoutError(TimeoutError):
    """A wait missed its deadline; ``last`` is the last value observed (or ``None``)."""

    def __init__(self, what: str, timeout_s: float, last: object = None) -> None:
        self.what = what
        self.last = last
        seen = f"; last seen: {_summarise(last)}" if last is not None else ""
        super().__init__(f"timed out after {timeout_s:g} s waiting for {what}{seen}")


def _body(obj: Mapping[str, Any]) -> Any:
    """A plain JSON body; the client accepts dicts where its annotations say model objects."""
    return dict(obj)


def _summarise(obj: object) -> str:
    status = getattr(obj, "status", None)
    text = repr(status if status is not None else obj)
    return text if len(text) <= 1500 else text[:1500] + "..."


def unique_name(prefix: str) -> str:
    """``<prefix>-<pid>-<n>``: distinct across tests of one run and across concurrent runs."""
    return f"{prefix}-{os.getpid() % 100000}-{next(_counter)}"


@contextlib.asynccontextmanager
async def api_client(kubeconfig: Path) -> AsyncIterator[k8s.ApiClient]:
    """An ``ApiClient`` for ``kubeconfig``, closed on exit (an unclosed one warns)."""
    api = await k8s_config.new_client_from_config(config_file=str(kubeconfig))
    try:
        yield api
    finally:
        await api.close()


async def poll_until(
    check: Callable[[], Awaitable[tuple[bool, T]]],
    *,
    timeout_s: float,
    what: str,
    interval_s: float = _POLL_S,
) -> T:
    """Call ``check`` until it returns ``(True, value)``; return that value.

    ``check`` returns ``(False, last_seen)`` to go on polling; ``last_seen`` ends up in the
    :class:`WaitTimeoutError` raised when ``timeout_s`` passes.
    """
    deadline = time.monotonic() + timeout_s
    last: object = None
    while True:
        done, value = await check()
        if done:
            return value
        last = value
        if time.monotonic() >= deadline:
            raise WaitTimeoutError(what, timeout_s, last)
        await asyncio.sleep(interval_s)


# ---- nodes -------------------------------------------------------------------------------------


async def create_node(
    api: k8s.ApiClient,
    name: str,
    *,
    capacity: Mapping[str, str | int] | None = None,
    allocatable: Mapping[str, str | int] | None = None,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    taints: Sequence[Mapping[str, str]] = (),
    ready: bool = True,
) -> KubeObject:
    """Create a Node as a kubelet registers one, then make it schedulable.

    ``capacity`` defaults to 32 CPUs, 256Gi memory and 110 pods; ``allocatable`` to
    ``capacity``. ``taints`` are kept; the not-ready taint that admission adds is removed.
    """
    core = k8s.CoreV1Api(api)
    cap = {"cpu": "32", "memory": "256Gi", "pods": "110", "ephemeral-storage": "1Ti"}
    cap.update({k: str(v) for k, v in (capacity or {}).items()})
    alloc = dict(cap) if allocatable is None else {k: str(v) for k, v in allocatable.items()}
    body = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                **(labels or {}),
            },
            "annotations": dict(annotations or {}),
        },
        "spec": {"taints": [dict(t) for t in taints]} if taints else {},
    }
    await core.create_node(_body(body))
    await core.patch_node_status(
        name,
        {
            "status": {
                "capacity": cap,
                "allocatable": alloc,
                "addresses": [
                    {"type": "InternalIP", "address": "127.0.0.1"},
                    {"type": "Hostname", "address": name},
                ],
                "nodeInfo": {
                    "architecture": "amd64",
                    "operatingSystem": "linux",
                    "kubeletVersion": "v1.36.3",
                    "kubeProxyVersion": "",
                    "containerRuntimeVersion": "containerd://2.0.0",
                    "osImage": "kantaloupe test node",
                    "kernelVersion": "6.1.0",
                    "bootID": "",
                    "machineID": "",
                    "systemUUID": "",
                },
            }
        },
    )
    if ready:
        await set_node_ready(api, name, True)
    return await _remove_not_ready_taint(api, name) if ready else await core.read_node(name)


async def create_gpu_node(
    api: k8s.ApiClient,
    name: str,
    *,
    gpus: int = 4,
    capacity: Mapping[str, str | int] | None = None,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    taints: Sequence[Mapping[str, str]] = (),
) -> KubeObject:
    """A Ready node advertising ``nvidia.com/gpu: gpus`` and labelled ``gpu=on`` (HAMi's label).

    HAMi-style device plugins advertise ``devices * split count`` as ``nvidia.com/gpu``; pass
    that number. Device registration annotations go in ``annotations``.
    """
    return await create_node(
        api,
        name,
        capacity={"nvidia.com/gpu": gpus, **(capacity or {})},
        labels={"gpu": "on", **(labels or {})},
        annotations=annotations,
        taints=taints,
    )


async def set_node_ready(api: k8s.ApiClient, name: str, ready: bool) -> KubeObject:
    """Set the node's Ready condition through ``/status``, as the kubelet's heartbeat does."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    condition = {
        "type": "Ready",
        "status": "True" if ready else "False",
        "reason": "KubeletReady" if ready else "KubeletNotReady",
        "message": "kantaloupe test node" if ready else "kantaloupe test node is not ready",
        "lastHeartbeatTime": now,
        "lastTransitionTime": now,
    }
    # conditions merge by "type" under strategic merge patch: other conditions stay.
    return await k8s.CoreV1Api(api).patch_node_status(name, {"status": {"conditions": [condition]}})


async def _remove_not_ready_taint(api: k8s.ApiClient, name: str) -> KubeObject:
    core = k8s.CoreV1Api(api)
    node = await core.read_node(name)
    taints = [
        api.sanitize_for_serialization(t)
        for t in (node.spec.taints or [])
        if t.key != NOT_READY_TAINT
    ]
    rv = node.metadata.resource_version
    patch = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
        {"op": "replace" if node.spec.taints else "add", "path": "/spec/taints", "value": taints},
    ]
    return await core.patch_node(name, patch)


async def delete_node(api: k8s.ApiClient, name: str) -> None:
    """Delete a node; a missing node is fine."""
    with contextlib.suppress(ApiException):
        await k8s.CoreV1Api(api).delete_node(name)


# ---- namespaces --------------------------------------------------------------------------------


async def create_namespace(
    api: k8s.ApiClient, name: str | None = None, *, labels: Mapping[str, str] | None = None
) -> str:
    """Create a namespace (a unique ``test-...`` name by default) with its ``default``
    ServiceAccount, which pods need and no controller creates here. Returns the name."""
    name = name or unique_name("test")
    core = k8s.CoreV1Api(api)
    meta = {"name": name, "labels": dict(labels or {})}
    await core.create_namespace(_body({"apiVersion": "v1", "kind": "Namespace", "metadata": meta}))
    await core.create_namespaced_service_account(
        name, _body({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}})
    )
    return name


async def delete_namespace(api: k8s.ApiClient, name: str) -> None:
    """Delete a namespace's pods at once, then the namespace, finalizing it by hand (no namespace
    controller runs here, so it would otherwise stay Terminating forever)."""
    core = k8s.CoreV1Api(api)
    with contextlib.suppress(ApiException):
        await core.delete_collection_namespaced_pod(name, grace_period_seconds=0)
    try:
        await core.delete_namespace(name)
        await core.replace_namespace_finalize(
            name,
            _body({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
        )
    except ApiException as e:
        if e.status != 404:
            raise


# ---- pods --------------------------------------------------------------------------------------


def pod_manifest(
    name: str,
    *,
    scheduler_name: str | None = None,
    limits: Mapping[str, str | int] | None = None,
    requests: Mapping[str, str | int] | None = None,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    node_selector: Mapping[str, str] | None = None,
    image: str = PAUSE_IMAGE,
) -> dict[str, Any]:
    """A one-container pod. ``limits={"nvidia.com/gpu": 1}`` asks for a GPU (requests default to
    limits for extended resources, as in a real cluster)."""
    resources: dict[str, dict[str, str]] = {}
    if limits:
        resources["limits"] = {k: str(v) for k, v in limits.items()}
    if requests:
        resources["requests"] = {k: str(v) for k, v in requests.items()}
    spec: dict[str, Any] = {
        "containers": [{"name": "main", "image": image, "resources": resources}],
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": 0,
    }
    if scheduler_name:
        spec["schedulerName"] = scheduler_name
    if node_selector:
        spec["nodeSelector"] = dict(node_selector)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": dict(labels or {}),
            "annotations": dict(annotations or {}),
        },
        "spec": spec,
    }


async def create_pod(api: k8s.ApiClient, namespace: str, manifest: Mapping[str, Any]) -> KubeObject:
    """Create a pod from a manifest such as :func:`pod_manifest` returns."""
    return await k8s.CoreV1Api(api).create_namespaced_pod(namespace, _body(manifest))


async def delete_pod(api: k8s.ApiClient, namespace: str, name: str) -> None:
    """Delete a pod at once (grace period 0: no kubelet would confirm a graceful deletion)."""
    with contextlib.suppress(ApiException):
        await k8s.CoreV1Api(api).delete_namespaced_pod(name, namespace, grace_period_seconds=0)


# ---- waits -------------------------------------------------------------------------------------


async def wait_for_pod(
    api: k8s.ApiClient,
    namespace: str,
    name: str,
    predicate: Callable[[KubeObject], bool],
    *,
    timeout_s: float = 15.0,
    what: str = "a pod state",
) -> KubeObject:
    """Poll the pod until ``predicate(pod)`` holds; return the pod."""
    core = k8s.CoreV1Api(api)

    async def check() -> tuple[bool, KubeObject]:
        try:
            pod = await core.read_namespaced_pod(name, namespace)
        except ApiException as e:
            if e.status == 404:
                return False, None
            raise
        return predicate(pod), pod

    return await poll_until(check, timeout_s=timeout_s, what=f"{what} of pod {namespace}/{name}")


async def wait_for_pod_bound(
    api: k8s.ApiClient, namespace: str, name: str, *, timeout_s: float = 15.0
) -> KubeObject:
    """Wait until the pod has ``spec.nodeName``; return the pod."""
    return await wait_for_pod(
        api, namespace, name, lambda p: bool(p.spec.node_name), timeout_s=timeout_s, what="binding"
    )


async def wait_for_pod_condition(
    api: k8s.ApiClient,
    namespace: str,
    name: str,
    condition: str,
    *,
    status: str = "True",
    reason: str | None = None,
    timeout_s: float = 15.0,
) -> KubeObject:
    """Wait until the pod's condition ``condition`` (``PodScheduled``, ...) has ``status`` (and
    ``reason``, if given); e.g. ``("PodScheduled", status="False", reason="Unschedulable")``."""

    def holds(pod: KubeObject) -> bool:
        for c in (pod.status and pod.status.conditions) or []:
            if c.type == condition and c.status == status:
                return reason is None or c.reason == reason
        return False

    return await wait_for_pod(
        api,
        namespace,
        name,
        holds,
        timeout_s=timeout_s,
        what=f"condition {condition}={status}" + (f" reason={reason}" if reason else ""),
    )


async def wait_for_event(
    api: k8s.ApiClient,
    namespace: str,
    *,
    involved_name: str | None = None,
    reason: str | None = None,
    message_contains: str | None = None,
    timeout_s: float = 15.0,
) -> KubeObject:
    """Wait for an Event in ``namespace`` matching every given filter; return the first one."""
    core = k8s.CoreV1Api(api)
    selector: dict[str, Any] = {}
    if involved_name:
        selector["field_selector"] = f"involvedObject.name={involved_name}"

    async def check() -> tuple[bool, KubeObject]:
        events = await core.list_namespaced_event(namespace, **selector)
        for ev in events.items:
            if reason is not None and ev.reason != reason:
                continue
            if message_contains is not None and message_contains not in (ev.message or ""):
                continue
            return True, ev
        return False, [(ev.reason, ev.message) for ev in events.items] or None

    what = " ".join(
        f"{k}={v!r}"
        for k, v in (("object", involved_name), ("reason", reason), ("message", message_contains))
        if v is not None
    )
    return await poll_until(check, timeout_s=timeout_s, what=f"event {what} in {namespace}")
