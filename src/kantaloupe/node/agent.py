"""Wiring of the node agent: one loop carrying the device plugin, registration, heartbeat,
state cleanup and the HTTP face (``/metrics``, ``/healthz``, ``/readyz``)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from kantaloupe import __version__
from kantaloupe.kube.client import KubeClient
from kantaloupe.kube.heartbeat import Heartbeat
from kantaloupe.kube.registering import NodePods, NodeWriter
from kantaloupe.node import library as libraries
from kantaloupe.node import regions
from kantaloupe.node.config import NodeConfig
from kantaloupe.node.devices import (
    DeviceSource,
    DeviceTable,
    InventorySource,
    Nvml,
    NvmlSource,
    PynvmlNvml,
    XidWatcher,
)
from kantaloupe.node.monitor import MonitorCollector, StateCleaner
from kantaloupe.node.plugin import AnswerSettings, DevicePluginService, PluginServer
from kantaloupe.node.registration import Registrar, beat
from kantaloupe.node.statedir import StateDir
from kantaloupe.runtime import lifecycle, probes

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AgentSettings:
    node: str
    inventory: Path | None
    """Simulated GPUs from this file instead of NVML."""
    config_file: Path | None
    plugin_dir: Path
    library_source: Path | None
    """Installed into ``library_dir`` at start; None: use what ``library_dir`` already holds."""
    library_dir: Path
    state_dir: Path
    metrics_port: int = 9394
    metrics_address: str = "0.0.0.0"
    lease_namespace: str = "kantaloupe-system"
    kubeconfig: Path | None = None
    wait_for_file: Path | None = None
    discovery_interval_s: float = 30.0
    kubelet_poll_s: float = 1.0
    publish_capacity: bool = True
    cdi: bool = False
    lease_duration_s: int = 40
    cleanup_interval_s: float = 30.0


def run_agent(settings: AgentSettings, config: NodeConfig) -> int:
    async def main(life: lifecycle.Lifecycle) -> None:
        await start(life, settings, config)

    return lifecycle.run_process(main, grace_s=10.0)


async def start(life: lifecycle.Lifecycle, settings: AgentSettings, config: NodeConfig) -> None:
    """Start every part of the agent under ``life``; returns once they run."""
    node = settings.node
    client = await KubeClient.connect(settings.kubeconfig, user_agent=f"kantaloupe-node/{node}")
    life.on_shutdown(client.close)

    table = DeviceTable(config)
    nvml: Nvml | None = None
    source: DeviceSource
    if settings.inventory is not None:
        source = InventorySource(settings.inventory)
    else:
        real = PynvmlNvml()
        await asyncio.to_thread(real.init)
        life.on_shutdown(lambda: asyncio.to_thread(real.shutdown))
        nvml = real
        source = NvmlSource(real)
        watcher = XidWatcher(real, asyncio.get_running_loop(), table.mark_unhealthy)
        watcher.start()
        life.on_shutdown(lambda: asyncio.to_thread(watcher.stop))

    installed: libraries.InstalledLibrary | None
    if settings.library_source is not None:
        installed = await asyncio.to_thread(
            libraries.install_library, settings.library_source, settings.library_dir
        )
    else:
        installed = await asyncio.to_thread(libraries.find_installed, settings.library_dir)
        if installed is None:
            log.warning(
                "no isolation library installed: containers get their limits as env but nothing "
                "enforces them; pass --library-source",
                extra={"path": str(settings.library_dir)},
            )

    registrar = Registrar(
        NodeWriter(client, node),
        table,
        source,
        agent_version=__version__,
        publish_capacity=settings.publish_capacity,
    )
    await registrar.discover()

    pods = NodePods(client, node)
    state = StateDir(settings.state_dir)
    service = DevicePluginService(
        node=node,
        table=table,
        pods=pods,
        state_dir=state,
        settings=AnswerSettings(config=config, library=installed, cdi=settings.cdi),
    )
    server = PluginServer(service, settings.plugin_dir, poll_s=settings.kubelet_poll_s)

    registry = CollectorRegistry()
    registry.register(
        MonitorCollector(
            node=node,
            gpus=table.gpus,
            nvml=nvml,
            state_dir=state,
            regions=regions.reader(),
            registered=lambda: server.registered,
        )
    )
    app = probes.build_app(
        readiness=lambda: server.registered and registrar.synced,
        registry=None,
        stopping=life.is_stopping,
    )

    async def metrics(_: web.Request) -> web.Response:
        body = await asyncio.to_thread(generate_latest, registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/metrics", metrics)
    runner = await lifecycle.serve(life, app, settings.metrics_address, settings.metrics_port)
    log.info(
        "node agent started",
        extra={"node": node, "metrics_port": lifecycle.bound_port(runner), "version": __version__},
    )

    heartbeat = Heartbeat(
        client,
        namespace=settings.lease_namespace,
        node=node,
        duration_s=settings.lease_duration_s,
    )
    cleaner = StateCleaner(state, pods)
    guard = life.guard
    guard.spawn("registration", registrar.run(settings.discovery_interval_s), root=True)
    guard.spawn("heartbeat", beat(heartbeat, settings.lease_duration_s / 4), root=True)
    guard.spawn("device-plugin", server.run(), root=True)
    guard.spawn("state-cleanup", cleaner.run(settings.cleanup_interval_s), root=True)
