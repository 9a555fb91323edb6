"""The extender under faults: killed mid-burst, broken or vanished registrations."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
from extender_harness import (
    SchedulerProcess,
    gpu_node,
    gpu_pod,
    node_agent_double,
    over_allocations,
    start_scheduler,
)
from kubernetes_asyncio import client as k8s

from kantaloupe.api import keys
from kantaloupe.kube import objects
from kantaloupe.kube.client import KubeClient, node_path
from kantaloupe.testing import ControlPlane, cluster

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def scheduler(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SchedulerProcess]:
    proc = start_scheduler(control_plane, tmp_path_factory.mktemp("extender"))
    yield proc
    proc.stop()


@pytest.fixture
async def kube(control_plane: ControlPlane) -> AsyncIterator[KubeClient]:
    async with await KubeClient.connect(control_plane.admin_kubeconfig) as c:
        yield c


async def test_killed_mid_burst_never_over_allocates_and_binds_everything(
    scheduler: SchedulerProcess, kube_api: k8s.ApiClient, kube: KubeClient, namespace: str
) -> None:
    label = cluster.unique_name("burst")
    capacity: dict[str, tuple[int, int]] = {}
    for n in range(2):
        await gpu_node(
            kube_api, kube, f"{label}-{n}", label=label, gpus=2, memory_mib=10000, split=4
        )
        for g in range(2):
            capacity[f"GPU-{label}-{n}-{g}"] = (10000, 4)
    # 16 slots by split; memory allows 16 × 2500 MiB: exactly full when all 16 land.
    limits = {"nvidia.com/gpu": 1, "nvidia.com/gpumem": 2500, "nvidia.com/gpucores": 20}
    async with node_agent_double(kube):
        names = [f"b{i}" for i in range(16)]
        await asyncio.gather(
            *(cluster.create_pod(kube_api, namespace, gpu_pod(n, label, limits)) for n in names)
        )
        core = k8s.CoreV1Api(kube_api)

        async def bound_count() -> int:
            pods = await core.list_namespaced_pod(namespace)
            return sum(1 for p in pods.items if p.spec.node_name)

        deadline = asyncio.get_running_loop().time() + 30
        while await bound_count() < 4:
            assert asyncio.get_running_loop().time() < deadline, scheduler.tail()
            await asyncio.sleep(0.02)
        scheduler.kill()
        assert await over_allocations(kube, namespace, capacity) == []
        await asyncio.to_thread(scheduler.start)
        for name in names:
            await cluster.wait_for_pod_bound(kube_api, namespace, name, timeout_s=60)
        assert await over_allocations(kube, namespace, capacity) == []
        # Full now: one more pod must stay pending, with reasons.
        await cluster.create_pod(kube_api, namespace, gpu_pod("extra", label, limits))
        await cluster.wait_for_event(
            kube_api, namespace, involved_name="extra", reason="FilteringFailed", timeout_s=30
        )


@pytest.mark.parametrize("fault", ["malformed", "removed"])
async def test_broken_registration_gets_no_pods_and_an_event(
    scheduler: SchedulerProcess,
    kube_api: k8s.ApiClient,
    kube: KubeClient,
    namespace: str,
    fault: str,
) -> None:
    label = cluster.unique_name(fault)
    bad = f"{label}-bad"
    await gpu_node(kube_api, kube, bad, label=label)
    await gpu_node(kube_api, kube, f"{label}-good", label=label)
    value = '{"v":1,"devices":[{"uuid":""}]}' if fault == "malformed" else None
    await kube.patch_annotations(node_path(bad), {keys.NODE_DEVICES: value}, objects.Node)
    reason = "GpuRegistrationInvalid" if fault == "malformed" else "GpuRegistrationMissing"
    await cluster.wait_for_event(
        kube_api, "default", involved_name=bad, reason=reason, timeout_s=30
    )
    limits = {"nvidia.com/gpu": 1, "nvidia.com/gpumem": 1000}
    async with node_agent_double(kube):
        for i in range(4):
            await cluster.create_pod(
                kube_api,
                namespace,
                gpu_pod(f"p{i}", label, limits, {keys.NODE_SCHEDULER_POLICY: "spread"}),
            )
        for i in range(4):
            pod = await cluster.wait_for_pod_bound(kube_api, namespace, f"p{i}", timeout_s=30)
            assert pod.spec.node_name == f"{label}-good"
    assert scheduler.alive(), scheduler.tail()
