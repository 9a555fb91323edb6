"""Values describing GPUs, nodes and what a pod was given."""

from __future__ import annotations

from dataclasses import dataclass, field

from kantaloupe.api.allocation import AllocationV1, SliceV1
from kantaloupe.api.ids import DeviceUuid, NodeName, PodUid
from kantaloupe.api.registration import DeviceV1, NodeDevicesV1


@dataclass(frozen=True, slots=True)
class Device:
    """One GPU as the scheduler sees it: capacities already scaled."""

    uuid: DeviceUuid
    index: int
    model: str
    memory_mib: int
    cores: int = 100
    split: int = 10
    numa: int = 0
    healthy: bool = True

    @classmethod
    def from_wire(cls, d: DeviceV1) -> Device:
        return cls(
            uuid=DeviceUuid(d.uuid),
            index=d.index,
            model=d.model,
            memory_mib=d.memory_mib,
            cores=d.cores,
            split=d.split,
            numa=d.numa,
            healthy=d.healthy,
        )

    def to_wire(self) -> DeviceV1:
        return DeviceV1(
            uuid=self.uuid,
            index=self.index,
            model=self.model,
            memory_mib=self.memory_mib,
            cores=self.cores,
            split=self.split,
            numa=self.numa,
            healthy=self.healthy,
        )


@dataclass(frozen=True, slots=True)
class Node:
    """A node's GPUs, plus its CPU and memory when the caller tracks them (0 = not tracked)."""

    name: NodeName
    devices: tuple[Device, ...]
    cpu_milli: int = 0
    memory_mib: int = 0
    schedulable: bool = True
    cordoned: frozenset[DeviceUuid] = field(default_factory=frozenset)

    @classmethod
    def from_registration(cls, name: str, doc: NodeDevicesV1) -> Node:
        return cls(name=NodeName(name), devices=tuple(Device.from_wire(d) for d in doc.devices))


@dataclass(frozen=True, slots=True)
class DeviceSlice:
    """What one container got of one GPU."""

    uuid: DeviceUuid
    memory_mib: int
    cores: int


@dataclass(frozen=True, slots=True)
class Placement:
    """Every container's slices on one node (init containers first)."""

    pod: PodUid
    node: NodeName
    containers: tuple[tuple[DeviceSlice, ...], ...]
    init_count: int = 0
    names: tuple[str, ...] = ()
    cpu_milli: int = 0
    memory_mib: int = 0

    def charges(self) -> dict[DeviceUuid, tuple[int, int, int]]:
        """Per device (memory, cores, tenants) the pod holds: max(init peak, app total)."""
        app: dict[DeviceUuid, list[int]] = {}
        peak: dict[DeviceUuid, list[int]] = {}
        for i, container in enumerate(self.containers):
            if i < self.init_count:
                for s in container:
                    p = peak.setdefault(s.uuid, [0, 0, 0])
                    p[0], p[1], p[2] = max(p[0], s.memory_mib), max(p[1], s.cores), max(p[2], 1)
            else:
                for s in container:
                    a = app.setdefault(s.uuid, [0, 0, 0])
                    a[0] += s.memory_mib
                    a[1] += s.cores
                    a[2] += 1
        out: dict[DeviceUuid, tuple[int, int, int]] = {}
        for uuid in app.keys() | peak.keys():
            a = app.get(uuid, [0, 0, 0])
            p = peak.get(uuid, [0, 0, 0])
            out[uuid] = (max(a[0], p[0]), max(a[1], p[1]), max(a[2], p[2]))
        return out

    def to_wire(self) -> AllocationV1:
        return AllocationV1(
            node=self.node,
            containers=tuple(
                tuple(SliceV1(uuid=s.uuid, memory_mib=s.memory_mib, cores=s.cores) for s in c)
                for c in self.containers
            ),
            names=self.names,
            init_count=self.init_count,
        )

    @classmethod
    def from_wire(cls, pod: PodUid, doc: AllocationV1) -> Placement:
        return cls(
            pod=pod,
            node=NodeName(doc.node),
            containers=tuple(
                tuple(DeviceSlice(DeviceUuid(s.uuid), s.memory_mib, s.cores) for s in c)
                for c in doc.containers
            ),
            init_count=doc.init_count,
            names=doc.names,
        )
