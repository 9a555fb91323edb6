"""The real control plane schedules: by itself, through an extender, and across faults."""

from __future__ import annotations

import dataclasses
import shutil
import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp.web
import pytest
from kubernetes_asyncio import client as k8s

from kantaloupe.testing import Binaries, ControlPlane, ControlPlaneError, cluster

pytestmark = pytest.mark.integration


class RecordingExtender:
    """A minimal scheduler extender: ``filter`` keeps this test's GPU nodes (its label and
    ``gpu=on``), ``bind`` creates the Binding. The wire format is kube-scheduler's: Go field
    names."""

    def __init__(self, api: k8s.ApiClient, label: tuple[str, str]) -> None:
        self.api = api
        self.label = label
        self.filters: list[dict[str, Any]] = []
        self.binds: list[dict[str, Any]] = []

    def app(self) -> aiohttp.web.Application:
        app = aiohttp.web.Application()
        app.router.add_post("/filter", self.filter)
        app.router.add_post("/bind", self.bind)
        return app

    async def filter(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        args = await request.json()
        self.filters.append(args)
        key, value = self.label
        nodes = await k8s.CoreV1Api(self.api).list_node(label_selector=f"{key}={value},gpu=on")
        ours = {n.metadata.name for n in nodes.items}
        names = args["NodeNames"] or []
        return aiohttp.web.json_response(
            {
                "NodeNames": [n for n in names if n in ours],
                "FailedNodes": {n: "not a node of this test" for n in names if n not in ours},
                "FailedAndUnresolvableNodes": {},
                "Error": "",
            }
        )

    async def bind(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        args = await request.json()
        self.binds.append(args)
        body = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": args["PodName"], "uid": args["PodUID"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": args["Node"]},
        }
        try:
            # The API answers a Status, which the client cannot decode as a Binding.
            resp = await k8s.CoreV1Api(self.api).create_namespaced_binding(
                args["PodNamespace"], body, _preload_content=False
            )
            resp.release()
        except k8s.ApiException as e:
            return aiohttp.web.json_response({"Error": f"binding failed: {e.status} {e.reason}"})
        return aiohttp.web.json_response({"Error": ""})


@pytest.fixture
async def gpu_label() -> tuple[str, str]:
    return ("kantaloupe.test/owner", cluster.unique_name("smoke"))


@pytest.fixture
async def extender(
    control_plane: ControlPlane, kube_api: k8s.ApiClient, gpu_label: tuple[str, str]
) -> AsyncIterator[RecordingExtender]:
    """The extender, listening where the plane's scheduler config points."""
    ext = RecordingExtender(kube_api, gpu_label)
    runner = aiohttp.web.AppRunner(ext.app(), access_log=None)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", control_plane.ports.extender)
    await site.start()
    try:
        yield ext
    finally:
        await runner.cleanup()


@pytest.fixture
async def nodes(
    kube_api: k8s.ApiClient, gpu_label: tuple[str, str]
) -> AsyncIterator[dict[str, str]]:
    """One plain node and one GPU node, both carrying this test's label."""
    names = {"plain": cluster.unique_name("node"), "gpu": cluster.unique_name("gpu-node")}
    key, value = gpu_label
    await cluster.create_node(kube_api, names["plain"], labels={key: value})
    await cluster.create_gpu_node(kube_api, names["gpu"], gpus=40, labels={key: value})
    yield names
    for name in names.values():
        await cluster.delete_node(kube_api, name)


async def test_gpu_node_is_ready_untainted_with_capacity(
    kube_api: k8s.ApiClient, nodes: dict[str, str]
) -> None:
    node = await k8s.CoreV1Api(kube_api).read_node(nodes["gpu"])
    assert not any(t.key == cluster.NOT_READY_TAINT for t in node.spec.taints or [])
    ready = [c for c in node.status.conditions if c.type == "Ready"]
    assert [c.status for c in ready] == ["True"]
    assert node.status.allocatable["nvidia.com/gpu"] == "40"
    assert node.status.capacity["pods"] == "110"
    assert node.metadata.labels["gpu"] == "on"


async def test_plain_pod_is_bound_by_the_default_profile(
    kube_api: k8s.ApiClient, namespace: str, nodes: dict[str, str]
) -> None:
    manifest = cluster.pod_manifest(
        "plain", node_selector={"kubernetes.io/hostname": nodes["plain"]}
    )
    await cluster.create_pod(kube_api, namespace, manifest)
    pod = await cluster.wait_for_pod_bound(kube_api, namespace, "plain")
    assert pod.spec.node_name == nodes["plain"]
    await cluster.wait_for_event(kube_api, namespace, involved_name="plain", reason="Scheduled")


async def test_gpu_pod_reaches_the_extender_which_binds_it(
    kube_api: k8s.ApiClient,
    namespace: str,
    nodes: dict[str, str],
    extender: RecordingExtender,
) -> None:
    manifest = cluster.pod_manifest(
        "gpu", scheduler_name="kantaloupe-scheduler", limits={"nvidia.com/gpu": 1}
    )
    await cluster.create_pod(kube_api, namespace, manifest)
    pod = await cluster.wait_for_pod_bound(kube_api, namespace, "gpu")

    assert pod.spec.node_name == nodes["gpu"]
    (filter_args,) = [a for a in extender.filters if a["Pod"]["metadata"]["name"] == "gpu"]
    assert filter_args["Nodes"] is None  # nodeCacheCapable: names only
    assert set(nodes.values()) <= set(filter_args["NodeNames"])
    # requests are defaulted from limits before the extender sees the pod
    requests = filter_args["Pod"]["spec"]["containers"][0]["resources"]["requests"]
    assert requests == {"nvidia.com/gpu": "1"}
    (bind_args,) = extender.binds
    assert bind_args == {
        "PodName": "gpu",
        "PodNamespace": namespace,
        "PodUID": pod.metadata.uid,
        "Node": pod.spec.node_name,
    }


