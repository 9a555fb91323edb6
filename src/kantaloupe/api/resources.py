"""Extended resource names, identical to HAMi's so existing manifests run unchanged."""

from typing import Final

GPU: Final = "nvidia.com/gpu"
GPU_MEMORY: Final = "nvidia.com/gpumem"
GPU_MEMORY_PERCENTAGE: Final = "nvidia.com/gpumem-percentage"
GPU_CORES: Final = "nvidia.com/gpucores"
GPU_PRIORITY: Final = "nvidia.com/priority"

ALL: Final = (GPU, GPU_MEMORY, GPU_MEMORY_PERCENTAGE, GPU_CORES, GPU_PRIORITY)
"""Every resource the scheduler extender manages (kube-scheduler ignores them)."""
