"""Scenario files: a fleet of nodes and GPUs plus workload arrivals and departures (YAML).

```yaml
version: v1
name: example
nodes:
  - name: rtx4090            # nodes are named rtx4090-0, rtx4090-1, ... when count > 1
    count: 2
    gpus: {model: NVIDIA GeForce RTX 4090, memory_mib: 24564, count: 2}
workloads:
  - name: speech-scoring
    kind: service            # service | batch
    replicas: 10
    resources: {nvidia.com/gpumem: 2000, nvidia.com/gpucores: 15}
    annotations: {nvidia.com/use-gputype: "4090"}
    arrive_s: 0              # first arrival; replicas arrive every interval_s
    interval_s: 1
    duration_s: null         # seconds until departure; null stays
```
"""

from __future__ import annotations

from importlib import resources as importlib_resources
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from kantaloupe.api.errors import InvalidScenarioError

Count = Annotated[int, msgspec.Meta(ge=1, le=100_000)]
NonNegativeFloat = Annotated[float, msgspec.Meta(ge=0)]


class GpuGroup(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    model: Annotated[str, msgspec.Meta(min_length=1)]
    memory_mib: Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]
    count: Annotated[int, msgspec.Meta(ge=1, le=64)] = 1
    cores: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 100
    split: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 10
    numa_nodes: Annotated[int, msgspec.Meta(ge=1, le=16)] = 1


class NodeGroup(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    gpus: GpuGroup
    count: Count = 1
    memory_scaling: Annotated[float, msgspec.Meta(gt=0, le=100)] = 1.0
    core_scaling: Annotated[float, msgspec.Meta(gt=0, le=100)] = 1.0
    cpu_milli: Annotated[int, msgspec.Meta(ge=0)] = 0
    memory_mib: Annotated[int, msgspec.Meta(ge=0)] = 0


class Workload(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    resources: dict[str, int | str]
    kind: Literal["service", "batch"] = "service"
    replicas: Count = 1
    annotations: dict[str, str] = {}
    init_resources: dict[str, int | str] | None = None
    sidecar_resources: dict[str, int | str] | None = None
    arrive_s: NonNegativeFloat = 0.0
    interval_s: NonNegativeFloat = 0.0
    duration_s: NonNegativeFloat | None = None
    cpu_milli: Annotated[int, msgspec.Meta(ge=0)] = 0
    memory_mib: Annotated[int, msgspec.Meta(ge=0)] = 0


class Scenario(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    nodes: Annotated[list[NodeGroup], msgspec.Meta(min_length=1)]
    workloads: list[Workload]
    version: Literal["v1"] = "v1"
    name: str = "scenario"
    description: str = ""
    node_policy: str | None = None
    gpu_policy: str | None = None


def decode_scenario(raw: bytes | str, source: str) -> Scenario:
    """Decode a scenario; errors name the file, the field and the fix."""
    try:
        return msgspec.yaml.decode(raw, type=Scenario)
    except msgspec.ValidationError as e:
        text = str(e)
        problem, _, path = text.partition(" - at ")
        where = f"{source}: {path.strip('`')}" if path else source
        raise InvalidScenarioError(
            where,
            "…",
            problem,
            "fix the field (see the format in `kantaloupe simulate --help` or "
            "src/kantaloupe/sim/scenario.py)",
        ) from e
    except msgspec.DecodeError as e:
        raise InvalidScenarioError(source, "…", f"is not valid YAML ({e})", "fix the YAML") from e


def load_scenario(path: Path | None) -> tuple[Scenario, str]:
    """The scenario at ``path``, or the bundled default when ``path`` is None."""
    if path is None:
        ref = importlib_resources.files("kantaloupe.sim").joinpath("scenarios/default.yaml")
        return decode_scenario(ref.read_bytes(), "default.yaml"), "default.yaml"
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise InvalidScenarioError(
            str(path), str(path), f"cannot be read ({e.strerror})", "give a readable YAML file"
        ) from e
    return decode_scenario(raw, str(path)), str(path)
