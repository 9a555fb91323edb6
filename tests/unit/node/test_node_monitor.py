"""The monitor's metrics, computed at scrape time into a fresh registry; state cleanup."""

from __future__ import annotations

import os
from pathlib import Path

from node_support import UUIDS, FakeNvml, FakePods, FakeRegions, gpus, pod
from prometheus_client import CollectorRegistry

from kantaloupe.api.allocation import SliceV1
from kantaloupe.node.devices import GpuUsage
from kantaloupe.node.monitor import (
    DeviceRegionUsage,
    MonitorCollector,
    RegionUsage,
    StateCleaner,
)
from kantaloupe.node.statedir import ContainerRecordV1, StateDir

MIB = 1024 * 1024


def record(pod_uid: str, name: str, *slices: SliceV1) -> ContainerRecordV1:
    return ContainerRecordV1(
        namespace="ns",
        pod=f"pod-{pod_uid}",
        pod_uid=pod_uid,
        container=name,
        index=0,
        devices=slices,
    )


def registry_for(tmp_path: Path, regions: FakeRegions, nvml: FakeNvml) -> CollectorRegistry:
    registry = CollectorRegistry()
    found = gpus(2)
    registry.register(
        MonitorCollector(
            node="n1",
            gpus=lambda: found,
            nvml=nvml,
            state_dir=StateDir(tmp_path),
            regions=regions,
            registered=lambda: True,
        )
    )
    return registry


def test_host_and_container_metrics(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    d = state.prepare(record("u1", "app", SliceV1(UUIDS[0], 1000, 30), SliceV1(UUIDS[1], 2000, 30)))
    state.prepare(record("u2", "idle", SliceV1(UUIDS[1], 500, 0)))
    regions = FakeRegions(
        {
            d / "region.cache": RegionUsage(
                devices=(
                    DeviceRegionUsage(0, UUIDS[0], 300 * MIB),
                    DeviceRegionUsage(1, UUIDS[1], 0),
                ),
                last_kernel_age_s=4.5,
            )
        }
    )
    nvml = FakeNvml({UUIDS[0]: GpuUsage(5 * MIB, 40)}, failing=frozenset({UUIDS[1]}))
    registry = registry_for(tmp_path, regions, nvml)
    host = {"node": "n1", "device_index": "0", "device_uuid": UUIDS[0], "device_type": "NVIDIA A10"}
    assert registry.get_sample_value("hami_host_gpu_memory_used_bytes", host) == 5 * MIB
    assert registry.get_sample_value("hami_host_gpu_utilization_ratio", host) == 0.4
    assert registry.get_sample_value("kantaloupe_node_gpu_healthy", host) == 1.0
    lost = {**host, "device_index": "1", "device_uuid": UUIDS[1]}
    assert registry.get_sample_value("hami_host_gpu_memory_used_bytes", lost) is None
    ctr = {
        "namespace": "ns",
        "pod": "pod-u1",
        "container": "app",
        "vdevice_index": "0",
        "device_uuid": UUIDS[0],
    }
    assert registry.get_sample_value("hami_vgpu_memory_used_bytes", ctr) == 300 * MIB
    assert registry.get_sample_value("hami_vgpu_memory_limit_bytes", ctr) == 1000 * MIB
    assert registry.get_sample_value("hami_container_last_kernel_elapsed_seconds", ctr) == 4.5
    idle = {**ctr, "pod": "pod-u2", "container": "idle", "device_uuid": UUIDS[1]}
    assert registry.get_sample_value("hami_vgpu_memory_limit_bytes", idle) == 500 * MIB
    assert registry.get_sample_value("hami_vgpu_memory_used_bytes", idle) is None
    assert registry.get_sample_value("kantaloupe_node_agent_registered", {"node": "n1"}) == 1.0


async def test_cleanup_removes_state_of_deleted_pods_after_grace(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    keep = state.prepare(record("uid-alive", "c", SliceV1(UUIDS[0], 1, 1)))
    gone = state.prepare(record("uid-gone", "c", SliceV1(UUIDS[0], 1, 1)))
    young = state.prepare(record("uid-young", "c", SliceV1(UUIDS[0], 1, 1)))
    for path in (keep, gone):
        os.utime(path, (1000.0, 1000.0))
    os.utime(young, (1990.0, 1990.0))
    cleaner = StateCleaner(
        state, FakePods([pod("alive", [[(0, 1, 1)]])]), grace_s=60, clock=lambda: 2000.0
    )
    removed = await cleaner.sweep()
    assert [r.pod_uid for r in removed] == ["uid-gone"]
    assert keep.exists() and young.exists() and not gone.exists()
    registry = registry_for(tmp_path, FakeRegions(), FakeNvml({}))
    assert (
        registry.get_sample_value(
            "hami_vgpu_memory_limit_bytes",
            {
                "namespace": "ns",
                "pod": "pod-uid-gone",
                "container": "c",
                "vdevice_index": "0",
                "device_uuid": UUIDS[0],
            },
        )
        is None
    )


def test_library_regions_adapter_reads_a_region_file(tmp_path: Path) -> None:
    import struct

    from kantaloupe.node import region
    from kantaloupe.node.regions import LibraryRegions

    data = bytearray(region.REGION_SIZE)
    struct.pack_into(
        "<IIQIIIIQ64xQ16x",
        data,
        0,
        region.MAGIC,
        region.ABI_VERSION,
        region.REGION_SIZE,
        1,
        region.MAX_PROCS,
        1,
        0,
        0,
        5_000_000_000,
    )
    struct.pack_into(
        "<48sQQQIIIIqQQQQQ",
        data,
        region.DEVICES_OFFSET,
        UUIDS[0].encode(),
        1000 * MIB,
        0,
        300 * MIB,
        1,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
    )
    path = tmp_path / "region.cache"
    path.write_bytes(bytes(data))
    usage = LibraryRegions(clock_ns=lambda: 7_500_000_000).read(path)
    assert usage == RegionUsage(
        devices=(DeviceRegionUsage(0, UUIDS[0], 300 * MIB, 1000 * MIB),), last_kernel_age_s=2.5
    )
    assert LibraryRegions().read(tmp_path / "absent") is None
    (tmp_path / "junk").write_bytes(b"x" * 200)
    assert LibraryRegions().read(tmp_path / "junk") is None