async def test_unschedulable_gpu_pod_gets_an_event(
    kube_api: k8s.ApiClient, namespace: str, extender: RecordingExtender
) -> None:
    """No node of this test exists, so the extender refuses every node."""
    manifest = cluster.pod_manifest(
        "nowhere", scheduler_name="kantaloupe-scheduler", limits={"nvidia.com/gpu": 1}
    )
    await cluster.create_pod(kube_api, namespace, manifest)
    await cluster.wait_for_pod_condition(
        kube_api, namespace, "nowhere", "PodScheduled", status="False", reason="Unschedulable"
    )
    await cluster.wait_for_event(
        kube_api, namespace, involved_name="nowhere", reason="FailedScheduling"
    )
    assert not extender.binds


async def test_apiserver_restart_keeps_state_and_scheduling(control_plane: ControlPlane) -> None:
    async with cluster.api_client(control_plane.admin_kubeconfig) as api:
        ns = await cluster.create_namespace(api)
        node = cluster.unique_name("node")
        await cluster.create_node(api, node)
    control_plane.restart_apiserver()
    async with cluster.api_client(control_plane.admin_kubeconfig) as api:
        try:
            # state survived in etcd, and the scheduler's watches reconnected
            await k8s.CoreV1Api(api).read_node(node)
            selector = {"kubernetes.io/hostname": node}
            await cluster.create_pod(api, ns, cluster.pod_manifest("after", node_selector=selector))
            pod = await cluster.wait_for_pod_bound(api, ns, "after", timeout_s=30)
            assert pod.spec.node_name == node
        finally:
            await cluster.delete_namespace(api, ns)
            await cluster.delete_node(api, node)


async def test_scheduler_kill_and_restart_with_a_changed_config(
    control_plane: ControlPlane, kube_api: k8s.ApiClient, namespace: str, nodes: dict[str, str]
) -> None:
    original = control_plane.scheduler_config
    old_pid = control_plane.pids()["kube-scheduler"]
    control_plane.kill_scheduler()
    assert "kube-scheduler" not in control_plane.pids()

    # Created while no scheduler runs: bound only once the restarted one picks it up.
    selector = {"kubernetes.io/hostname": nodes["plain"]}
    await cluster.create_pod(
        kube_api,
        namespace,
        cluster.pod_manifest("renamed", scheduler_name="renamed-scheduler", node_selector=selector),
    )
    try:
        control_plane.start_scheduler(
            dataclasses.replace(original, scheduler_name="renamed-scheduler", http_timeout="5s")
        )
        assert control_plane.pids()["kube-scheduler"] != old_pid
        pod = await cluster.wait_for_pod_bound(kube_api, namespace, "renamed")
        assert pod.spec.node_name == nodes["plain"]
    finally:
        control_plane.restart_scheduler(original)
    assert control_plane.scheduler_config == original


def test_a_failing_component_is_named_with_its_log_tail(control_plane_binaries: Binaries) -> None:
    plane = ControlPlane(binaries=control_plane_binaries, extra_apiserver_args=["--no-such-flag"])
    with pytest.raises(ControlPlaneError) as info:
        plane.start()
    assert info.value.component == "kube-apiserver"
    assert "unknown flag: --no-such-flag" in str(info.value)
    assert plane.pids() == {}  # etcd, already running, was stopped too
    shutil.rmtree(plane.workdir)  # kept for diagnosis after a failure


async def test_extender_over_https_with_the_plane_ca(
    control_plane: ControlPlane,
    kube_api: k8s.ApiClient,
    namespace: str,
    nodes: dict[str, str],
    gpu_label: tuple[str, str],
) -> None:
    """The template's TLS settings work: kube-scheduler verifies the extender against a CA."""
    pair = control_plane.ca.issue_server(cluster.unique_name("extender"))
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(pair.cert_file, pair.key_file)
    ext = RecordingExtender(kube_api, gpu_label)
    runner = aiohttp.web.AppRunner(ext.app(), access_log=None)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
    await site.start()
    port = runner.addresses[0][1]
    original = control_plane.scheduler_config
    try:
        control_plane.restart_scheduler(
            dataclasses.replace(
                original,
                extender_url=f"https://127.0.0.1:{port}",
                enable_https=True,
                tls_ca_file=str(control_plane.ca_file),
            )
        )
        manifest = cluster.pod_manifest(
            "tls", scheduler_name="kantaloupe-scheduler", limits={"nvidia.com/gpu": 1}
        )
        await cluster.create_pod(kube_api, namespace, manifest)
        pod = await cluster.wait_for_pod_bound(kube_api, namespace, "tls")
        assert pod.spec.node_name == nodes["gpu"]
        assert [b["PodName"] for b in ext.binds] == ["tls"]
    finally:
        control_plane.restart_scheduler(original)
        await runner.cleanup()
