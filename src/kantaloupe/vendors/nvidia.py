"""NVIDIA: HAMi's resource names and the isolation library's environment contract."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from kantaloupe.api import resources
from kantaloupe.api.allocation import SliceV1

VISIBLE_DEVICES: Final = "NVIDIA_VISIBLE_DEVICES"
MEMORY_LIMIT: Final = "CUDA_DEVICE_MEMORY_LIMIT"
SM_LIMIT: Final = "CUDA_DEVICE_SM_LIMIT"
SHARED_CACHE: Final = "CUDA_DEVICE_MEMORY_SHARED_CACHE"
TASK_PRIORITY: Final = "CUDA_TASK_PRIORITY"
CORE_POLICY: Final = "GPU_CORE_UTILIZATION_POLICY"


class Nvidia:
    name = "nvidia"
    resources = resources.ALL

    def requests_device(self, resources_: Mapping[str, object]) -> bool:
        return any(r in resources_ for r in self.resources)

    def container_env(
        self, slices: Sequence[SliceV1], *, priority: int | None, shared_cache: str
    ) -> dict[str, str]:
        """HAMi's variables: per-device memory limits in MiB, one SM limit, the region path."""
        env = {
            VISIBLE_DEVICES: ",".join(s.uuid for s in slices),
            SHARED_CACHE: shared_cache,
        }
        for i, s in enumerate(slices):
            env[f"{MEMORY_LIMIT}_{i}"] = f"{s.memory_mib}m"
        if slices:
            env[SM_LIMIT] = str(slices[0].cores)
        if priority is not None:
            env[TASK_PRIORITY] = str(priority)
        return env


NVIDIA: Final = Nvidia()
