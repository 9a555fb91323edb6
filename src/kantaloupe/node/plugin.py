"""The kubelet device plugin (API v1beta1) over ``grpc.aio``: how kubelet sees this node's GPUs.

- ListAndWatch: ``split_count`` slots per GPU (``<uuid>::<replica>``), NUMA node attached,
  a new list on every health change.
- GetPreferredAllocation: slots on the GPUs the scheduler chose for the pod in hand-off.
- Allocate: validate the slot ids, find the pod in hand-off (:mod:`.handoff`), compose the
  container's env, mounts and CDI names from small pure steps (:func:`compose`), prepare its state
  directory, then record the hand-off. Errors map to gRPC codes once, in :meth:`Allocate`.

:class:`PluginServer` serves the socket, registers with kubelet and registers again whenever
kubelet restarts (it recreates ``kubelet.sock`` and removes every plugin socket).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import grpc

from kantaloupe.api import errors, keys, resources
from kantaloupe.api.allocation import SliceV1
from kantaloupe.api.handoff import HandoffPhase, encode_handoff
from kantaloupe.api.ids import DeviceUuid, SlotId, make_slot_id, split_slot_id
from kantaloupe.kube import errors as kube_errors
from kantaloupe.kube.objects import Pod
from kantaloupe.node import handoff
from kantaloupe.node.config import CorePolicy, NodeConfig
from kantaloupe.node.devices import DeviceTable
from kantaloupe.node.library import InstalledLibrary
from kantaloupe.node.statedir import (
    CONTAINER_STATE_DIR,
    REGION_FILE,
    ContainerRecordV1,
    StateDir,
)

log = logging.getLogger(__name__)

# Generated code is untyped; reach it through Any rather than teach mypy about it.
pb: Any = importlib.import_module("kantaloupe.node.proto.deviceplugin_pb2")
pb_grpc: Any = importlib.import_module("kantaloupe.node.proto.deviceplugin_pb2_grpc")

API_VERSION = "v1beta1"
KUBELET_SOCKET = "kubelet.sock"
SOCKET_NAME = "kantaloupe-nvidia.sock"
HEALTHY = "Healthy"
UNHEALTHY = "Unhealthy"
PRELOAD_IN_CONTAINER = "/etc/ld.so.preload"
CDI_KIND = "nvidia.com/gpu"
_HANDOFF_WRITE_ATTEMPTS = 4


# ---- composing a container's answer (pure) -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Mount:
    container_path: str
    host_path: str
    read_only: bool


@dataclass(frozen=True, slots=True)
class ContainerAnswer:
    """What one container receives; converted to the protobuf message at the face."""

    envs: dict[str, str] = field(default_factory=dict)
    mounts: tuple[Mount, ...] = ()
    cdi_devices: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AnswerSettings:
    """Node-wide inputs of :func:`compose`."""

    config: NodeConfig
    library: InstalledLibrary | None
    cdi: bool = False


def visible_devices_env(slices: Sequence[SliceV1]) -> dict[str, str]:
    return {"NVIDIA_VISIBLE_DEVICES": ",".join(s.uuid for s in slices)}


def memory_limit_env(slices: Sequence[SliceV1]) -> dict[str, str]:
    """``CUDA_DEVICE_MEMORY_LIMIT_<i>=<MiB>m`` per device, in the container's device order."""
    return {f"CUDA_DEVICE_MEMORY_LIMIT_{i}": f"{s.memory_mib}m" for i, s in enumerate(slices)}


def core_limit_env(slices: Sequence[SliceV1]) -> dict[str, str]:
    """``CUDA_DEVICE_SM_LIMIT`` (first device, as HAMi); 0 or 100 mean no limit."""
    return {"CUDA_DEVICE_SM_LIMIT": str(slices[0].cores)} if slices else {}


def shared_cache_env() -> dict[str, str]:
    return {"CUDA_DEVICE_MEMORY_SHARED_CACHE": f"{CONTAINER_STATE_DIR}/{REGION_FILE}"}


def priority_env(priority: int | None) -> dict[str, str]:
    return {} if priority is None else {"CUDA_TASK_PRIORITY": str(priority)}


def policy_env(config: NodeConfig) -> dict[str, str]:
    if config.core_utilization_policy == CorePolicy.DEFAULT:
        return {}
    return {"GPU_CORE_UTILIZATION_POLICY": config.core_utilization_policy.value}


