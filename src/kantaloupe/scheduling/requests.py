"""A pod's GPU request, parsed with HAMi's semantics.

- Init containers come first; each container asks separately.
- ``nvidia.com/gpu`` counts physical cards; memory and cores apply per card. When only memory or
  cores are given, one card is implied.
- ``nvidia.com/gpumem`` (MiB) wins over ``nvidia.com/gpumem-percentage``; neither means 100 %.
- Without ``nvidia.com/gpucores``, a request for the whole card's memory is exclusive (cores 100):
  a bare ``nvidia.com/gpu: 1`` is a whole card.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from kantaloupe.api import keys, resources
from kantaloupe.api.errors import InvalidRequestError
from kantaloupe.api.ids import DeviceUuid, PodUid
from kantaloupe.api.quantities import parse_count
from kantaloupe.scheduling.policy import (
    GpuPolicy,
    NodePolicy,
    Weights,
    parse_gpu_policy,
    parse_node_policy,
    parse_weights,
)

MAX_GPUS_PER_CONTAINER = 64


@dataclass(frozen=True, slots=True)
class ContainerSpec:
    """The parts of a container the core reads (limits win over requests, as kubelet does)."""

    name: str
    limits: Mapping[str, object] = field(default_factory=dict)
    requests: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ContainerRequest:
    """One container's GPU ask. ``memory_percent`` is used only when ``memory_mib`` is 0."""

    name: str
    count: int
    memory_mib: int
    memory_percent: int
    cores: int
    init: bool = False
    priority: int | None = None

    def memory_on(self, device_memory_mib: int) -> int:
        """MiB this container needs on a card of the given size."""
        if self.memory_mib:
            return self.memory_mib
        return device_memory_mib * self.memory_percent // 100


@dataclass(frozen=True, slots=True)
class Constraints:
    """User annotations that limit which GPUs qualify."""

    use_types: tuple[str, ...] = ()
    nouse_types: tuple[str, ...] = ()
    use_uuids: frozenset[DeviceUuid] = frozenset()
    nouse_uuids: frozenset[DeviceUuid] = frozenset()
    numa_bind: bool = False

    def type_allowed(self, model: str) -> bool:
        """Case-insensitive substring match, as HAMi does."""
        lowered = model.lower()
        if self.use_types and not any(t in lowered for t in self.use_types):
            return False
        return not any(t in lowered for t in self.nouse_types)

    def uuid_allowed(self, uuid: str) -> bool:
        if self.use_uuids and uuid not in self.use_uuids:
            return False
        return uuid not in self.nouse_uuids


@dataclass(frozen=True, slots=True)
class PodRequest:
    """Everything the core needs to place one pod."""

    uid: PodUid
    containers: tuple[ContainerRequest | None, ...]
    """Init containers first; ``None`` for a container without GPUs."""
    names: tuple[str, ...]
    init_count: int
    constraints: Constraints = Constraints()
    node_policy: NodePolicy | None = None
    gpu_policy: GpuPolicy | None = None
    weights: Weights = Weights()
    cpu_milli: int = 0
    memory_mib: int = 0

    @property
    def gpu_containers(self) -> tuple[ContainerRequest, ...]:
        return tuple(c for c in self.containers if c is not None)


