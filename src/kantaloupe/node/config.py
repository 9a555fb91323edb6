"""The per-node configuration file: how this node's GPUs are offered (split, scaling, exclusions).

One file may serve a whole cluster (a ConfigMap mounted on every agent): top-level settings apply
to every node, and an entry of ``nodes`` overrides them for the node of that name::

    version: v1
    split_count: 10              # containers that may share one GPU
    memory_scaling: 1.0          # schedulable MiB = physical MiB x this (> 1 oversubscribes)
    core_scaling: 1.0            # schedulable cores = 100 x this
    core_utilization_policy: default   # default | force | disable (GPU_CORE_UTILIZATION_POLICY)
    numa_topology: true          # report each GPU's NUMA node to kubelet's Topology Manager
    exclude: {uuids: [GPU-...], indexes: [7]}
    nodes:
      - name: gpu-node-3
        split_count: 4

Unknown settings are errors (a typo must not silently fall back to a default).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, TypeVar

import msgspec

from kantaloupe.api.errors import InvalidConfigError
from kantaloupe.node.files import decode_yaml_file

T = TypeVar("T")

SETTINGS = (
    "version, split_count, memory_scaling, core_scaling, core_utilization_policy, "
    "numa_topology, exclude (uuids, indexes), nodes (name + any setting)"
)


class CorePolicy(enum.StrEnum):
    """``GPU_CORE_UTILIZATION_POLICY`` of the isolation library (HAMi's values)."""

    DEFAULT = "default"
    """Compute limits apply only while a GPU is shared."""
    FORCE = "force"
    """Compute limits always apply."""
    DISABLE = "disable"
    """Compute limits never apply."""


SplitCount = Annotated[int, msgspec.Meta(ge=1, le=1000)]
Scaling = Annotated[float, msgspec.Meta(gt=0, le=100)]


class ExcludeV1(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    uuids: tuple[Annotated[str, msgspec.Meta(min_length=1)], ...] = ()
    indexes: tuple[Annotated[int, msgspec.Meta(ge=0)], ...] = ()


class SettingsV1(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    split_count: SplitCount | None = None
    memory_scaling: Scaling | None = None
    core_scaling: Scaling | None = None
    core_utilization_policy: CorePolicy | None = None
    numa_topology: bool | None = None
    exclude: ExcludeV1 | None = None


class NodeOverrideV1(SettingsV1, frozen=True, forbid_unknown_fields=True, kw_only=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=253)]


class ConfigFileV1(SettingsV1, frozen=True, forbid_unknown_fields=True, kw_only=True):
    version: str = "v1"
    nodes: tuple[NodeOverrideV1, ...] = ()


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """The settings that apply to this node, defaults filled in."""

    split_count: int = 10
    """How many containers may share one GPU (kubelet sees this many slots per GPU)."""
    memory_scaling: float = 1.0
    """Schedulable memory = physical memory x this; above 1 the library oversubscribes."""
    core_scaling: float = 1.0
    """Schedulable compute in percent = 100 x this."""
    core_utilization_policy: CorePolicy = CorePolicy.DEFAULT
    numa_topology: bool = True
    exclude_uuids: frozenset[str] = frozenset()
    exclude_indexes: frozenset[int] = frozenset()

    def is_excluded(self, uuid: str, index: int) -> bool:
        return uuid in self.exclude_uuids or index in self.exclude_indexes


def load_config(path: Path | None, node_name: str) -> NodeConfig:
    """The configuration for ``node_name`` from ``path`` (defaults when ``path`` is None)."""
    if path is None:
        return NodeConfig()
    doc = decode_yaml_file(path, ConfigFileV1, what="node config", fields=SETTINGS)
    names = [n.name for n in doc.nodes]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise InvalidConfigError(
                f"{path}: nodes[{i}].name", name, "names a node twice", "merge the two entries"
            )
    config = _apply(NodeConfig(), doc)
    for override in doc.nodes:
        if override.name == node_name:
            config = _apply(config, override)
    return config


def _apply(base: NodeConfig, s: SettingsV1) -> NodeConfig:
    return NodeConfig(
        split_count=_pick(s.split_count, base.split_count),
        memory_scaling=_pick(s.memory_scaling, base.memory_scaling),
        core_scaling=_pick(s.core_scaling, base.core_scaling),
        core_utilization_policy=_pick(s.core_utilization_policy, base.core_utilization_policy),
        numa_topology=_pick(s.numa_topology, base.numa_topology),
        exclude_uuids=base.exclude_uuids
        if s.exclude is None
        else base.exclude_uuids | frozenset(s.exclude.uuids),
        exclude_indexes=base.exclude_indexes
        if s.exclude is None
        else base.exclude_indexes | frozenset(s.exclude.indexes),
    )


def _pick(value: T | None, default: T) -> T:
    return default if value is None else value