def oversubscribe_env(config: NodeConfig) -> dict[str, str]:
    return {"CUDA_OVERSUBSCRIBE": "true"} if config.memory_scaling > 1 else {}


def library_mounts(library: InstalledLibrary | None) -> tuple[Mount, ...]:
    """The library at its host path, and the preload file naming it at ``/etc/ld.so.preload``."""
    if library is None:
        return ()
    return (
        Mount(str(library.library), str(library.library), read_only=True),
        Mount(PRELOAD_IN_CONTAINER, str(library.preload), read_only=True),
    )


def state_mount(host_dir: Path) -> Mount:
    return Mount(CONTAINER_STATE_DIR, str(host_dir), read_only=False)


def cdi_names(slices: Sequence[SliceV1], enabled: bool) -> tuple[str, ...]:
    return tuple(f"{CDI_KIND}={s.uuid}" for s in slices) if enabled else ()


def compose(
    slices: Sequence[SliceV1], priority: int | None, state_dir: Path, settings: AnswerSettings
) -> ContainerAnswer:
    envs: dict[str, str] = {}
    for step in (
        visible_devices_env(slices),
        memory_limit_env(slices),
        core_limit_env(slices),
        shared_cache_env(),
        priority_env(priority),
        policy_env(settings.config),
        oversubscribe_env(settings.config),
    ):
        envs.update(step)
    return ContainerAnswer(
        envs=envs,
        mounts=(*library_mounts(settings.library), state_mount(state_dir)),
        cdi_devices=cdi_names(slices, settings.cdi),
    )


def to_proto(answer: ContainerAnswer) -> Any:
    return pb.ContainerAllocateResponse(
        envs=answer.envs,
        mounts=[
            pb.Mount(container_path=m.container_path, host_path=m.host_path, read_only=m.read_only)
            for m in answer.mounts
        ],
        cdi_devices=[pb.CDIDevice(name=n) for n in answer.cdi_devices],
    )


def slot_list(table: DeviceTable) -> list[Any]:
    """ListAndWatch's devices: ``split_count`` slots per GPU with its health and NUMA node."""
    config = table.config
    out = []
    for gpu in table.gpus():
        topology = (
            pb.TopologyInfo(nodes=[pb.NUMANode(ID=gpu.numa)]) if config.numa_topology else None
        )
        health = HEALTHY if gpu.healthy else UNHEALTHY
        for replica in range(config.split_count):
            out.append(
                pb.Device(ID=make_slot_id(gpu.uuid, replica), health=health, topology=topology)
            )
    return out


# ---- errors mapped once ------------------------------------------------------------------------