def parse_container(spec: ContainerSpec, *, init: bool = False) -> ContainerRequest | None:
    """One container's GPU ask, or ``None`` when it asks for no GPU resource."""
    values = {**spec.requests, **spec.limits}
    present = {r: values[r] for r in resources.ALL if r in values}
    if not present.keys() - {resources.GPU_PRIORITY}:
        return None  # a priority alone asks for no GPU (HAMi adds no card for it)

    def get(resource: str, fix: str) -> int | None:
        if resource not in present:
            return None
        return parse_count(f"{resource} on container {spec.name!r}", present[resource], fix=fix)

    count = get(resources.GPU, "set the number of whole GPUs the container uses, e.g. 1")
    memory = get(resources.GPU_MEMORY, "set MiB per GPU, e.g. 4000")
    percent = get(resources.GPU_MEMORY_PERCENTAGE, "set 1-100, or nvidia.com/gpumem for MiB")
    cores = get(resources.GPU_CORES, "set 0-100 (percent of the GPU's compute)")
    priority = get(resources.GPU_PRIORITY, "set 0 (high) or 1 (low)")
    where = f"on container {spec.name!r}"
    if count is not None and not 1 <= count <= MAX_GPUS_PER_CONTAINER:
        raise InvalidRequestError(
            f"{resources.GPU} {where}",
            present[resources.GPU],
            f"must be 1-{MAX_GPUS_PER_CONTAINER}",
            "remove the GPU resources to run without a GPU",
        )
    if memory == 0:
        raise InvalidRequestError(
            f"{resources.GPU_MEMORY} {where}",
            0,
            "must be at least 1 MiB",
            "omit it to get the whole card's memory",
        )
    if percent is not None and not 1 <= percent <= 100:
        raise InvalidRequestError(
            f"{resources.GPU_MEMORY_PERCENTAGE} {where}",
            present[resources.GPU_MEMORY_PERCENTAGE],
            "must be 1-100",
            "use nvidia.com/gpumem for MiB",
        )
    if cores is not None and cores > 100:
        raise InvalidRequestError(
            f"{resources.GPU_CORES} {where}",
            present[resources.GPU_CORES],
            "must be 0-100",
            "it is a percent of one GPU's compute; ask for more GPUs for more compute",
        )
    if priority is not None and priority > 1:
        raise InvalidRequestError(
            f"{resources.GPU_PRIORITY} {where}", priority, "must be 0 or 1", "0 is high, 1 is low"
        )
    if memory is not None:
        percent = 0
    elif percent is None:
        percent = 100
    if cores is None:
        cores = 100 if memory is None and percent == 100 else 0
    return ContainerRequest(
        name=spec.name,
        count=1 if count is None else count,
        memory_mib=memory or 0,
        memory_percent=percent,
        cores=cores,
        init=init,
        priority=priority,
    )


def _split_list(raw: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in raw.split(",") if t.strip())


def parse_constraints(annotations: Mapping[str, str]) -> Constraints:
    numa = annotations.get(keys.NUMA_BIND, "false").strip().lower()
    if numa not in ("true", "false", ""):
        raise InvalidRequestError(keys.NUMA_BIND, numa, "must be true or false", 'write "true"')
    return Constraints(
        use_types=tuple(t.lower() for t in _split_list(annotations.get(keys.USE_GPU_TYPE, ""))),
        nouse_types=tuple(t.lower() for t in _split_list(annotations.get(keys.NOUSE_GPU_TYPE, ""))),
        use_uuids=frozenset(
            DeviceUuid(u) for u in _split_list(annotations.get(keys.USE_GPU_UUID, ""))
        ),
        nouse_uuids=frozenset(
            DeviceUuid(u) for u in _split_list(annotations.get(keys.NOUSE_GPU_UUID, ""))
        ),
        numa_bind=numa == "true",
    )


def parse_pod(
    uid: str,
    annotations: Mapping[str, str],
    containers: Sequence[ContainerSpec],
    init_containers: Sequence[ContainerSpec] = (),
    *,
    cpu_milli: int = 0,
    memory_mib: int = 0,
) -> PodRequest | None:
    """The pod's GPU request, or ``None`` when no container asks for a GPU resource."""
    parsed = tuple(parse_container(c, init=True) for c in init_containers) + tuple(
        parse_container(c) for c in containers
    )
    if all(c is None for c in parsed):
        return None
    node_policy = annotations.get(keys.NODE_SCHEDULER_POLICY)
    gpu_policy = annotations.get(keys.GPU_SCHEDULER_POLICY)
    weights = annotations.get(keys.DEVICE_SCORING_WEIGHTS)
    return PodRequest(
        uid=PodUid(uid),
        containers=parsed,
        names=tuple(c.name for c in (*init_containers, *containers)),
        init_count=len(init_containers),
        constraints=parse_constraints(annotations),
        node_policy=parse_node_policy(node_policy) if node_policy else None,
        gpu_policy=parse_gpu_policy(gpu_policy) if gpu_policy else None,
        weights=parse_weights(weights) if weights else Weights(),
        cpu_milli=cpu_milli,
        memory_mib=memory_mib,
    )
