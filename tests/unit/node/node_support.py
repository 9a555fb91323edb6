"""Fakes and factories for the node agent's unit tests (Protocol fakes, no patching)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec

from kantaloupe.api import keys
from kantaloupe.api.allocation import AllocationV1, SliceV1, encode_allocation
from kantaloupe.api.handoff import HandoffPhase, HandoffV1, encode_handoff
from kantaloupe.api.ids import DeviceUuid
from kantaloupe.kube import errors as kube_errors
from kantaloupe.kube.objects import Pod
from kantaloupe.node.devices import Gpu, GpuUsage
from kantaloupe.node.monitor import RegionUsage

NODE = "gpu-node-1"
UUIDS = tuple(DeviceUuid(f"GPU-0000000{i}-aaaa-bbbb-cccc-dddddddddddd") for i in range(4))


def gpus(count: int = 4, *, memory_mib: int = 24000, numa: Sequence[int] = ()) -> tuple[Gpu, ...]:
    return tuple(
        Gpu(UUIDS[i], i, "NVIDIA A10", memory_mib, numa[i] if i < len(numa) else 0)
        for i in range(count)
    )


def pod(
    name: str,
    containers: Sequence[Sequence[tuple[int, int, int]]],
    *,
    uid: str | None = None,
    namespace: str = "default",
    phase: HandoffPhase = HandoffPhase.BINDING,
    served: tuple[int, ...] = (),
    since: float = 100.0,
    node: str = NODE,
    init_count: int = 0,
    priorities: Mapping[int, str] | None = None,
    resource_version: str = "7",
) -> Pod:
    """A pod in hand-off; each container lists (gpu number, memory MiB, cores)."""
    allocation = AllocationV1(
        node=node,
        containers=tuple(
            tuple(SliceV1(uuid=UUIDS[g], memory_mib=m, cores=c) for g, m, c in ctr)
            for ctr in containers
        ),
        names=tuple(f"c{i}" for i in range(len(containers))),
        init_count=init_count,
    )
    handoff = HandoffV1(phase=phase, node=node, since=since, served=served)
    specs: list[dict[str, Any]] = []
    for i in range(len(containers)):
        limits = {"nvidia.com/gpu": str(len(containers[i]))} if containers[i] else {}
        if priorities and i in priorities:
            limits["nvidia.com/priority"] = priorities[i]
        specs.append({"name": f"c{i}", "resources": {"limits": limits}})
    raw = {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": uid or f"uid-{name}",
            "resourceVersion": resource_version,
            "annotations": {
                keys.ALLOCATION: encode_allocation(allocation),
                keys.HANDOFF: encode_handoff(handoff),
            },
        },
        "spec": {
            "nodeName": node,
            "initContainers": specs[:init_count],
            "containers": specs[init_count:],
        },
    }
    return msgspec.convert(raw, Pod)


class FakePods:
    """The node's pods in memory; ``set_annotations`` honours resourceVersion like the API."""

    def __init__(self, pods: Sequence[Pod] = ()) -> None:
        self.pods = {(p.metadata.namespace, p.metadata.name): p for p in pods}
        self.writes: list[tuple[str, str, dict[str, str | None]]] = []
        self.conflicts = 0

    async def list(self) -> list[Pod]:
        return list(self.pods.values())

    async def get(self, namespace: str, name: str) -> Pod | None:
        return self.pods.get((namespace, name))

    def bump(self, namespace: str, name: str) -> None:
        """Someone else wrote the pod: its resourceVersion moves on."""
        p = self.pods[(namespace, name)]
        meta = msgspec.structs.replace(
            p.metadata, resource_version=str(int(p.metadata.resource_version) + 1)
        )
        self.pods[(namespace, name)] = msgspec.structs.replace(p, metadata=meta)

    async def set_annotations(
        self,
        namespace: str,
        name: str,
        annotations: Mapping[str, str | None],
        resource_version: str,
    ) -> None:
        p = self.pods[(namespace, name)]
        if self.conflicts:
            self.conflicts -= 1
            self.bump(namespace, name)
            raise kube_errors.ConflictError(409, "Conflict", "changed")
        if resource_version and resource_version != p.metadata.resource_version:
            raise kube_errors.ConflictError(409, "Conflict", "changed")
        merged = dict(p.metadata.annotations or {})
        for k, v in annotations.items():
            if v is None:
                merged.pop(k, None)
            else:
                merged[k] = v
        meta = msgspec.structs.replace(
            p.metadata,
            annotations=merged,
            resource_version=str(int(p.metadata.resource_version) + 1),
        )
        self.pods[(namespace, name)] = msgspec.structs.replace(p, metadata=meta)
        self.writes.append((namespace, name, dict(annotations)))


class FakeNode:
    def __init__(self, annotations: Mapping[str, str] | None = None) -> None:
        self.annotations: dict[str, str] = dict(annotations or {})
        self.capacity: dict[str, str] = {}
        self.annotation_writes = 0
        self.capacity_writes = 0

    async def annotation(self, key: str) -> str | None:
        return self.annotations.get(key)

    async def set_annotations(self, annotations: Mapping[str, str | None]) -> None:
        self.annotation_writes += 1
        for k, v in annotations.items():
            if v is None:
                self.annotations.pop(k, None)
            else:
                self.annotations[k] = v

    async def set_capacity(self, quantities: Mapping[str, str | None]) -> None:
        self.capacity_writes += 1
        self.capacity.update({k: v for k, v in quantities.items() if v is not None})


class FakeSource:
    def __init__(self, found: tuple[Gpu, ...]) -> None:
        self.found = found

    async def discover(self) -> tuple[Gpu, ...]:
        return self.found


class FakeNvml:
    def __init__(self, usage: Mapping[str, GpuUsage], *, failing: frozenset[str] = frozenset()):
        self._usage = dict(usage)
        self._failing = failing

    def usage(self, uuid: DeviceUuid) -> GpuUsage:
        if uuid in self._failing:
            raise RuntimeError("NVML_ERROR_GPU_IS_LOST")
        return self._usage[uuid]


class FakeRegions:
    """Region files by path (what the library would have written)."""

    def __init__(self, regions: Mapping[Path, RegionUsage] | None = None) -> None:
        self.regions = dict(regions or {})

    def read(self, path: Path) -> RegionUsage | None:
        return self.regions.get(path)