class AllocateError(Exception):
    """An Allocate failure with the gRPC code kubelet should see."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        self.code = code
        self.message = errors.shorten(message, 1000)
        super().__init__(message)


def validate_slots(table: DeviceTable, slot_ids: Sequence[str]) -> tuple[DeviceUuid, ...]:
    """The distinct GPUs behind ``slot_ids``; INVALID_ARGUMENT naming a bad slot."""
    if not slot_ids:
        raise AllocateError(grpc.StatusCode.INVALID_ARGUMENT, "container request names no device")
    for slot in slot_ids:
        try:
            uuid, replica = split_slot_id(SlotId(slot))
        except ValueError:
            raise AllocateError(
                grpc.StatusCode.INVALID_ARGUMENT, f"device {slot!r} is not <uuid>::<replica>"
            ) from None
        gpu = table.get(uuid)
        if gpu is None or replica >= table.config.split_count:
            raise AllocateError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"device {slot!r} is not offered by this node (GPU {uuid} unknown or excluded)",
            )
        if not gpu.healthy:
            raise AllocateError(
                grpc.StatusCode.FAILED_PRECONDITION, f"device {slot!r}: GPU {uuid} is unhealthy"
            )
    return handoff.requested_uuids(slot_ids)


# ---- the servicer ------------------------------------------------------------------------------


class PodAccess(Protocol):
    """The pods bound to this node (``kube.registering.NodePods`` or a fake)."""

    async def list(self) -> list[Pod]: ...

    async def get(self, namespace: str, name: str) -> Pod | None: ...

    async def set_annotations(
        self, namespace: str, name: str, annotations: dict[str, str | None], resource_version: str
    ) -> None: ...


class DevicePluginService:
    """The ``DevicePlugin`` service; one Allocate at a time (the loop is the lock otherwise)."""

    def __init__(
        self,
        *,
        node: str,
        table: DeviceTable,
        pods: PodAccess,
        state_dir: StateDir,
        settings: AnswerSettings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._node = node
        self._table = table
        self._pods = pods
        self._state = state_dir
        self._settings = settings
        self._clock = clock
        self._lock = asyncio.Lock()

    async def GetDevicePluginOptions(self, request: Any, context: Any) -> Any:
        return pb.DevicePluginOptions(
            pre_start_required=False, get_preferred_allocation_available=True
        )

    async def ListAndWatch(self, request: Any, context: Any) -> AsyncIterator[Any]:
        version = -1
        while True:
            version = self._table.version
            yield pb.ListAndWatchResponse(devices=slot_list(self._table))
            await self._table.wait_changed(version)

    async def GetPreferredAllocation(self, request: Any, context: Any) -> Any:
        pool = handoff.candidates(await self._pods.list(), self._node)
        return pb.PreferredAllocationResponse(
            container_responses=[
                pb.ContainerPreferredAllocationResponse(
                    deviceIDs=handoff.prefer(
                        pool,
                        list(r.available_deviceIDs),
                        list(r.must_include_deviceIDs),
                        r.allocation_size,
                    )
                )
                for r in request.container_requests
            ]
        )

    async def PreStartContainer(self, request: Any, context: Any) -> Any:
        return pb.PreStartContainerResponse()

    async def Allocate(self, request: Any, context: Any) -> Any:
        requested = [list(r.devices_ids) for r in request.container_requests]
        try:
            async with self._lock:
                answers = await self.allocate(requested)
        except AllocateError as e:
            log.warning("allocate refused: %s", e.message, extra={"code": e.code.name})
            await context.abort(e.code, e.message)
        except Exception:
            log.exception("allocate failed")
            await context.abort(grpc.StatusCode.INTERNAL, "internal error in the node agent")
        return pb.AllocateResponse(container_responses=[to_proto(a) for a in answers])

    async def allocate(self, requested: Sequence[Sequence[str]]) -> list[ContainerAnswer]:
        """Answer kubelet's container requests in order, then record the hand-offs."""
        wanted = [validate_slots(self._table, ids) for ids in requested]
        pool = handoff.candidates(await self._pods.list(), self._node)
        answers: list[ContainerAnswer] = []
        touched: dict[str, handoff.Candidate] = {}
        for uuids in wanted:
            found = handoff.find(pool, uuids)
            if found is None:
                raise AllocateError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"no pod in hand-off on node {self._node} has a container for GPUs "
                    f"{','.join(uuids)}; GPU pods must be bound by the kantaloupe scheduler",
                )
            cand, index = found
            try:
                answers.append(await self._answer(cand, index))
            except OSError as e:
                await self._record(handoff.fail(cand, f"state directory: {e}"))
                raise AllocateError(
                    grpc.StatusCode.INTERNAL, f"cannot prepare the state directory: {e.strerror}"
                ) from e
            served = handoff.serve(cand, index)
            touched[served.uid] = served
            pool = [served if c.uid == served.uid else c for c in pool]
            log.info(
                "container allocated",
                extra={
                    "pod": cand.name,
                    "namespace": cand.namespace,
                    "container": cand.container_name(index),
                    "device_uuid": ",".join(uuids),
                },
            )
        for cand in touched.values():
            await self._record(cand)
        return answers

    async def _answer(self, cand: handoff.Candidate, index: int) -> ContainerAnswer:
        slices = cand.slices(index)
        priority = cand.priorities[index] if index < len(cand.priorities) else None
        record = ContainerRecordV1(
            namespace=cand.namespace,
            pod=cand.name,
            pod_uid=cand.uid,
            container=cand.container_name(index),
            index=index,
            devices=slices,
            priority=priority,
            allocated_at=self._clock(),
        )
        host_dir = await asyncio.to_thread(self._state.prepare, record)
        return compose(slices, priority, host_dir, self._settings)

    async def _record(self, cand: handoff.Candidate) -> None:
        """Write the hand-off; on a conflict re-read the pod and merge ``served`` again."""
        for _ in range(_HANDOFF_WRITE_ATTEMPTS):
            try:
                await self._pods.set_annotations(
                    cand.namespace,
                    cand.name,
                    {keys.HANDOFF: encode_handoff(cand.handoff)},
                    cand.resource_version,
                )
                return
            except kube_errors.ConflictError:
                fresh = await self._pods.get(cand.namespace, cand.name)
                again = handoff.candidates([fresh] if fresh else [], self._node)
                if not again:
                    log.warning("hand-off ended while recording it", extra={"pod": cand.name})
                    return
                merged = again[0]
                for i in cand.handoff.served:
                    merged = handoff.serve(merged, i)
                if cand.handoff.phase == HandoffPhase.FAILED:
                    merged = handoff.fail(merged, cand.handoff.message)
                cand = merged
        raise AllocateError(
            grpc.StatusCode.INTERNAL, f"pod {cand.namespace}/{cand.name} kept changing"
        )


