"""Wiring of one extender process: client, watches, election, state, HTTP, background tasks."""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from kantaloupe.extender import server
from kantaloupe.extender.metrics import AllocationCollector, ExtenderMetrics, StateView
from kantaloupe.extender.service import Extender, KubePodWriter, Timing
from kantaloupe.extender.settings import Settings
from kantaloupe.extender.state import ClusterState
from kantaloupe.kube import objects
from kantaloupe.kube.client import KubeClient, leases_path, nodes_path, pods_path
from kantaloupe.kube.election import ElectionSettings, LeaderElector
from kantaloupe.kube.events import EventRecorder
from kantaloupe.kube.watching import Informer
from kantaloupe.runtime import probes, tls
from kantaloupe.runtime.lifecycle import Lifecycle, bound_port, serve
from kantaloupe.scheduling import fit

log = logging.getLogger(__name__)

ACTIVE_PODS = "status.phase!=Succeeded,status.phase!=Failed"


def _pod_meta(p: objects.Pod) -> objects.ObjectMeta:
    return p.metadata


def _node_meta(n: objects.Node) -> objects.ObjectMeta:
    return n.metadata


def _lease_meta(lease: objects.Lease) -> objects.ObjectMeta:
    return lease.metadata


@dataclass(slots=True)
class Running:
    """Handles on a started extender (tests and benchmarks use them)."""

    port: int
    client: KubeClient
    state: ClusterState
    extender: Extender
    pods: Informer[objects.Pod]
    nodes: Informer[objects.Node]
    leases: Informer[objects.Lease]
    elector: LeaderElector | None
    recorder: EventRecorder
    registry: CollectorRegistry

    def is_synced(self) -> bool:
        return (
            self.pods.synced.is_set() and self.nodes.synced.is_set() and self.leases.synced.is_set()
        )

    def is_leader(self) -> bool:
        return self.elector is None or self.elector.is_leader


async def start(life: Lifecycle, settings: Settings) -> Running:
    """Start everything under ``life``; returns once listening (sync continues in tasks)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    client = await KubeClient.connect(
        settings.kubeconfig or None,
        timeout_s=settings.kube_timeout_s,
        user_agent="kantaloupe-scheduler",
    )
    life.on_shutdown(client.close)
    registry = CollectorRegistry()
    metrics = ExtenderMetrics(registry)
    recorder = EventRecorder(client, "kantaloupe-scheduler", instance=settings.identity)
    state = ClusterState(
        events=recorder,
        metrics=metrics,
        agent_namespace=settings.agent_namespace,
        agent_lease_grace_s=settings.agent_lease_grace_s,
    )
    nodes = Informer(
        client,
        nodes_path(),
        objects.Node,
        meta=_node_meta,
        on_change=state.on_node,
        label_selector=settings.node_label_selector,
    )
    leases = Informer(
        client,
        leases_path(settings.agent_namespace),
        objects.Lease,
        meta=_lease_meta,
        on_change=state.on_lease,
    )
    pods = Informer(
        client,
        pods_path(),
        objects.Pod,
        meta=_pod_meta,
        on_change=state.on_pod,
        field_selector=ACTIVE_PODS,
    )
    elector = None
    if settings.leader_elect:
        elector = LeaderElector(
            client,
            ElectionSettings(
                namespace=settings.election_namespace,
                name=settings.lease_name,
                identity=settings.identity or socket.gethostname(),
                lease_duration_s=settings.lease_duration_s,
                renew_deadline_s=settings.renew_deadline_s,
                retry_period_s=settings.retry_period_s,
            ),
        )

    def lookup(namespace: str, name: str) -> objects.Pod | None:
        return pods.store.get(f"{namespace}/{name}")

    running = Running(0, client, state, None, pods, nodes, leases, elector, recorder, registry)  # type: ignore[arg-type]
    extender = Extender(
        state,
        KubePodWriter(client),
        metrics,
        defaults=fit.Defaults(settings.node_policy, settings.gpu_policy),
        timing=Timing(
            settings.reservation_ttl_s, settings.bind_timeout_s, settings.handoff_timeout_s
        ),
        is_leader=running.is_leader,
        is_synced=running.is_synced,
        pod_lookup=lookup,
    )
    running.extender = extender
    collector = AllocationCollector(
        StateView(
            ledger=state.ledger,
            pod_names=state.pod_name,
            handoffs_in_flight=lambda: len(state.handoffs),
            is_leader=running.is_leader,
            node_states=state.node_states,
        )
    )
    registry.register(collector)
    guard = life.guard
    guard.spawn("events", recorder.run(), root=True)
    guard.spawn("watch-nodes", nodes.run(), root=True)
    guard.spawn("watch-leases", leases.run(), root=True)
    guard.spawn("watch-pods", pods.run(), root=True)
    guard.spawn("housekeeping", extender.housekeeping(), root=True)
    if elector is not None:
        guard.spawn("leader-election", elector.run(), root=True)

    async def report_sync() -> None:
        await asyncio.gather(nodes.synced.wait(), leases.synced.wait(), pods.synced.wait())
        metrics.ledger_rebuild.set(loop.time() - started)
        log.info(
            "synced",
            extra={
                "nodes": len(state.ledger),
                "pods": len(pods.store),
                "seconds": round(loop.time() - started, 3),
            },
        )

    guard.spawn("report-sync", report_sync())

    ssl_context = None
    if settings.tls_cert_file or settings.tls_key_file:
        ssl_context = tls.server_context(settings.tls_cert_file, settings.tls_key_file)
    app = probes.build_app(
        readiness=running.is_synced,
        registry=registry,
        stopping=life.is_stopping,
        prepare=collector.prepare,
    )
    server.add_routes(app, extender, metrics)
    runner = await serve(life, app, settings.address, settings.port, ssl_context=ssl_context)
    running.port = bound_port(runner)
    if settings.metrics_port:
        metrics_app = probes.build_app(
            readiness=running.is_synced,
            registry=registry,
            stopping=life.is_stopping,
            prepare=collector.prepare,
        )
        await serve(life, metrics_app, settings.address, settings.metrics_port)
    log.info("listening", extra={"port": running.port, "tls": ssl_context is not None})
    return running
