"""``kantaloupe scheduler`` behind the real kube-scheduler: where pods land, and why not."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from extender_harness import (
    SchedulerProcess,
    allocation_of,
    gpu_node,
    gpu_pod,
    node_agent_double,
    start_scheduler,
)
from kubernetes_asyncio import client as k8s

from kantaloupe.api import keys
from kantaloupe.kube.client import KubeClient
from kantaloupe.testing import ControlPlane, cluster

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def scheduler(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SchedulerProcess]:
    proc = start_scheduler(control_plane, tmp_path_factory.mktemp("extender"))
    yield proc
    assert proc.stop() == 0, proc.tail()


@pytest.fixture
async def kube(control_plane: ControlPlane) -> AsyncIterator[KubeClient]:
    async with await KubeClient.connect(control_plane.admin_kubeconfig) as c:
        yield c


@pytest.fixture
async def agent(kube: KubeClient) -> AsyncIterator[list[str]]:
    async with node_agent_double(kube) as served:
        yield served


async def _bound(api: k8s.ApiClient, ns: str, name: str) -> str:
    pod = await cluster.wait_for_pod_bound(api, ns, name, timeout_s=30)
    return str(pod.spec.node_name)


async def test_gpu_model_selection_and_exclusion(
    scheduler: SchedulerProcess,
    kube_api: k8s.ApiClient,
    kube: KubeClient,
    namespace: str,
    agent: list[str],
) -> None:
    label = cluster.unique_name("model")
    await gpu_node(kube_api, kube, f"{label}-a100", model="NVIDIA-A100-SXM4-80GB", label=label)
    await gpu_node(kube_api, kube, f"{label}-4090", model="NVIDIA-RTX-4090", label=label)
    limits = {"nvidia.com/gpu": 1, "nvidia.com/gpumem": 2000}
    await cluster.create_pod(
        kube_api, namespace, gpu_pod("want", label, limits, {keys.USE_GPU_TYPE: "A100"})
    )
    await cluster.create_pod(
        kube_api, namespace, gpu_pod("avoid", label, limits, {keys.NOUSE_GPU_TYPE: "a100"})
    )
    assert await _bound(kube_api, namespace, "want") == f"{label}-a100"
    assert await _bound(kube_api, namespace, "avoid") == f"{label}-4090"


async def test_uuid_selection(
    scheduler: SchedulerProcess,
    kube_api: k8s.ApiClient,
    kube: KubeClient,
    namespace: str,
    agent: list[str],
) -> None:
    label = cluster.unique_name("uuid")
    await gpu_node(kube_api, kube, f"{label}-1", label=label)
    await gpu_node(kube_api, kube, f"{label}-2", label=label)
    target = f"GPU-{label}-2-3"
    await cluster.create_pod(
        kube_api,
        namespace,
        gpu_pod(
            "pinned",
            label,
            {"nvidia.com/gpu": 1, "nvidia.com/gpumem": 1000},
            {keys.USE_GPU_UUID: target},
        ),
    )
    assert await _bound(kube_api, namespace, "pinned") == f"{label}-2"
    alloc = await allocation_of(kube, namespace, "pinned")
    assert alloc.containers[0][0].uuid == target


@pytest.mark.parametrize("policy", ["binpack", "spread"])
async def test_node_and_gpu_binpack_vs_spread(
    scheduler: SchedulerProcess,
    kube_api: k8s.ApiClient,
    kube: KubeClient,
    namespace: str,
    agent: list[str],
    policy: str,
) -> None:
    label = cluster.unique_name(policy)
    await gpu_node(kube_api, kube, f"{label}-1", label=label)
    await gpu_node(kube_api, kube, f"{label}-2", label=label)
    ann = {keys.NODE_SCHEDULER_POLICY: policy, keys.GPU_SCHEDULER_POLICY: policy}
    limits = {"nvidia.com/gpu": 1, "nvidia.com/gpumem": 1000, "nvidia.com/gpucores": 10}
    nodes, gpus = [], []
    for i in range(2):
        await cluster.create_pod(kube_api, namespace, gpu_pod(f"p{i}", label, limits, ann))
        nodes.append(await _bound(kube_api, namespace, f"p{i}"))
        gpus.append((await allocation_of(kube, namespace, f"p{i}")).containers[0][0].uuid)
    if policy == "binpack":
        assert nodes[0] == nodes[1] and gpus[0] == gpus[1]
    else:
        assert nodes[0] != nodes[1]
        # GPU spread on one node: a third pod on the fuller node takes a different GPU.
        await cluster.create_pod(
            kube_api,
            namespace,
            gpu_pod(
                "p2",
                label,
                limits,
                {**ann, keys.USE_GPU_UUID: ",".join(f"GPU-{nodes[0]}-{i}" for i in range(4))},
            ),
        )
        await _bound(kube_api, namespace, "p2")
        third = (await allocation_of(kube, namespace, "p2")).containers[0][0].uuid
        assert third != gpus[0]


async def test_multi_container_and_init_container_pod(
    scheduler: SchedulerProcess,
    kube_api: k8s.ApiClient,
    kube: KubeClient,
    namespace: str,
    agent: list[str],
) -> None:
    label = cluster.unique_name("multi")
    await gpu_node(kube_api, kube, f"{label}-1", label=label, gpus=2)
    manifest = gpu_pod(
        "multi",
        label,
        {"nvidia.com/gpu": 1, "nvidia.com/gpumem": 3000},
        init_limits={"nvidia.com/gpu": 1, "nvidia.com/gpumem": 5000},
        extra_containers=[{"cpu": "100m"}, {"nvidia.com/gpu": 2, "nvidia.com/gpumem": 1000}],
    )
    await cluster.create_pod(kube_api, namespace, manifest)
    await _bound(kube_api, namespace, "multi")
    alloc = await allocation_of(kube, namespace, "multi")
    assert alloc.init_count == 1
    assert alloc.names == ("init", "main", "side0", "side1")
    shapes = [[s.memory_mib for s in c] for c in alloc.containers]
    assert shapes == [[5000], [3000], [], [1000, 1000]]


async def test_pod_that_cannot_fit_stays_pending_with_reasons(
    scheduler: SchedulerProcess,
    kube_api: k8s.ApiClient,
    kube: KubeClient,
    namespace: str,
) -> None:
    label = cluster.unique_name("nofit")
    await gpu_node(kube_api, kube, f"{label}-1", label=label, gpus=2, memory_mib=8000)
    await cluster.create_pod(
        kube_api,
        namespace,
        gpu_pod("huge", label, {"nvidia.com/gpu": 1, "nvidia.com/gpumem": 16000}),
    )
    event = await cluster.wait_for_event(
        kube_api, namespace, involved_name="huge", reason="FilteringFailed", timeout_s=30
    )
    assert "insufficient memory" in event.message and f"{label}-1" in event.message
    await cluster.wait_for_pod_condition(
        kube_api, namespace, "huge", "PodScheduled", status="False", timeout_s=30
    )
    pod = await k8s.CoreV1Api(kube_api).read_namespaced_pod("huge", namespace)
    assert not pod.spec.node_name
