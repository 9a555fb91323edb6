"""Every annotation and label key Kantaloupe reads or writes.

User-facing keys are HAMi's, unchanged. Internal keys live under ``kantaloupe.io/`` and
carry versioned JSON documents (see the codec modules beside this one).
"""

from typing import Final

PREFIX: Final = "kantaloupe.io/"

# User-facing pod annotations (HAMi names).
USE_GPU_TYPE: Final = "nvidia.com/use-gputype"
NOUSE_GPU_TYPE: Final = "nvidia.com/nouse-gputype"
USE_GPU_UUID: Final = "nvidia.com/use-gpuuuid"
NOUSE_GPU_UUID: Final = "nvidia.com/nouse-gpuuuid"
NUMA_BIND: Final = "nvidia.com/numa-bind"
NODE_SCHEDULER_POLICY: Final = "hami.io/node-scheduler-policy"
GPU_SCHEDULER_POLICY: Final = "hami.io/gpu-scheduler-policy"
DEVICE_SCORING_WEIGHTS: Final = "hami.io/device-scoring-weights"

# Internal keys (ours).
NODE_DEVICES: Final = PREFIX + "node-devices"
"""Node annotation: the node agent's device registration (``api.registration``)."""
ALLOCATION: Final = PREFIX + "allocation"
"""Pod annotation: the devices the scheduler gave each container (``api.allocation``)."""
HANDOFF: Final = PREFIX + "handoff"
"""Pod annotation: bind and device-plugin hand-off state (``api.handoff``)."""
LLM: Final = PREFIX + "llm"
"""Pod annotation written by users: size ``gpumem`` from a model (``kantaloupe.sizing``)."""
SIZING: Final = PREFIX + "sizing"
"""Pod annotation written by the webhook: the sizing computation it applied."""
AGENT_LEASE_PREFIX: Final = "kantaloupe-node-"
"""Lease name prefix of each node agent's heartbeat (``kantaloupe-node-<node>``)."""

INTERNAL_POD_KEYS: Final = (ALLOCATION, HANDOFF, SIZING)
"""Keys a user's pod must not carry on create: only our service accounts write them."""

# HAMi keys we read (migration) and keep compatible.
HAMI_NODE_REGISTER: Final = "hami.io/node-nvidia-register"
HAMI_DEVICES_ALLOCATED: Final = "hami.io/vgpu-devices-allocated"
HAMI_DEVICES_TO_ALLOCATE: Final = "hami.io/vgpu-devices-to-allocate"
HAMI_VGPU_NODE: Final = "hami.io/vgpu-node"
HAMI_BIND_PHASE: Final = "hami.io/bind-phase"
HAMI_INTERNAL_POD_KEYS: Final = (HAMI_DEVICES_ALLOCATED, HAMI_DEVICES_TO_ALLOCATE, HAMI_VGPU_NODE)

# Labels (selection only).
GPU_NODE_LABEL: Final = "gpu"
GPU_NODE_LABEL_VALUE: Final = "on"
WEBHOOK_IGNORE_LABEL: Final = PREFIX + "webhook"
WEBHOOK_IGNORE_VALUE: Final = "ignore"
