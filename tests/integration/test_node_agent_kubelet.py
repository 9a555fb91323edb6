"""The device plugin against a kubelet we did not write: the Go test kubelet on the official
``k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1`` package, over real gRPC on unix sockets."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import msgspec
import pytest
from test_node_agent_support import (  # noqa: F401 (plugin_dir is a fixture)
    TestKubelet,
    build_testkubelet,
    plugin_dir,
    run_testkubelet,
)

from kantaloupe.api import keys
from kantaloupe.api.allocation import AllocationV1, SliceV1, encode_allocation
from kantaloupe.api.handoff import HandoffPhase, HandoffV1, decode_handoff, encode_handoff
from kantaloupe.api.ids import DeviceUuid, make_slot_id
from kantaloupe.kube.objects import Pod
from kantaloupe.node.config import NodeConfig
from kantaloupe.node.devices import DeviceTable, Gpu
from kantaloupe.node.plugin import AnswerSettings, DevicePluginService, PluginServer
from kantaloupe.node.statedir import StateDir

NODE = "kubelet-node"
UUIDS = tuple(DeviceUuid(f"GPU-1111111{i}-2222-3333-4444-555555555555") for i in range(3))
SPLIT = 3


class MemoryPods:
    def __init__(self, pods: Sequence[Pod]) -> None:
        self.pods = {p.metadata.name: p for p in pods}

    async def list(self) -> list[Pod]:
        return list(self.pods.values())

    async def get(self, namespace: str, name: str) -> Pod | None:
        return self.pods.get(name)

    async def set_annotations(
        self, namespace: str, name: str, annotations: dict[str, str | None], resource_version: str
    ) -> None:
        p = self.pods[name]
        merged = {**(p.metadata.annotations or {}), **{k: v for k, v in annotations.items() if v}}
        meta = msgspec.structs.replace(p.metadata, annotations=merged)
        self.pods[name] = msgspec.structs.replace(p, metadata=meta)


def handoff_pod(name: str, containers: Sequence[Sequence[int]]) -> Pod:
    allocation = AllocationV1(
        node=NODE,
        containers=tuple(
            tuple(SliceV1(UUIDS[g], 1000 * (g + 1), 25) for g in c) for c in containers
        ),
        names=tuple(f"c{i}" for i in range(len(containers))),
    )
    raw = {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"uid-{name}",
            "resourceVersion": "1",
            "annotations": {
                keys.ALLOCATION: encode_allocation(allocation),
                keys.HANDOFF: encode_handoff(
                    HandoffV1(phase=HandoffPhase.BINDING, node=NODE, since=1.0)
                ),
            },
        },
        "spec": {
            "nodeName": NODE,
            "containers": [{"name": f"c{i}"} for i in range(len(containers))],
        },
    }
    return msgspec.convert(raw, Pod)


class Rig:
    def __init__(
        self, kubelet: TestKubelet, table: DeviceTable, pods: MemoryPods, server: PluginServer
    ):
        self.kubelet = kubelet
        self.table = table
        self.pods = pods
        self.server = server


@pytest.fixture
async def rig(plugin_dir: Path, tmp_path: Path) -> AsyncIterator[Rig]:  # noqa: F811
    binary = build_testkubelet()
    table = DeviceTable(NodeConfig(split_count=SPLIT))
    table.update(tuple(Gpu(u, i, "NVIDIA L4", 23034, numa=i % 2) for i, u in enumerate(UUIDS)))
    pods = MemoryPods([])
    service = DevicePluginService(
        node=NODE,
        table=table,
        pods=pods,
        state_dir=StateDir(tmp_path / "state"),
        settings=AnswerSettings(config=table.config, library=None),
    )
    server = PluginServer(service, plugin_dir, poll_s=0.05)
    async with run_testkubelet(binary, plugin_dir) as kubelet:
        task = asyncio.create_task(server.run(), name="plugin-server")
        try:
            await kubelet.wait_event("devices")
            yield Rig(kubelet, table, pods, server)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def slot(g: int, r: int) -> str:
    return make_slot_id(UUIDS[g], r)


async def test_registers_with_the_v1beta1_facts(rig: Rig) -> None:
    (event,) = [e for e in rig.kubelet.events if e["event"] == "registered"]
    assert event["request"] == {
        "version": "v1beta1",
        "endpoint": "kantaloupe-nvidia.sock",
        "resource_name": "nvidia.com/gpu",
        "options": {"pre_start_required": False, "get_preferred_allocation_available": True},
    }
    options = await rig.kubelet.call("options")
    assert options["options"]["get_preferred_allocation_available"] is True


async def test_list_and_watch_streams_slots_numa_and_health(rig: Rig) -> None:
    first = await rig.kubelet.wait_event("devices")
    assert [d["id"] for d in first["devices"]] == [
        slot(g, r) for g in range(3) for r in range(SPLIT)
    ]
    assert {d["health"] for d in first["devices"]} == {"Healthy"}
    assert [d["numa"] for d in first["devices"][SPLIT : SPLIT + 1]] == [[1]]

    seen = len(rig.kubelet.events)
    rig.table.mark_unhealthy(UUIDS[1], "XID 79")
    update = await rig.kubelet.wait_event("devices", after=seen)
    health = {d["id"]: d["health"] for d in update["devices"]}
    assert health[slot(1, 0)] == "Unhealthy" and health[slot(0, 0)] == "Healthy"


async def test_preferred_allocation_follows_the_scheduler(rig: Rig) -> None:
    rig.pods.pods["p"] = handoff_pod("p", [[0, 2]])
    available = [slot(g, r) for g in range(3) for r in range(SPLIT)]
    reply = await rig.kubelet.call("preferred", available=available, must_include=[], size=2)
    assert reply["ok"] and sorted(reply["devices"]) == [slot(0, 0), slot(2, 0)]


async def test_allocate_one_container(rig: Rig) -> None:
    rig.pods.pods["p"] = handoff_pod("p", [[1]])
    reply = await rig.kubelet.allocate([slot(1, 2)])
    assert reply["ok"], reply
    (container,) = reply["containers"]
    assert container["envs"]["NVIDIA_VISIBLE_DEVICES"] == UUIDS[1]
    assert container["envs"]["CUDA_DEVICE_MEMORY_LIMIT_0"] == "2000m"
    assert container["envs"]["CUDA_DEVICE_SM_LIMIT"] == "25"
    assert container["mounts"] == [
        {
            "container_path": "/usr/local/kantaloupe/state",
            "host_path": container["mounts"][0]["host_path"],
            "read_only": False,
        }
    ]
    assert container["mounts"][0]["host_path"].endswith("/containers/uid-p_c0")
    doc = decode_handoff(rig.pods.pods["p"].metadata.annotations[keys.HANDOFF])  # type: ignore[index]
    assert doc.phase == HandoffPhase.DONE


async def test_allocate_several_containers_in_one_call(rig: Rig) -> None:
    rig.pods.pods["p"] = handoff_pod("p", [[0], [1, 2]])
    reply = await rig.kubelet.allocate([slot(0, 0)], [slot(1, 0), slot(2, 1)])
    assert reply["ok"], reply
    envs = [c["envs"] for c in reply["containers"]]
    assert envs[0]["NVIDIA_VISIBLE_DEVICES"] == UUIDS[0]
    assert envs[1]["NVIDIA_VISIBLE_DEVICES"] == f"{UUIDS[1]},{UUIDS[2]}"
    assert envs[1]["CUDA_DEVICE_MEMORY_LIMIT_1"] == "3000m"


async def test_allocate_errors_reach_kubelet_with_their_codes(rig: Rig) -> None:
    bad = await rig.kubelet.allocate(["not-a-slot"])
    assert (bad["ok"], bad["code"]) == (False, "InvalidArgument")
    assert "not-a-slot" in bad["message"]
    orphan = await rig.kubelet.allocate([slot(0, 0)])
    assert (orphan["ok"], orphan["code"]) == (False, "FailedPrecondition")
    assert "no pod in hand-off" in orphan["message"]


async def test_kubelet_restart_is_followed_by_a_new_registration(rig: Rig) -> None:
    seen = len(rig.kubelet.events)
    assert (await rig.kubelet.call("restart"))["ok"]
    await rig.kubelet.wait_event("registered", after=seen)
    await rig.kubelet.wait_event("devices", after=seen)
    assert rig.server.registrations == 2
    rig.pods.pods["p"] = handoff_pod("p", [[0]])
    assert (await rig.kubelet.allocate([slot(0, 1)]))["ok"]
