"""Test support: a real Kubernetes control plane and helpers for tests and benchmarks.

- :mod:`~kantaloupe.testing.controlplane`: :class:`ControlPlane` (etcd, kube-apiserver,
  kube-scheduler on 127.0.0.1) and its fault helpers.
- :mod:`~kantaloupe.testing.binaries`: where the pinned binaries (and helm, promtool) are.
- :mod:`~kantaloupe.testing.schedconfig`: the scheduler config, from the chart's template.
- :mod:`~kantaloupe.testing.cluster`: async helpers (nodes, namespaces, pods, waits); import it
  directly, it needs ``kubernetes_asyncio``.
- :mod:`~kantaloupe.testing.pki`: a throwaway CA for loopback HTTPS.
"""

from kantaloupe.testing.binaries import (
    Binaries,
    BinariesNotFoundError,
    find_binaries,
    find_tool,
    pinned_versions,
)
from kantaloupe.testing.controlplane import ControlPlane, ControlPlaneError
from kantaloupe.testing.schedconfig import (
    DEFAULT_MANAGED_RESOURCES,
    SchedulerConfig,
    SchedulerConfigError,
    render_scheduler_config,
)

__all__ = [
    "DEFAULT_MANAGED_RESOURCES",
    "Binaries",
    "BinariesNotFoundError",
    "ControlPlane",
    "ControlPlaneError",
    "SchedulerConfig",
    "SchedulerConfigError",
    "find_binaries",
    "find_tool",
    "pinned_versions",
    "render_scheduler_config",
]
