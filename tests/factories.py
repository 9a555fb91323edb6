"""Factories with valid defaults for the core's values."""

from __future__ import annotations

from kantaloupe.api.ids import DeviceUuid, NodeName
from kantaloupe.scheduling.model import Device, Node
from kantaloupe.scheduling.requests import ContainerSpec, PodRequest, parse_pod

RTX4090 = ("NVIDIA GeForce RTX 4090", 24564)
RTX4070 = ("NVIDIA GeForce RTX 4070", 12282)


def node(
    name: str = "node-0",
    gpus: int = 2,
    model: tuple[str, int] = RTX4090,
    split: int = 10,
    numa_nodes: int = 1,
    cpu_milli: int = 0,
    memory_mib: int = 0,
    healthy: bool = True,
) -> Node:
    return Node(
        NodeName(name),
        tuple(
            Device(
                DeviceUuid(f"GPU-{name}-{i}"),
                i,
                model[0],
                model[1],
                100,
                split,
                numa=i * numa_nodes // gpus,
                healthy=healthy,
            )
            for i in range(gpus)
        ),
        cpu_milli=cpu_milli,
        memory_mib=memory_mib,
    )


def fleet(nodes: int = 2, gpus: int = 4, **kwargs: object) -> list[Node]:
    return [node(f"node-{i}", gpus, **kwargs) for i in range(nodes)]  # type: ignore[arg-type]


def pod(
    uid: str = "pod-0",
    annotations: dict[str, str] | None = None,
    init: list[dict[str, object]] | None = None,
    **resources: object,
) -> PodRequest:
    """``pod(gpu=1, gpumem=4000)``: keyword names are the resource names after ``nvidia.com/``."""
    limits = {f"nvidia.com/{k.replace('_', '-')}": v for k, v in resources.items()}
    containers = [ContainerSpec("main", limits)]
    inits = [
        ContainerSpec(f"init-{i}", {f"nvidia.com/{k.replace('_', '-')}": v for k, v in r.items()})
        for i, r in enumerate(init or [])
    ]
    request = parse_pod(uid, annotations or {}, containers, inits)
    assert request is not None
    return request
