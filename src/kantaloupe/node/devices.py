"""What GPUs this node has and whether they are healthy: NVML, or an inventory file.

Discovery is behind two small seams: :class:`Nvml` (the few NVML calls the agent makes; the real
one is :class:`PynvmlNvml`, tests inject a fake) and :class:`DeviceSource` (``discover()``;
:class:`NvmlSource` or :class:`InventorySource` for simulated and test nodes). The live state is
one :class:`DeviceTable`; the device plugin streams it to kubelet and the registration loop
publishes it. This module knows nothing of gRPC or Kubernetes.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Protocol

import msgspec

from kantaloupe.api.errors import InvalidConfigError
from kantaloupe.api.ids import DeviceUuid
from kantaloupe.api.registration import DeviceV1, NodeDevicesV1
from kantaloupe.node.config import NodeConfig
from kantaloupe.node.files import decode_yaml_file

log = logging.getLogger(__name__)

MIB = 1024 * 1024
APPLICATION_XIDS = frozenset({13, 31, 43, 45, 68, 109})
"""XIDs caused by an application, not the GPU (NVIDIA's device plugin ignores the same set)."""
_SLOT_ID_ROOM = 58
"""Kubelet device ids are at most 63 characters; a slot id adds ``::<replica>``."""


@dataclass(frozen=True, slots=True)
class Gpu:
    """One physical GPU as discovered (memory unscaled)."""

    uuid: DeviceUuid
    index: int
    model: str
    memory_mib: int
    numa: int = 0
    healthy: bool = True


@dataclass(frozen=True, slots=True)
class GpuUsage:
    """A GPU's live usage, read at scrape time."""

    memory_used_bytes: int
    utilization_percent: int


@dataclass(frozen=True, slots=True)
class XidEvent:
    uuid: DeviceUuid
    xid: int


class Nvml(Protocol):
    """The NVML calls the agent makes. Every method blocks: call them through a thread."""

    def init(self) -> None: ...

    def shutdown(self) -> None: ...

    def gpus(self) -> tuple[Gpu, ...]: ...

    def usage(self, uuid: DeviceUuid) -> GpuUsage: ...

    def wait_xid(self, timeout_ms: int) -> XidEvent | None:
        """The next critical XID event, or None when ``timeout_ms`` passes without one."""
        ...


class DeviceSource(Protocol):
    """Where the list of GPUs comes from."""

    async def discover(self) -> tuple[Gpu, ...]: ...


# ---- NVML --------------------------------------------------------------------------------------


class PynvmlNvml:
    """:class:`Nvml` over ``nvidia-ml-py``."""

    def __init__(self, sysfs: Path = Path("/sys")) -> None:
        self._sysfs = sysfs
        self._events: Any = None
        self._by_handle: dict[int, DeviceUuid] = {}

    def init(self) -> None:
        import pynvml

        pynvml.nvmlInit()

    def shutdown(self) -> None:
        import pynvml

        if self._events is not None:
            pynvml.nvmlEventSetFree(self._events)
            self._events = None
        pynvml.nvmlShutdown()

    def gpus(self) -> tuple[Gpu, ...]:
        import pynvml

        out: list[Gpu] = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            out.append(
                Gpu(
                    uuid=DeviceUuid(_text(pynvml.nvmlDeviceGetUUID(h))),
                    index=i,
                    model=_text(pynvml.nvmlDeviceGetName(h)),
                    memory_mib=int(pynvml.nvmlDeviceGetMemoryInfo(h).total) // MIB,
                    numa=self._numa(h),
                )
            )
        return tuple(out)

    def _numa(self, handle: Any) -> int:
        import pynvml

        bus = _text(pynvml.nvmlDeviceGetPciInfo(handle).busId).lower()
        # NVML writes an 8-digit PCI domain; sysfs uses 4 (00000000:3b:00.0 -> 0000:3b:00.0).
        domain, _, rest = bus.partition(":")
        path = self._sysfs / "bus/pci/devices" / f"{domain[-4:]}:{rest}" / "numa_node"
        try:
            node = int(path.read_text().strip())
        except (OSError, ValueError):
            return 0
        return max(node, 0)

    def usage(self, uuid: DeviceUuid) -> GpuUsage:
        import pynvml

        h = pynvml.nvmlDeviceGetHandleByUUID(uuid)
        memory = pynvml.nvmlDeviceGetMemoryInfo(h)
        try:
            util = int(pynvml.nvmlDeviceGetUtilizationRates(h).gpu)
        except pynvml.NVMLError:
            util = 0
        return GpuUsage(memory_used_bytes=int(memory.used), utilization_percent=util)

    def wait_xid(self, timeout_ms: int) -> XidEvent | None:
        import pynvml

        if self._events is None:
            self._events = pynvml.nvmlEventSetCreate()
            for i in range(pynvml.nvmlDeviceGetCount()):
                h = pynvml.nvmlDeviceGetHandleByIndex(i)
                uuid = DeviceUuid(_text(pynvml.nvmlDeviceGetUUID(h)))
                try:
                    pynvml.nvmlDeviceRegisterEvents(
                        h, pynvml.nvmlEventTypeXidCriticalError, self._events
                    )
                except pynvml.NVMLError as e:
                    log.warning("no XID events for %s: %s", uuid, e)
        try:
            data = pynvml.nvmlEventSetWait_v2(self._events, timeout_ms)
        except pynvml.NVMLError as e:
            if e.value == pynvml.NVML_ERROR_TIMEOUT:
                return None
            raise
        return XidEvent(
            uuid=DeviceUuid(_text(pynvml.nvmlDeviceGetUUID(data.device))), xid=int(data.eventData)
        )


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


class NvmlSource:
    """:class:`DeviceSource` over NVML, calls sent to a thread."""

    def __init__(self, nvml: Nvml) -> None:
        self._nvml = nvml

    async def discover(self) -> tuple[Gpu, ...]:
        return await asyncio.to_thread(self._nvml.gpus)


class XidWatcher:
    """A named thread waiting on NVML's XID events, posting unhealthy marks to the loop.

    An application XID (:data:`APPLICATION_XIDS`) is ignored. A GPU marked unhealthy stays so
    until the agent restarts (as NVIDIA's plugin: a GPU that raised a critical XID needs a reset).
    """

    def __init__(
        self,
        nvml: Nvml,
        loop: asyncio.AbstractEventLoop,
        on_unhealthy: Callable[[DeviceUuid, str], None],
        *,
        poll_ms: int = 1000,
    ) -> None:
        self._nvml = nvml
        self._loop = loop
        self._on_unhealthy = on_unhealthy
        self._poll_ms = poll_ms
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nvml-xid-events", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self._poll_ms / 1000 + 2)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                event = self._nvml.wait_xid(self._poll_ms)
            except Exception as e:
                log.error("XID event wait failed, health events stop: %s", e)
                return
            if event is None or event.xid in APPLICATION_XIDS:
                continue
            reason = f"XID {event.xid}"
            self._loop.call_soon_threadsafe(self._on_unhealthy, event.uuid, reason)


# ---- inventory file ----------------------------------------------------------------------------

INVENTORY_FIELDS = "version, devices (uuid, model, memory_mib, index, numa, healthy)"


class InventoryDeviceV1(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    uuid: Annotated[str, msgspec.Meta(min_length=1, max_length=_SLOT_ID_ROOM, pattern=r"^\S+$")]
    model: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    memory_mib: Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]
    index: Annotated[int, msgspec.Meta(ge=0, le=1023)] | None = None
    numa: Annotated[int, msgspec.Meta(ge=0, le=1023)] = 0
    healthy: bool = True


class InventoryV1(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    version: str = "v1"
    devices: tuple[InventoryDeviceV1, ...] = ()


def load_inventory(path: Path) -> tuple[Gpu, ...]:
    """The GPUs listed in an inventory file; ``index`` defaults to the position in the list."""
    doc = decode_yaml_file(path, InventoryV1, what="inventory", fields=INVENTORY_FIELDS)
    gpus: list[Gpu] = []
    for i, d in enumerate(doc.devices):
        index = i if d.index is None else d.index
        if any(g.uuid == d.uuid for g in gpus):
            raise InvalidConfigError(
                f"{path}: devices[{i}].uuid", d.uuid, "lists a UUID twice", "give each GPU its own"
            )
        if any(g.index == index for g in gpus):
            raise InvalidConfigError(
                f"{path}: devices[{i}].index", index, "lists an index twice", "give each its own"
            )
        gpus.append(Gpu(DeviceUuid(d.uuid), index, d.model, d.memory_mib, d.numa, d.healthy))
    return tuple(gpus)


class InventorySource:
    """:class:`DeviceSource` over an inventory file, re-read on every discovery.

    Editing the file (say ``healthy: false``) is how a simulated node's GPU turns unhealthy. A
    file broken after start keeps the last good list and logs the error.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._last: tuple[Gpu, ...] | None = None

    async def discover(self) -> tuple[Gpu, ...]:
        try:
            self._last = await asyncio.to_thread(load_inventory, self._path)
        except InvalidConfigError as e:
            if self._last is None:
                raise
            log.error("inventory unreadable, keeping the last good list: %s", e)
        return self._last


# ---- live state --------------------------------------------------------------------------------


class DeviceTable:
    """The node's GPUs as offered: excluded ones dropped, XID health applied. Loop-only object.

    Readers wait for a change with :meth:`wait_changed`; every change bumps ``version``.
    """

    __slots__ = ("_changed", "_config", "_gpus", "_unhealthy", "version")

    def __init__(self, config: NodeConfig) -> None:
        self._config = config
        self._gpus: tuple[Gpu, ...] = ()
        self._unhealthy: dict[DeviceUuid, str] = {}
        self._changed = asyncio.Event()
        self.version = 0

    @property
    def config(self) -> NodeConfig:
        return self._config

    def update(self, discovered: tuple[Gpu, ...]) -> bool:
        """Take a fresh discovery; True when what kubelet and the scheduler see changed."""
        kept = tuple(
            sorted(
                (g for g in discovered if not self._config.is_excluded(g.uuid, g.index)),
                key=lambda g: g.index,
            )
        )
        if kept == self._gpus:
            return False
        for g in kept:
            previous = next((p for p in self._gpus if p.uuid == g.uuid), None)
            if previous is not None and previous.healthy != g.healthy:
                log.warning(
                    "GPU health changed",
                    extra={"device_uuid": g.uuid, "healthy": g.healthy},
                )
        self._gpus = kept
        self._bump()
        return True

    def mark_unhealthy(self, uuid: DeviceUuid, reason: str) -> None:
        if uuid in self._unhealthy or not any(g.uuid == uuid for g in self._gpus):
            return
        log.warning("GPU %s unhealthy: %s", uuid, reason, extra={"device_uuid": uuid})
        self._unhealthy[uuid] = reason
        self._bump()

    def gpus(self) -> tuple[Gpu, ...]:
        """The offered GPUs, health applied, by index."""
        return tuple(
            replace(g, healthy=False) if g.uuid in self._unhealthy else g for g in self._gpus
        )

    def get(self, uuid: DeviceUuid) -> Gpu | None:
        return next((g for g in self.gpus() if g.uuid == uuid), None)

    async def wait_changed(self, seen: int) -> int:
        """Wait until ``version`` differs from ``seen``; return the new version."""
        while self.version == seen:
            await self._changed.wait()
        return self.version

    def _bump(self) -> None:
        self.version += 1
        self._changed.set()
        self._changed = asyncio.Event()


def to_registration(gpus: tuple[Gpu, ...], config: NodeConfig, agent_version: str) -> NodeDevicesV1:
    """The registration document for ``gpus``: scaling applied, as the scheduler should see them."""
    return NodeDevicesV1(
        devices=tuple(
            DeviceV1(
                uuid=g.uuid,
                index=g.index,
                model=g.model,
                memory_mib=max(1, int(g.memory_mib * config.memory_scaling)),
                cores=max(1, int(100 * config.core_scaling)),
                split=config.split_count,
                numa=g.numa,
                healthy=g.healthy,
            )
            for g in gpus
        ),
        agent_version=agent_version,
    )
