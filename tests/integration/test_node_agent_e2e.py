"""End to end on the real control plane: scheduler extender, the node agent process, the Go test
kubelet. A pod is bound by the extender, kubelet's Allocate gets env and mounts that match the
recorded allocation; an unhealthy GPU gets no pods; an agent restart keeps what is running."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client as k8s
from test_node_agent_support import (
    TestKubelet,
    build_testkubelet,
    plugin_dir,  # noqa: F401 (a fixture)
    run_testkubelet,
)

from kantaloupe.api import keys
from kantaloupe.api.allocation import decode_allocation
from kantaloupe.api.handoff import HandoffPhase, decode_handoff
from kantaloupe.api.ids import make_slot_id
from kantaloupe.api.registration import decode_registration
from kantaloupe.testing import ControlPlane, cluster

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("kantaloupe.extender.command") is None,
    reason="the scheduler extender (kantaloupe.extender) is not in this build yet",
)

SPLIT = 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def agent_namespace(control_plane: ControlPlane) -> str:
    name = f"kl-agents-{os.getpid() % 100000}"
    control_plane.kubectl("create", "namespace", name, check=False)
    return name


@pytest.fixture(scope="module")
def extender(
    control_plane: ControlPlane, agent_namespace: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    log = (tmp_path_factory.mktemp("extender") / "extender.log").open("w")
    port = int(control_plane.extender_url.rsplit(":", 1)[1])
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kantaloupe.cli",
            "scheduler",
            "--address",
            "127.0.0.1",
            "--port",
            str(port),
            "--kubeconfig",
            str(control_plane.admin_kubeconfig),
            "--agent-namespace",
            agent_namespace,
            "--no-leader-elect",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while True:
        url = f"{control_plane.extender_url}/readyz"
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as r:
            if r.status == 200:
                break
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"extender did not get ready; see {log.name}", pytrace=False)
        time.sleep(0.1)
    yield
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


class Agent:
    """One ``kantaloupe node-agent`` process for a simulated node."""

    def __init__(self, node: str, root: Path, sockets: Path, kubeconfig: Path, ns: str) -> None:
        self.node = node
        self.root = root
        self.inventory = root / "inventory.yaml"
        self.state = root / "state"
        self.port = _free_port()
        self.uuids = [
            f"GPU-{abs(hash(node)) % 10**8:08d}-0000-0000-0000-00000000000{i}" for i in range(2)
        ]
        self.write_inventory(healthy=(True, True))
        library = root / "build" / "libkantaloupe-core.so"
        library.parent.mkdir()
        library.write_bytes(b"\x7fELF not really")
        self.args = [
            sys.executable,
            "-m",
            "kantaloupe.cli",
            "node-agent",
            "--node-name",
            node,
            "--inventory",
            str(self.inventory),
            "--device-plugin-dir",
            str(sockets),
            "--state-dir",
            str(self.state),
            "--library-source",
            str(library),
            "--library-dir",
            str(root / "lib"),
            "--metrics-address",
            "127.0.0.1",
            "--metrics-port",
            str(self.port),
            "--kubeconfig",
            str(kubeconfig),
            "--lease-namespace",
            ns,
            "--discovery-interval",
            "0.3",
            "--kubelet-poll-interval",
            "0.1",
        ]
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0

    def write_inventory(self, *, healthy: tuple[bool, bool]) -> None:
        rows = "\n".join(
            f"  - {{uuid: {u}, model: NVIDIA L4, memory_mib: 8000, healthy: {str(h).lower()}}}"
            for u, h in zip(self.uuids, healthy, strict=True)
        )
        tmp = self.inventory.with_suffix(".tmp")
        tmp.write_text(f"version: v1\ndevices:\n{rows}\n")
        tmp.replace(self.inventory)

    async def start(self) -> None:
        self.starts += 1
        log = (self.root / f"agent-{self.starts}.log").open("w")
        self.proc = await asyncio.create_subprocess_exec(*self.args, stdout=log, stderr=log)
        log.close()

    async def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.proc.wait(), 15)

    async def metrics(self) -> str:
        def fetch() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as r:
                return str(r.read().decode())

        return await asyncio.to_thread(fetch)


@pytest.fixture
async def rig(
    control_plane: ControlPlane,
    extender: None,
    agent_namespace: str,
    kube_api: k8s.ApiClient,
    plugin_dir: Path,  # noqa: F811
    tmp_path: Path,
) -> AsyncIterator[tuple[Agent, TestKubelet]]:
    node = cluster.unique_name("agent-node")
    await cluster.create_gpu_node(kube_api, node, gpus=2 * SPLIT)
    agent = Agent(node, tmp_path, plugin_dir, control_plane.admin_kubeconfig, agent_namespace)
    async with run_testkubelet(build_testkubelet(), plugin_dir) as kubelet:
        await agent.start()
        try:
            await kubelet.wait_event("devices", timeout_s=30)
            await registration(kube_api, node)
            yield agent, kubelet
        finally:
            if agent.proc is not None and agent.proc.returncode is None:
                await agent.stop()
            await cluster.delete_node(kube_api, node)


async def registration(api: k8s.ApiClient, node: str, check: Any = lambda doc: True) -> Any:
    core = k8s.CoreV1Api(api)

    async def probe() -> tuple[bool, Any]:
        n = await core.read_node(node)
        raw = (n.metadata.annotations or {}).get(keys.NODE_DEVICES)
        if raw is None:
            return False, None
        doc = decode_registration(raw)
        return check(doc), doc

    return await cluster.poll_until(probe, timeout_s=20, what=f"registration of {node}")


def gpu_pod(name: str, node: str, gpumem: int = 3000) -> dict[str, Any]:
    return cluster.pod_manifest(
        name,
        limits={"nvidia.com/gpu": 1, "nvidia.com/gpumem": gpumem, "nvidia.com/gpucores": 30},
        node_selector={"kubernetes.io/hostname": node},
    )


async def bound_allocation(api: k8s.ApiClient, namespace: str, name: str) -> Any:
    pod = await cluster.wait_for_pod_bound(api, namespace, name, timeout_s=30)
    return decode_allocation(pod.metadata.annotations[keys.ALLOCATION])


async def hand_to_kubelet(
    kubelet: TestKubelet, agent: Agent, healthy: list[str] | None = None
) -> dict[str, Any]:
    """What kubelet does at admission: ask for a preference, then Allocate it."""
    uuids = agent.uuids if healthy is None else healthy
    available = [make_slot_id(u, r) for u in uuids for r in range(SPLIT)]  # type: ignore[arg-type]
    preferred = await kubelet.call("preferred", available=available, must_include=[], size=1)
    assert preferred["ok"], preferred
    reply = await kubelet.allocate(preferred["devices"])
    assert reply["ok"], reply
    return dict(reply["containers"][0])


async def wait_handoff(api: k8s.ApiClient, namespace: str, name: str, phase: HandoffPhase) -> None:
    def done(p: Any) -> bool:
        raw = (p.metadata.annotations or {}).get(keys.HANDOFF)
        return raw is not None and decode_handoff(raw).phase == phase

    await cluster.wait_for_pod(api, namespace, name, done, timeout_s=15, what=f"hand-off {phase}")


async def test_bound_pod_gets_env_and_mounts_of_its_allocation(
    rig: tuple[Agent, TestKubelet], kube_api: k8s.ApiClient, namespace: str
) -> None:
    agent, kubelet = rig
    await cluster.create_pod(kube_api, namespace, gpu_pod("app", agent.node))
    allocation = await bound_allocation(kube_api, namespace, "app")
    (slice_,) = allocation.containers[0]

    container = await hand_to_kubelet(kubelet, agent)

    envs = container["envs"]
    assert envs["NVIDIA_VISIBLE_DEVICES"] == slice_.uuid
    assert envs["CUDA_DEVICE_MEMORY_LIMIT_0"] == f"{slice_.memory_mib}m" == "3000m"
    assert envs["CUDA_DEVICE_SM_LIMIT"] == str(slice_.cores) == "30"
    assert envs["CUDA_DEVICE_MEMORY_SHARED_CACHE"] == "/usr/local/kantaloupe/state/region.cache"
    pod = await k8s.CoreV1Api(kube_api).read_namespaced_pod("app", namespace)
    lib = str(agent.root / "lib" / "libkantaloupe-core.so")
    assert container["mounts"] == [
        {"container_path": lib, "host_path": lib, "read_only": True},
        {
            "container_path": "/etc/ld.so.preload",
            "host_path": str(agent.root / "lib" / "ld.so.preload"),
            "read_only": True,
        },
        {
            "container_path": "/usr/local/kantaloupe/state",
            "host_path": str(agent.state / "containers" / f"{pod.metadata.uid}_main"),
            "read_only": False,
        },
    ]
    await wait_handoff(kube_api, namespace, "app", HandoffPhase.DONE)


async def test_an_unhealthy_gpu_gets_no_pods(
    rig: tuple[Agent, TestKubelet], kube_api: k8s.ApiClient, namespace: str
) -> None:
    agent, kubelet = rig
    seen = len(kubelet.events)
    agent.write_inventory(healthy=(False, True))
    await registration(kube_api, agent.node, lambda doc: not doc.devices[0].healthy)
    update = await kubelet.wait_event("devices", after=seen)
    assert {d["health"] for d in update["devices"][:SPLIT]} == {"Unhealthy"}

    for name in ("one", "two", "three"):
        await cluster.create_pod(kube_api, namespace, gpu_pod(name, agent.node, gpumem=1000))
        allocation = await bound_allocation(kube_api, namespace, name)
        assert [s.uuid for s in allocation.containers[0]] == [agent.uuids[1]]
        # Kubelet admits it (the next bind to this node waits for this hand-off to finish).
        container = await hand_to_kubelet(kubelet, agent, healthy=[agent.uuids[1]])
        assert container["envs"]["NVIDIA_VISIBLE_DEVICES"] == agent.uuids[1]
        await wait_handoff(kube_api, namespace, name, HandoffPhase.DONE)


async def test_restarting_the_agent_keeps_running_allocations(
    rig: tuple[Agent, TestKubelet], kube_api: k8s.ApiClient, namespace: str
) -> None:
    agent, kubelet = rig
    await cluster.create_pod(kube_api, namespace, gpu_pod("kept", agent.node))
    await bound_allocation(kube_api, namespace, "kept")
    await hand_to_kubelet(kubelet, agent)
    await wait_handoff(kube_api, namespace, "kept", HandoffPhase.DONE)
    before = await registration(kube_api, agent.node)
    state_dirs = sorted((agent.state / "containers").iterdir())
    assert len(state_dirs) == 1

    assert await agent.stop() == 0
    seen = len(kubelet.events)
    await agent.start()
    await kubelet.wait_event("registered", after=seen, timeout_s=30)
    await kubelet.wait_event("devices", after=seen)

    assert sorted((agent.state / "containers").iterdir()) == state_dirs
    assert await registration(kube_api, agent.node) == before
    text = await cluster.poll_until(
        lambda: _metrics_with(agent, 'container="main"'), timeout_s=10, what="agent metrics"
    )
    assert "hami_vgpu_memory_limit_bytes" in text

    await cluster.create_pod(kube_api, namespace, gpu_pod("after", agent.node))
    await bound_allocation(kube_api, namespace, "after")
    await hand_to_kubelet(kubelet, agent)
    await wait_handoff(kube_api, namespace, "after", HandoffPhase.DONE)


async def _metrics_with(agent: Agent, needle: str) -> tuple[bool, str]:
    try:
        text = await agent.metrics()
    except OSError as e:
        return False, str(e)
    return (True, text) if needle in text else (False, text[-500:])
