"""Allocate: validation, the composed env and mounts, the hand-off bookkeeping."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from node_support import NODE, UUIDS, FakePods, gpus, pod

from kantaloupe.api import keys
from kantaloupe.api.allocation import SliceV1
from kantaloupe.api.handoff import HandoffPhase, decode_handoff
from kantaloupe.api.ids import make_slot_id
from kantaloupe.node import plugin
from kantaloupe.node.config import CorePolicy, NodeConfig
from kantaloupe.node.devices import DeviceTable
from kantaloupe.node.library import InstalledLibrary
from kantaloupe.node.statedir import StateDir

LIB = InstalledLibrary(
    Path("/usr/local/kantaloupe/libkantaloupe-core.so"),
    Path("/usr/local/kantaloupe/ld.so.preload"),
    "0" * 64,
    copied=False,
)


def table(config: NodeConfig | None = None, count: int = 4) -> DeviceTable:
    t = DeviceTable(config or NodeConfig(split_count=4))
    t.update(gpus(count, numa=(0, 0, 1, 1)))
    return t


def service(tmp_path: Path, pods: FakePods, **kw: object) -> plugin.DevicePluginService:
    config = kw.pop("config", NodeConfig(split_count=4))
    assert isinstance(config, NodeConfig)
    return plugin.DevicePluginService(
        node=NODE,
        table=table(config),
        pods=pods,
        state_dir=StateDir(tmp_path),
        settings=plugin.AnswerSettings(config=config, library=LIB, cdi=bool(kw.get("cdi"))),
        clock=lambda: 1234.0,
    )


# ---- pure steps ----------------------------------------------------------------------------


def test_compose_gives_hami_env_and_the_three_mounts() -> None:
    slices = (SliceV1(UUIDS[1], 3000, 30), SliceV1(UUIDS[2], 5000, 30))
    answer = plugin.compose(
        slices,
        1,
        Path("/var/lib/kantaloupe/containers/u_c"),
        plugin.AnswerSettings(config=NodeConfig(), library=LIB),
    )
    assert answer.envs == {
        "NVIDIA_VISIBLE_DEVICES": f"{UUIDS[1]},{UUIDS[2]}",
        "CUDA_DEVICE_MEMORY_LIMIT_0": "3000m",
        "CUDA_DEVICE_MEMORY_LIMIT_1": "5000m",
        "CUDA_DEVICE_SM_LIMIT": "30",
        "CUDA_DEVICE_MEMORY_SHARED_CACHE": "/usr/local/kantaloupe/state/region.cache",
        "CUDA_TASK_PRIORITY": "1",
    }
    assert answer.mounts == (
        plugin.Mount(str(LIB.library), str(LIB.library), read_only=True),
        plugin.Mount("/etc/ld.so.preload", str(LIB.preload), read_only=True),
        plugin.Mount(
            "/usr/local/kantaloupe/state", "/var/lib/kantaloupe/containers/u_c", read_only=False
        ),
    )
    assert answer.cdi_devices == ()


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        pytest.param(NodeConfig(), {}, id="defaults"),
        pytest.param(
            NodeConfig(core_utilization_policy=CorePolicy.FORCE),
            {"GPU_CORE_UTILIZATION_POLICY": "force"},
            id="policy",
        ),
        pytest.param(NodeConfig(memory_scaling=2.0), {"CUDA_OVERSUBSCRIBE": "true"}, id="oversub"),
    ],
)
def test_node_settings_add_env(config: NodeConfig, expected: dict[str, str]) -> None:
    assert {**plugin.policy_env(config), **plugin.oversubscribe_env(config)} == expected


def test_cdi_names_and_no_library() -> None:
    slices = (SliceV1(UUIDS[0], 1, 1),)
    answer = plugin.compose(
        slices, None, Path("/s"), plugin.AnswerSettings(config=NodeConfig(), library=None, cdi=True)
    )
    assert answer.cdi_devices == (f"nvidia.com/gpu={UUIDS[0]}",)
    assert [m.container_path for m in answer.mounts] == ["/usr/local/kantaloupe/state"]


def test_slot_list_has_split_count_slots_with_numa() -> None:
    t = table(NodeConfig(split_count=3))
    t.mark_unhealthy(UUIDS[3], "XID 79")
    devices = plugin.slot_list(t)
    assert len(devices) == 12
    assert make_slot_id(UUIDS[0], 0) == devices[0].ID
    assert [n.ID for n in devices[6].topology.nodes] == [1]
    assert {d.health for d in devices[9:]} == {"Unhealthy"}
    no_numa = DeviceTable(NodeConfig(split_count=1, numa_topology=False))
    no_numa.update(gpus(1))
    assert not plugin.slot_list(no_numa)[0].HasField("topology")


@pytest.mark.parametrize(
    ("ids", "code", "words"),
    [
        pytest.param([], grpc.StatusCode.INVALID_ARGUMENT, "names no device", id="empty"),
        pytest.param(["junk"], grpc.StatusCode.INVALID_ARGUMENT, "'junk'", id="malformed"),
        pytest.param(["GPU-x::0"], grpc.StatusCode.INVALID_ARGUMENT, "GPU-x", id="unknown"),
        pytest.param(
            [make_slot_id(UUIDS[0], 9)], grpc.StatusCode.INVALID_ARGUMENT, "::9", id="replica"
        ),
        pytest.param(
            [make_slot_id(UUIDS[3], 0)],
            grpc.StatusCode.FAILED_PRECONDITION,
            "unhealthy",
            id="unhealthy",
        ),
    ],
)
def test_validate_slots_names_the_device(ids: list[str], code: grpc.StatusCode, words: str) -> None:
    t = table()
    t.mark_unhealthy(UUIDS[3], "XID 79")
    with pytest.raises(plugin.AllocateError) as info:
        plugin.validate_slots(t, ids)
    assert info.value.code == code
    assert words in info.value.message


# ---- the service ---------------------------------------------------------------------------


async def test_allocate_serves_containers_in_turn_and_finishes(tmp_path: Path) -> None:
    pods = FakePods([pod("a", [[(0, 1000, 20)], [], [(1, 2000, 50), (2, 2000, 50)]])])
    svc = service(tmp_path, pods)

    (first,) = await svc.allocate([[make_slot_id(UUIDS[0], 2)]])
    assert first.envs["CUDA_DEVICE_MEMORY_LIMIT_0"] == "1000m"
    handoff_doc = decode_handoff(pods.pods[("default", "a")].metadata.annotations[keys.HANDOFF])  # type: ignore[index]
    assert handoff_doc.served == (0,) and handoff_doc.phase == HandoffPhase.BINDING

    (second,) = await svc.allocate([[make_slot_id(UUIDS[2], 0), make_slot_id(UUIDS[1], 3)]])
    assert second.envs["NVIDIA_VISIBLE_DEVICES"] == f"{UUIDS[1]},{UUIDS[2]}"
    handoff_doc = decode_handoff(pods.pods[("default", "a")].metadata.annotations[keys.HANDOFF])  # type: ignore[index]
    assert handoff_doc.phase == HandoffPhase.DONE and handoff_doc.served == (0, 2)

    states = StateDir(tmp_path).containers()
    assert [(s.pod_uid, s.record.container if s.record else None) for s in states] == [
        ("uid-a", "c0"),
        ("uid-a", "c2"),
    ]
    assert states[1].record is not None and states[1].record.allocated_at == 1234.0


async def test_one_allocate_call_for_several_containers(tmp_path: Path) -> None:
    pods = FakePods([pod("a", [[(0, 1000, 20)], [(1, 1000, 20)]])])
    answers = await service(tmp_path, pods).allocate(
        [[make_slot_id(UUIDS[0], 0)], [make_slot_id(UUIDS[1], 0)]]
    )
    assert [a.envs["NVIDIA_VISIBLE_DEVICES"] for a in answers] == [UUIDS[0], UUIDS[1]]
    assert len(pods.writes) == 1
    doc = decode_handoff(pods.writes[0][2][keys.HANDOFF] or "")
    assert doc.phase == HandoffPhase.DONE


async def test_allocate_without_a_pod_in_hand_off_is_a_failed_precondition(tmp_path: Path) -> None:
    pods = FakePods([pod("a", [[(0, 1000, 20)]])])
    with pytest.raises(plugin.AllocateError) as info:
        await service(tmp_path, pods).allocate([[make_slot_id(UUIDS[1], 0)]])
    assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert NODE in info.value.message and UUIDS[1] in info.value.message
    assert pods.writes == []


async def test_two_pods_on_disjoint_gpus_are_told_apart(tmp_path: Path) -> None:
    pods = FakePods([pod("a", [[(0, 1000, 20)]]), pod("b", [[(1, 3000, 20)]])])
    (answer,) = await service(tmp_path, pods).allocate([[make_slot_id(UUIDS[1], 1)]])
    assert answer.envs["CUDA_DEVICE_MEMORY_LIMIT_0"] == "3000m"
    assert [w[1] for w in pods.writes] == ["b"]


async def test_a_conflicting_write_is_merged_and_retried(tmp_path: Path) -> None:
    pods = FakePods([pod("a", [[(0, 1000, 20)]])])
    pods.conflicts = 1
    await service(tmp_path, pods).allocate([[make_slot_id(UUIDS[0], 0)]])
    doc = decode_handoff(pods.pods[("default", "a")].metadata.annotations[keys.HANDOFF])  # type: ignore[index]
    assert doc.phase == HandoffPhase.DONE


async def test_state_dir_failure_marks_the_hand_off_failed(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    pods = FakePods([pod("a", [[(0, 1000, 20)]])])
    svc = plugin.DevicePluginService(
        node=NODE,
        table=table(),
        pods=pods,
        state_dir=StateDir(blocker),
        settings=plugin.AnswerSettings(config=NodeConfig(split_count=4), library=None),
    )
    with pytest.raises(plugin.AllocateError) as info:
        await svc.allocate([[make_slot_id(UUIDS[0], 0)]])
    assert info.value.code == grpc.StatusCode.INTERNAL
    doc = decode_handoff(pods.pods[("default", "a")].metadata.annotations[keys.HANDOFF])  # type: ignore[index]
    assert doc.phase == HandoffPhase.FAILED and "state directory" in doc.message
