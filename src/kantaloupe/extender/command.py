"""``kantaloupe scheduler``: serve kube-scheduler's extender.

Every setting is a flag, an env var ``KANTALOUPE_<FLAG>`` and a key of the ``--config`` file
(``version: v1``; unknown keys refused); flag > env > file > default.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from typing import Any

from kantaloupe.api.errors import InvalidConfigError
from kantaloupe.extender.settings import Settings
from kantaloupe.runtime import logs
from kantaloupe.runtime.lifecycle import Lifecycle, run_process
from kantaloupe.runtime.options import Option, add_options, parse_bool, parse_duration, resolve
from kantaloupe.scheduling.policy import GpuPolicy, NodePolicy

_D = Settings()


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError("must be 0-65535")
    return value


OPTIONS: tuple[Option, ...] = (
    Option("address", str, _D.address, "listen address"),
    Option("port", _port, _D.port, "listen port for filter/bind/probes/metrics"),
    Option("metrics-port", _port, _D.metrics_port, "extra port for /metrics and probes; 0: none"),
    Option("tls-cert-file", str, _D.tls_cert_file, "PEM certificate (HTTPS when set)"),
    Option("tls-key-file", str, _D.tls_key_file, "PEM private key"),
    Option("kubeconfig", str, _D.kubeconfig, "kubeconfig path; empty: in-cluster"),
    Option("kube-timeout", parse_duration, _D.kube_timeout_s, "bound on each API request"),
    Option(
        "node-scheduler-policy",
        NodePolicy,
        _D.node_policy,
        "binpack or spread across nodes",
        choices=[p.value for p in NodePolicy],
    ),
    Option(
        "gpu-scheduler-policy",
        GpuPolicy,
        _D.gpu_policy,
        "how GPUs of a node are chosen",
        choices=[p.value for p in GpuPolicy],
    ),
    Option("node-label-selector", str, _D.node_label_selector, "watch only matching nodes"),
    Option("agent-namespace", str, _D.agent_namespace, "namespace of node-agent Leases"),
    Option("agent-lease-grace", parse_duration, _D.agent_lease_grace_s, "heartbeat grace"),
    Option(
        "reservation-ttl",
        parse_duration,
        _D.reservation_ttl_s,
        "release a reservation whose pod never binds after this long",
    ),
    Option(
        "bind-timeout",
        parse_duration,
        _D.bind_timeout_s,
        "longest a bind waits for an overlapping hand-off (keep under httpTimeout)",
    ),
    Option(
        "handoff-timeout",
        parse_duration,
        _D.handoff_timeout_s,
        "release a hand-off the node agent never finishes after this long",
    ),
    Option("leader-elect", parse_bool, _D.leader_elect, "campaign for a Lease", flag_kind="bool"),
    Option("leader-elect-lease-name", str, _D.lease_name, "Lease name"),
    Option("leader-elect-namespace", str, _D.lease_namespace, "Lease namespace (default agent's)"),
    Option("leader-elect-identity", str, _D.identity, "holder identity (default host name)"),
    Option("leader-elect-lease-duration", parse_duration, _D.lease_duration_s, "Lease duration"),
    Option("leader-elect-renew-deadline", parse_duration, _D.renew_deadline_s, "renew deadline"),
    Option("leader-elect-retry-period", parse_duration, _D.retry_period_s, "retry period"),
    Option("shutdown-grace", parse_duration, _D.shutdown_grace_s, "SIGTERM to exit, at most"),
    Option(
        "log-level",
        str,
        _D.log_level,
        "log level",
        choices=["debug", "info", "warning", "error"],
    ),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, OPTIONS)


def settings_from(args: argparse.Namespace, env: Mapping[str, str]) -> Settings:
    v: dict[str, Any] = resolve(OPTIONS, args, env)
    settings = Settings(
        address=v["address"],
        port=v["port"],
        metrics_port=v["metrics_port"],
        tls_cert_file=v["tls_cert_file"],
        tls_key_file=v["tls_key_file"],
        kubeconfig=v["kubeconfig"],
        kube_timeout_s=v["kube_timeout"],
        node_policy=NodePolicy(v["node_scheduler_policy"]),
        gpu_policy=GpuPolicy(v["gpu_scheduler_policy"]),
        node_label_selector=v["node_label_selector"],
        agent_namespace=v["agent_namespace"],
        agent_lease_grace_s=v["agent_lease_grace"],
        reservation_ttl_s=v["reservation_ttl"],
        bind_timeout_s=v["bind_timeout"],
        handoff_timeout_s=v["handoff_timeout"],
        leader_elect=v["leader_elect"],
        lease_name=v["leader_elect_lease_name"],
        lease_namespace=v["leader_elect_namespace"],
        identity=v["leader_elect_identity"],
        lease_duration_s=v["leader_elect_lease_duration"],
        renew_deadline_s=v["leader_elect_renew_deadline"],
        retry_period_s=v["leader_elect_retry_period"],
        shutdown_grace_s=v["shutdown_grace"],
        log_level=v["log_level"],
    )
    _check(settings)
    return settings


def _check(s: Settings) -> None:
    if bool(s.tls_cert_file) != bool(s.tls_key_file):
        raise InvalidConfigError(
            "tls-cert-file/tls-key-file",
            (s.tls_cert_file, s.tls_key_file),
            "only one is set",
            "set both for HTTPS, or neither for HTTP",
        )
    if s.reservation_ttl_s <= 0:
        raise InvalidConfigError(
            "reservation-ttl", s.reservation_ttl_s, "must be above 0", "e.g. 30s"
        )
    if s.bind_timeout_s <= 0:
        raise InvalidConfigError("bind-timeout", s.bind_timeout_s, "must be above 0", "e.g. 25s")
    if s.handoff_timeout_s <= 0:
        raise InvalidConfigError(
            "handoff-timeout", s.handoff_timeout_s, "must be above 0", "e.g. 60s"
        )
    if s.leader_elect and not s.renew_deadline_s < s.lease_duration_s:
        raise InvalidConfigError(
            "leader-elect-renew-deadline",
            s.renew_deadline_s,
            f"must be below leader-elect-lease-duration ({s.lease_duration_s}s)",
            "e.g. 10s and 15s",
        )


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args, os.environ)
    logs.setup_logging("DEBUG" if getattr(args, "debug", False) else settings.log_level)
    from kantaloupe.extender import process

    async def main(life: Lifecycle) -> None:
        await process.start(life, settings)

    return run_process(main, grace_s=settings.shutdown_grace_s)