# ---- serving and registering -------------------------------------------------------------------


class PluginServer:
    """Serves :class:`DevicePluginService` on a unix socket and keeps it registered with kubelet."""

    def __init__(
        self,
        service: DevicePluginService,
        plugin_dir: Path,
        *,
        resource_name: str = resources.GPU,
        socket_name: str = SOCKET_NAME,
        poll_s: float = 1.0,
    ) -> None:
        self._service = service
        self._dir = plugin_dir
        self._resource = resource_name
        self._socket = plugin_dir / socket_name
        self._poll_s = poll_s
        self._server: Any = None
        self.registered = False
        self.registrations = 0

    async def run(self) -> None:
        """Serve and register; again after every kubelet restart. Runs until cancelled."""
        try:
            while True:
                kubelet = await self._wait_for_kubelet()
                await self._start()
                if await self._register(kubelet):
                    await self._watch(kubelet)
                self.registered = False
                await self._stop()
        finally:
            self.registered = False
            await asyncio.shield(self._stop())

    async def _wait_for_kubelet(self) -> tuple[int, int]:
        while (identity := _identity(self._dir / KUBELET_SOCKET)) is None:
            await asyncio.sleep(self._poll_s)
        return identity

    async def _start(self) -> None:
        self._dir.mkdir(parents=True, exist_ok=True)
        self._socket.unlink(missing_ok=True)
        server = grpc.aio.server()
        pb_grpc.add_DevicePluginServicer_to_server(self._service, server)
        server.add_insecure_port(f"unix://{self._socket}")
        await server.start()
        self._server = server
        log.info("device plugin serving", extra={"socket": str(self._socket)})

    async def _stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.stop(grace=1.0)
        self._socket.unlink(missing_ok=True)

    async def _register(self, kubelet: tuple[int, int]) -> bool:
        """Register until kubelet accepts; False when its socket changed meanwhile."""
        delay = self._poll_s
        while _identity(self._dir / KUBELET_SOCKET) == kubelet:
            try:
                await register(self._dir, self._socket.name, self._resource)
            except grpc.aio.AioRpcError as e:
                log.warning(
                    "registration with kubelet failed, retrying",
                    extra={"code": e.code().name, "detail": e.details()},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            self.registered = True
            self.registrations += 1
            log.info("registered with kubelet", extra={"resource": self._resource})
            return True
        return False

    async def _watch(self, kubelet: tuple[int, int]) -> None:
        """Return when kubelet's socket is recreated or ours removed (kubelet restarted)."""
        while True:
            await asyncio.sleep(self._poll_s)
            if _identity(self._dir / KUBELET_SOCKET) != kubelet or not self._socket.exists():
                log.info("kubelet restarted; registering again")
                return


async def register(plugin_dir: Path, endpoint: str, resource_name: str) -> None:
    """One ``Registration.Register`` call on ``<plugin_dir>/kubelet.sock``."""
    async with grpc.aio.insecure_channel(f"unix://{plugin_dir / KUBELET_SOCKET}") as channel:
        stub = pb_grpc.RegistrationStub(channel)
        await stub.Register(
            pb.RegisterRequest(
                version=API_VERSION,
                endpoint=endpoint,
                resource_name=resource_name,
                options=pb.DevicePluginOptions(
                    pre_start_required=False, get_preferred_allocation_available=True
                ),
            ),
            timeout=5.0,
        )


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns
