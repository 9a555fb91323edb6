"""Helpers for the extender's integration tests: the scheduler process, a node-agent double,
GPU nodes with registrations, and the over-allocation check."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client as k8s

from kantaloupe.api import keys
from kantaloupe.api.allocation import decode_allocation
from kantaloupe.api.handoff import HandoffPhase, HandoffV1, decode_handoff, encode_handoff
from kantaloupe.api.registration import DeviceV1, NodeDevicesV1, encode_registration
from kantaloupe.kube import errors as kube_errors
from kantaloupe.kube import objects
from kantaloupe.kube.client import KubeClient, leases_path, namespaces_path, pod_path, pods_path
from kantaloupe.kube.election import micro_time
from kantaloupe.kube.watching import Informer
from kantaloupe.testing import ControlPlane, cluster

AGENT_NAMESPACE = "kantaloupe-system"
SCHEDULER = "kantaloupe-scheduler"


class SchedulerProcess:
    """``kantaloupe scheduler`` as a child process on the plane's extender port."""

    def __init__(self, plane: ControlPlane, log_dir: Path, *extra: str) -> None:
        self.plane = plane
        self.log_path = log_dir / "extender.log"
        self.extra = list(extra)
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, timeout_s: float = 30.0) -> None:
        self.starts += 1
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kantaloupe.cli",
                "scheduler",
                "--kubeconfig",
                str(self.plane.admin_kubeconfig),
                "--address",
                "127.0.0.1",
                "--port",
                str(self.plane.ports.extender),
                "--agent-namespace",
                AGENT_NAMESPACE,
                "--leader-elect-identity",
                "it-extender",
                "--reservation-ttl",
                "15s",
                "--bind-timeout",
                "10s",
                "--handoff-timeout",
                "20s",
                "--leader-elect-retry-period",
                "0.5s",
                *self.extra,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        url = f"http://127.0.0.1:{self.plane.ports.extender}/readyz"
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"scheduler exited {self.proc.returncode}: {self.tail()}")
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"scheduler not ready: {self.tail()}")
            time.sleep(0.1)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(25)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def start_scheduler(control_plane: ControlPlane, workdir: Path) -> SchedulerProcess:
    """Create the agent namespace if missing, then start ``kantaloupe scheduler``."""

    async def agent_namespace() -> None:
        async with await KubeClient.connect(control_plane.admin_kubeconfig) as c:
            body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": AGENT_NAMESPACE}}
            with contextlib.suppress(kube_errors.AlreadyExistsError):
                await c.create(namespaces_path(), body, objects.Namespace)

    asyncio.run(agent_namespace())
    proc = SchedulerProcess(control_plane, workdir)
    proc.start()
    return proc


def registration(
    prefix: str, gpus: int, model: str, memory_mib: int = 24576, split: int = 10
) -> str:
    return encode_registration(
        NodeDevicesV1(
            devices=tuple(
                DeviceV1(
                    uuid=f"GPU-{prefix}-{i}",
                    index=i,
                    model=model,
                    memory_mib=memory_mib,
                    cores=100,
                    split=split,
                )
                for i in range(gpus)
            )
        )
    )


async def heartbeat(client: KubeClient, node: str, duration_s: int = 3600) -> None:
    name = keys.AGENT_LEASE_PREFIX + node
    body = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "namespace": AGENT_NAMESPACE},
        "spec": {
            "holderIdentity": node,
            "leaseDurationSeconds": duration_s,
            "renewTime": micro_time(),
        },
    }
    with contextlib.suppress(kube_errors.AlreadyExistsError):
        await client.create(leases_path(AGENT_NAMESPACE), body, objects.Lease)


async def gpu_node(
    api: k8s.ApiClient,
    client: KubeClient,
    name: str,
    *,
    gpus: int = 4,
    model: str = "NVIDIA-RTX-4090",
    memory_mib: int = 24576,
    label: str,
    split: int = 10,
) -> None:
    await cluster.create_gpu_node(
        api,
        name,
        gpus=gpus * split,
        labels={"kantaloupe-test": label},
        annotations={keys.NODE_DEVICES: registration(name, gpus, model, memory_mib, split)},
    )
    await heartbeat(client, name)


def gpu_pod(
    name: str,
    label: str,
    limits: Mapping[str, str | int],
    annotations: Mapping[str, str] | None = None,
    *,
    init_limits: Mapping[str, str | int] | None = None,
    extra_containers: Sequence[Mapping[str, str | int]] = (),
) -> dict[str, Any]:
    manifest = cluster.pod_manifest(
        name,
        scheduler_name=SCHEDULER,
        limits=limits,
        annotations=annotations,
        node_selector={"kantaloupe-test": label},
    )
    spec = manifest["spec"]
    for i, extra in enumerate(extra_containers):
        spec["containers"].append(
            {
                "name": f"side{i}",
                "image": cluster.PAUSE_IMAGE,
                "resources": {"limits": {k: str(v) for k, v in extra.items()}},
            }
        )
    if init_limits is not None:
        spec["initContainers"] = [
            {
                "name": "init",
                "image": cluster.PAUSE_IMAGE,
                "resources": {"limits": {k: str(v) for k, v in init_limits.items()}},
            }
        ]
    return manifest


@contextlib.asynccontextmanager
async def node_agent_double(client: KubeClient) -> AsyncIterator[list[str]]:
    """Plays the device-plugin side of the hand-off: every pod bound with a ``binding``
    hand-off gets ``done`` (every GPU container served), as the node agent writes it."""
    served: list[str] = []
    queue: asyncio.Queue[objects.Pod] = asyncio.Queue()

    def on_change(old: objects.Pod | None, new: objects.Pod | None) -> None:
        if new is not None and new.spec.node_name:
            raw = (new.metadata.annotations or {}).get(keys.HANDOFF)
            if raw is not None and decode_handoff(raw).phase == HandoffPhase.BINDING:
                queue.put_nowait(new)

    inflight: set[str] = set()
    limit = asyncio.Semaphore(32)

    async def answer_one(pod: objects.Pod) -> None:
        raw = pod.metadata.annotations or {}
        try:
            alloc = decode_allocation(raw[keys.ALLOCATION])
            doc = decode_handoff(raw[keys.HANDOFF])
        except KeyError:
            return
        done = HandoffV1(
            phase=HandoffPhase.DONE,
            node=doc.node,
            since=doc.since,
            served=tuple(i for i, c in enumerate(alloc.containers) if c),
        )
        async with limit:
            with contextlib.suppress(kube_errors.NotFoundError):
                await client.patch_annotations(
                    pod_path(pod.metadata.namespace, pod.metadata.name),
                    {keys.HANDOFF: encode_handoff(done)},
                    objects.Pod,
                )
                served.append(pod.metadata.name)

    async def answer() -> None:
        pending: set[asyncio.Task[None]] = set()
        try:
            while True:
                pod = await queue.get()
                if pod.metadata.uid in inflight:
                    continue
                inflight.add(pod.metadata.uid)
                task = asyncio.ensure_future(answer_one(pod))
                pending.add(task)
                task.add_done_callback(pending.discard)
                task.add_done_callback(lambda _, uid=pod.metadata.uid: inflight.discard(uid))
        finally:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    informer = Informer(
        client,
        pods_path(),
        objects.Pod,
        meta=lambda p: p.metadata,
        on_change=on_change,
        watch_timeout_s=60,
    )
    tasks = [asyncio.ensure_future(informer.run()), asyncio.ensure_future(answer())]
    try:
        await asyncio.wait_for(informer.synced.wait(), 30)
        yield served
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def over_allocations(
    client: KubeClient, namespace: str, capacity: Mapping[str, tuple[int, int]]
) -> list[str]:
    """Every GPU whose bound pods' slices exceed its memory, split or compute (init
    containers excluded: they run before the app containers)."""
    listing = await client.list(pods_path(namespace), objects.Pod)
    use: dict[str, list[int]] = {}
    for pod in listing.items:
        raw = (pod.metadata.annotations or {}).get(keys.ALLOCATION)
        if raw is None or not pod.spec.node_name:
            continue
        alloc = decode_allocation(raw)
        for container in alloc.containers[alloc.init_count :]:
            for s in container:
                u = use.setdefault(s.uuid, [0, 0, 0])
                u[0] += s.memory_mib
                u[1] += s.cores
                u[2] += 1
    bad = []
    for uuid, (mem, cores, tenants) in use.items():
        memory_mib, split = capacity[uuid]
        if mem > memory_mib or cores > 100 or tenants > split:
            bad.append(f"{uuid}: {mem} MiB, {cores}% cores, {tenants} tenants")
    return bad


async def allocation_of(client: KubeClient, namespace: str, name: str) -> Any:
    pod = await client.get(pod_path(namespace, name), objects.Pod)
    raw = (pod.metadata.annotations or {}).get(keys.ALLOCATION)
    return None if raw is None else decode_allocation(raw)


def env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")
