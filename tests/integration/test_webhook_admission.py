"""The webhook behind a real kube-apiserver: registered by a MutatingWebhookConfiguration that
points at 127.0.0.1 with a throwaway CA's bundle, pods created through the API server.

The configuration selects only this module's namespaces (by label) and is deleted afterwards,
so other tests on the same control plane never meet the webhook.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio.client.exceptions import ApiException
from prometheus_client import CollectorRegistry

from kantaloupe.api import keys, registration, resources
from kantaloupe.api.quantities import parse_count
from kantaloupe.runtime import lifecycle
from kantaloupe.sizing import decide_from_annotation
from kantaloupe.testing import ControlPlane, cluster
from kantaloupe.webhook import command, mutation

pytestmark = pytest.mark.integration

SELECT_LABEL = "kantaloupe-test/webhook"
LLM_TEXT = "model=qwen2.5-0.5b,dtype=bf16,max-tokens=4096,concurrency=2"
"""Small enough for any GPU a neighbouring test may have registered."""
HUGE_TEXT = "model=qwen2.5-72b,dtype=fp32,max-tokens=128k,concurrency=64"
"""Larger than any single GPU: refused once the fleet is known at all."""
SCHEDULER = "kantaloupe-scheduler"


@dataclass
class Webhook:
    api: k8s.ApiClient
    namespace: str
    excluded: str
    life: lifecycle.Lifecycle
    registry: CollectorRegistry


async def _namespace(api: k8s.ApiClient, marker: str) -> str:
    return await cluster.create_namespace(api, labels={SELECT_LABEL: marker})


def _configuration(name: str, port: int, ca_pem: bytes, marker: str) -> dict[str, Any]:
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": "pods.webhook.kantaloupe.io",
                "clientConfig": {
                    "url": f"https://127.0.0.1:{port}/mutate",
                    "caBundle": base64.b64encode(ca_pem).decode(),
                },
                "rules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": ["pods"],
                        "scope": "Namespaced",
                    }
                ],
                "namespaceSelector": {"matchLabels": {SELECT_LABEL: marker}},
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Fail",
                "reinvocationPolicy": "Never",
                "timeoutSeconds": 5,
            }
        ],
    }


async def _dry_run_create(api: k8s.ApiClient, namespace: str, manifest: dict[str, Any]) -> Any:
    return await k8s.CoreV1Api(api).create_namespaced_pod(namespace, manifest, dry_run="All")


@pytest.fixture
async def webhook(control_plane: ControlPlane, kube_api: k8s.ApiClient) -> AsyncIterator[Webhook]:
    marker = cluster.unique_name("wh")
    namespace = await _namespace(kube_api, marker)
    excluded = await _namespace(kube_api, marker)
    pair = control_plane.ca.issue_server(marker, dns_names=("localhost",), ips=("127.0.0.1",))
    config = command.ServeConfig(
        settings=mutation.Settings(excluded_namespaces=frozenset({excluded})),
        bind_address="127.0.0.1",
        port=0,
        metrics_port=0,
        tls_cert_file=str(pair.cert_file),
        tls_key_file=str(pair.key_file),
        kubeconfig=str(control_plane.admin_kubeconfig),
    )
    life = lifecycle.Lifecycle(grace_s=5)
    registry = CollectorRegistry()
    admission = k8s.AdmissionregistrationV1Api(kube_api)
    try:
        ports = await command.start(life, config, registry)
        await admission.create_mutating_webhook_configuration(
            _configuration(marker, ports.webhook, control_plane.ca.cert_pem, marker)
        )

        async def effective() -> tuple[bool, object]:
            probe = cluster.pod_manifest("probe", limits={resources.GPU: 1})
            pod = await _dry_run_create(kube_api, namespace, probe)
            return pod.spec.scheduler_name == SCHEDULER, pod.spec.scheduler_name

        await cluster.poll_until(effective, timeout_s=15, what="the webhook to be called")
        yield Webhook(kube_api, namespace, excluded, life, registry)
    finally:
        with contextlib.suppress(ApiException):
            await admission.delete_mutating_webhook_configuration(marker)
        life.request_stop("test done")
        await life.shutdown()
        for ns in (namespace, excluded):
            await cluster.delete_namespace(kube_api, ns)


def message(error: ApiException) -> str:
    """The Status message the apiserver returned (it embeds the webhook's message)."""
    body = error.body.decode() if isinstance(error.body, bytes) else str(error.body)
    try:
        return str(json.loads(body)["message"])
    except (ValueError, KeyError):
        return body


async def _create(w: Webhook, manifest: dict[str, Any], namespace: str | None = None) -> Any:
    return await cluster.create_pod(w.api, namespace or w.namespace, manifest)


async def _refused(w: Webhook, manifest: dict[str, Any], api: k8s.ApiClient | None = None) -> Any:
    with pytest.raises(ApiException) as info:
        await cluster.create_pod(api or w.api, w.namespace, manifest)
    return info.value


async def test_defaults_are_applied(webhook: Webhook) -> None:
    whole = await _create(webhook, cluster.pod_manifest("whole", limits={resources.GPU: 1}))
    assert whole.spec.scheduler_name == SCHEDULER
    limits = whole.spec.containers[0].resources.limits
    assert limits == {resources.GPU: "1", resources.GPU_CORES: "100"}
    assert whole.spec.containers[0].resources.requests == limits

    sliced = await _create(
        webhook, cluster.pod_manifest("sliced", limits={resources.GPU_MEMORY: 4096})
    )
    assert sliced.spec.containers[0].resources.limits == {
        resources.GPU_MEMORY: "4096",
        resources.GPU: "1",
    }
    other = await _create(
        webhook,
        cluster.pod_manifest("other", limits={resources.GPU: 1}, scheduler_name="my-scheduler"),
    )
    assert other.spec.scheduler_name == "my-scheduler"
    plain = await _create(webhook, cluster.pod_manifest("plain"))
    assert plain.spec.scheduler_name == "default-scheduler"
    sample = {"operation": "create", "result": "mutated"}
    assert (
        webhook.registry.get_sample_value("kantaloupe_webhook_requests_total", sample) or 0
    ) >= 2


async def test_forged_internal_annotation_is_denied(
    webhook: Webhook, control_plane: ControlPlane
) -> None:
    forged = cluster.pod_manifest(
        "forged", limits={resources.GPU: 1}, annotations={keys.ALLOCATION: '{"v":1}'}
    )
    error = await _refused(webhook, forged)
    assert error.status == 403
    assert keys.ALLOCATION in message(
        error
    ) and "only Kantaloupe's own service accounts" in message(error)

    # Our scheduler's service account may write it (a client cert for that user; masters for RBAC).
    kubeconfig = control_plane.write_kubeconfig(
        cluster.unique_name("sched-sa"),
        user=mutation.DEFAULT_TRUSTED_SERVICE_ACCOUNTS[0],
        groups=("system:masters",),
    )
    async with cluster.api_client(kubeconfig) as trusted:
        created = await cluster.create_pod(trusted, webhook.namespace, forged)
        assert created.metadata.annotations[keys.ALLOCATION] == '{"v":1}'

    # Adding one later by an update is refused too.
    plain = await _create(webhook, cluster.pod_manifest("later"))
    with pytest.raises(ApiException) as info:
        await k8s.CoreV1Api(webhook.api).patch_namespaced_pod(
            "later",
            webhook.namespace,
            {"metadata": {"annotations": {keys.HAMI_DEVICES_ALLOCATED: "GPU-x,NVIDIA,1,0:;"}}},
        )
    assert info.value.status == 403 and keys.HAMI_DEVICES_ALLOCATED in message(info.value)
    assert plain.metadata.name == "later"
    reason = {"reason": "internal_annotation"}
    # At least the two refusals above: the apiserver re-runs admission when a patch meets a
    # conflicting write (the default scheduler binding "later"), which counts once more.
    assert (webhook.registry.get_sample_value("kantaloupe_webhook_denials_total", reason) or 0) >= 2


async def test_privileged_and_preset_node_are_denied(webhook: Webhook) -> None:
    manifest = cluster.pod_manifest("priv", limits={resources.GPU: 1})
    manifest["spec"]["containers"][0]["securityContext"] = {"privileged": True}
    error = await _refused(webhook, manifest)
    assert (
        error.status == 403
        and "privileged" in message(error)
        and "drop privileged" in message(error)
    )

    pinned = cluster.pod_manifest("pinned", limits={resources.GPU: 1})
    pinned["spec"]["nodeName"] = "some-node"
    error = await _refused(webhook, pinned)
    assert error.status == 400 and "spec.nodeName" in message(error)

    bad = cluster.pod_manifest("bad", limits={resources.GPU_MEMORY_PERCENTAGE: 150})
    error = await _refused(webhook, bad)
    assert error.status == 400 and "must be 1-100" in message(error)


async def test_excluded_namespace_is_untouched(webhook: Webhook) -> None:
    manifest = cluster.pod_manifest("free", limits={resources.GPU: 1})
    manifest["spec"]["containers"][0]["securityContext"] = {"privileged": True}
    pod = await _create(webhook, manifest, namespace=webhook.excluded)
    assert pod.spec.scheduler_name == "default-scheduler"
    assert pod.spec.containers[0].resources.limits == {resources.GPU: "1"}
    ignored = cluster.pod_manifest(
        "ignored",
        limits={resources.GPU: 1},
        labels={keys.WEBHOOK_IGNORE_LABEL: keys.WEBHOOK_IGNORE_VALUE},
    )
    pod = await _create(webhook, ignored)
    assert pod.spec.scheduler_name == "default-scheduler"


async def test_llm_annotation_fills_gpumem_and_checks_the_fleet(webhook: Webhook) -> None:
    expected = decide_from_annotation(LLM_TEXT, ()).gpumem_mib
    pod = await _create(webhook, cluster.pod_manifest("llm", annotations={keys.LLM: LLM_TEXT}))
    limits = pod.spec.containers[0].resources.limits
    # The apiserver writes quantities canonically (2000 -> "2k"): compare numbers.
    assert set(limits) == {resources.GPU_MEMORY, resources.GPU} and limits[resources.GPU] == "1"
    assert parse_count("gpumem", limits[resources.GPU_MEMORY], fix="") == expected
    assert f'"gpumem_mib":{expected}' in pod.metadata.annotations[keys.SIZING]
    assert pod.spec.scheduler_name == SCHEDULER

    # A node whose only GPU is too small: the fleet watch sees it, sizing refuses.
    small = registration.NodeDevices(
        devices=(
            registration.DeviceV1(
                uuid="GPU-small-0", index=0, model="Tesla T4", memory_mib=15360, cores=100, split=10
            ),
        )
    )
    node = cluster.unique_name("fleet-node")
    await cluster.create_node(
        webhook.api,
        node,
        annotations={keys.NODE_DEVICES: registration.encode_registration(small)},
        ready=False,
    )
    try:
        manifest = cluster.pod_manifest("too-big", annotations={keys.LLM: HUGE_TEXT})

        async def refused() -> tuple[bool, object]:
            try:
                await _dry_run_create(webhook.api, webhook.namespace, manifest)
            except ApiException as e:
                return True, e
            return False, "admitted"

        error: Any = await cluster.poll_until(refused, timeout_s=10, what="a no-fit denial")
        assert error.status == 400 and "more than any GPU model" in message(error)
        assert "tensor-parallel" in message(error)
        unknown = replace_text(manifest, "model=no-such-model-at-all")
        error = await _refused(webhook, unknown)
        assert error.status == 400 and keys.LLM in message(error)
    finally:
        await cluster.delete_node(webhook.api, node)


def replace_text(manifest: dict[str, Any], text: str) -> dict[str, Any]:
    out = {**manifest, "metadata": {**manifest["metadata"], "name": "unknown-model"}}
    out["metadata"]["annotations"] = {keys.LLM: text}
    return out
