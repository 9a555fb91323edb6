"""The node's Prometheus exporter, with HAMi's vGPUmonitor metric names and labels.

Everything is computed at scrape time (:class:`MonitorCollector`): the GPUs from the device
table, their live usage from NVML, and each container's usage from its shared region found in the
state directory (:mod:`.statedir`). Containers of deleted pods therefore vanish from the metrics as
soon as :class:`StateCleaner` removes their directories. A scrape calls NVML and reads files, so
the agent renders ``/metrics`` in a thread (``asyncio.to_thread``), never on the loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from kantaloupe.api.ids import DeviceUuid
from kantaloupe.kube.objects import Pod
from kantaloupe.node.devices import MIB, Gpu, GpuUsage
from kantaloupe.node.statedir import ContainerState, StateDir

log = logging.getLogger(__name__)

HOST_LABELS = ["node", "device_index", "device_uuid", "device_type"]
CONTAINER_LABELS = ["namespace", "pod", "container", "vdevice_index", "device_uuid"]


@dataclass(frozen=True, slots=True)
class DeviceRegionUsage:
    """One device of one container's shared region."""

    index: int
    uuid: str
    used_bytes: int
    limit_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class RegionUsage:
    devices: tuple[DeviceRegionUsage, ...]
    last_kernel_age_s: float | None = None
    """Seconds since the container last launched a kernel (None: never, or not recorded)."""


class RegionReader(Protocol):
    """Reads one container's shared region (:mod:`kantaloupe.node.region` or a fake)."""

    def read(self, path: Path) -> RegionUsage | None:
        """The region at ``path``; None when absent (no CUDA process yet) or unreadable."""
        ...


class UsageReader(Protocol):
    def usage(self, uuid: DeviceUuid) -> GpuUsage: ...


class MonitorCollector(Collector):
    """Scrape-time metrics of the node's GPUs and containers."""

    def __init__(
        self,
        *,
        node: str,
        gpus: Callable[[], tuple[Gpu, ...]],
        nvml: UsageReader | None,
        state_dir: StateDir,
        regions: RegionReader,
        registered: Callable[[], bool] = lambda: False,
    ) -> None:
        self._node = node
        self._gpus = gpus
        self._nvml = nvml
        self._state = state_dir
        self._regions = regions
        self._registered = registered

    def collect(self) -> Iterator[Metric]:
        yield from self._host()
        yield from self._containers()
        up = GaugeMetricFamily(
            "kantaloupe_node_agent_registered",
            "1 while the device plugin is registered with kubelet.",
            labels=["node"],
        )
        up.add_metric([self._node], 1.0 if self._registered() else 0.0)
        yield up

    def _host(self) -> Iterator[Metric]:
        memory = GaugeMetricFamily(
            "hami_host_gpu_memory_used_bytes",
            "GPU memory used on the host (NVML).",
            labels=HOST_LABELS,
        )
        util = GaugeMetricFamily(
            "hami_host_gpu_utilization_ratio", "GPU utilisation, 0-1 (NVML).", labels=HOST_LABELS
        )
        healthy = GaugeMetricFamily(
            "kantaloupe_node_gpu_healthy",
            "1 when the GPU is healthy, 0 otherwise.",
            labels=HOST_LABELS,
        )
        total = GaugeMetricFamily(
            "kantaloupe_node_gpu_memory_total_bytes", "Physical GPU memory.", labels=HOST_LABELS
        )
        for gpu in self._gpus():
            labels = [self._node, str(gpu.index), gpu.uuid, gpu.model]
            healthy.add_metric(labels, 1.0 if gpu.healthy else 0.0)
            total.add_metric(labels, float(gpu.memory_mib * MIB))
            if self._nvml is None:
                continue
            try:
                usage = self._nvml.usage(gpu.uuid)
            except Exception as e:
                log.warning("NVML usage failed: %s", e, extra={"device_uuid": gpu.uuid})
                continue
            memory.add_metric(labels, float(usage.memory_used_bytes))
            util.add_metric(labels, usage.utilization_percent / 100.0)
        yield from (memory, util, healthy, total)

    def _containers(self) -> Iterator[Metric]:
        used = GaugeMetricFamily(
            "hami_vgpu_memory_used_bytes", "GPU memory a container uses.", labels=CONTAINER_LABELS
        )
        limit = GaugeMetricFamily(
            "hami_vgpu_memory_limit_bytes",
            "GPU memory a container may use.",
            labels=CONTAINER_LABELS,
        )
        kernel = GaugeMetricFamily(
            "hami_container_last_kernel_elapsed_seconds",
            "Seconds since the container last launched a kernel on the device.",
            labels=CONTAINER_LABELS,
        )
        for state in self._state.containers():
            self._container(state, used, limit, kernel)
        yield from (used, limit, kernel)

    def _container(
        self,
        state: ContainerState,
        used: GaugeMetricFamily,
        limit: GaugeMetricFamily,
        kernel: GaugeMetricFamily,
    ) -> None:
        record = state.record
        if record is None:
            return
        region = self._regions.read(state.region)
        for i, s in enumerate(record.devices):
            labels = [record.namespace, record.pod, record.container, str(i), s.uuid]
            limit.add_metric(labels, float(s.memory_mib * MIB))
            if region is None:
                continue
            found = next((d for d in region.devices if d.index == i), None)
            if found is not None:
                used.add_metric(labels, float(found.used_bytes))
            if region.last_kernel_age_s is not None:
                kernel.add_metric(labels, region.last_kernel_age_s)


class NoRegions:
    """A :class:`RegionReader` for when the region reader is unavailable: no usage, limits only."""

    def read(self, path: Path) -> RegionUsage | None:
        return None


class PodLister(Protocol):
    async def list(self) -> list[Pod]: ...


class StateCleaner:
    """Removes state directories of pods no longer on this node.

    A directory is removed only when a successful list of the node's pods lacks its pod and it is
    older than ``grace_s`` (a pod admitted a moment ago may not be listed yet).
    """

    def __init__(
        self,
        state_dir: StateDir,
        pods: PodLister,
        *,
        grace_s: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._state = state_dir
        self._pods = pods
        self._grace_s = grace_s
        self._clock = clock

    async def sweep(self) -> list[ContainerState]:
        """One pass; returns what was removed."""
        alive = {p.metadata.uid for p in await self._pods.list()}
        removed = await asyncio.to_thread(self._remove_stale, alive)
        for state in removed:
            log.info("state of a deleted pod removed", extra={"path": str(state.path)})
        return removed

    def _remove_stale(self, alive: set[str]) -> list[ContainerState]:
        now = self._clock()
        removed = []
        for state in self._state.containers():
            if state.pod_uid in alive:
                continue
            try:
                age = now - state.path.stat().st_mtime
            except OSError:
                continue
            if age >= self._grace_s:
                self._state.remove(state)
                removed.append(state)
        return removed

    async def run(self, interval_s: float) -> None:
        while True:
            try:
                await self.sweep()
            except Exception as e:
                log.warning("state cleanup skipped: %s", e)
            await asyncio.sleep(interval_s)
