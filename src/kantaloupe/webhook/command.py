"""``kantaloupe webhook``: build the settings, wire the listeners and the fleet watch, run.

Every setting is a flag, an environment variable ``KANTALOUPE_<FLAG_IN_UPPER_SNAKE>`` and a key
of the optional ``--config`` YAML file (``version: v1``, the flags' names, unknown keys
refused); a flag wins over the environment, which wins over the file, which wins over the
default (``kantaloupe.runtime.options``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import yaml
from prometheus_client import CollectorRegistry

from kantaloupe.api.errors import InvalidConfigError
from kantaloupe.kube import client as kube_client
from kantaloupe.kube import objects, watching
from kantaloupe.runtime import lifecycle, logs, options, tls
from kantaloupe.webhook import mutation, server
from kantaloupe.webhook.fleet import FleetCache

log = logging.getLogger(__name__)

_DNS_SUBDOMAIN: Final = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_DNS_LABEL: Final = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
FLEET_GRACE_S: Final = 10.0
"""Ready without a synced fleet after this long (sizing then skips the fit check), so an
unreachable API server never takes pod admission down with it."""
GRACE_S: Final = 15.0


def _port(text: str) -> int:
    if not re.fullmatch(r"[0-9]{1,5}", text.strip()) or not 1 <= int(text) <= 65535:
        raise ValueError("must be a port number 1-65535")
    return int(text)


def _names(text: str) -> tuple[str, ...]:
    """A comma list; a YAML list from the config file arrives as its flow form ``['a', 'b']``."""
    stripped = text.strip()
    if stripped.startswith("[") and stripped.endswith("]"):
        try:
            items = yaml.safe_load(stripped)
        except yaml.YAMLError:
            raise ValueError("is not a list of names") from None
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise ValueError("is not a list of names")
        return tuple(i.strip() for i in items if i.strip())
    return tuple(t.strip() for t in stripped.split(",") if t.strip())


def _text(text: str) -> str:
    return text.strip()


OPTIONS: Final = (
    options.Option("bind-address", _text, "0.0.0.0", "address both listeners bind"),
    options.Option("port", _port, 9443, "HTTPS port of POST /mutate (and the probes)"),
    options.Option("metrics-port", _port, 9396, "HTTP port of /metrics, /healthz, /readyz"),
    options.Option("tls-cert-file", _text, None, "serving certificate (PEM) of the HTTPS port"),
    options.Option("tls-key-file", _text, None, "private key (PEM) of the serving certificate"),
    options.Option(
        "scheduler-name", _text, "kantaloupe-scheduler", "schedulerName set on GPU-slice pods"
    ),
    options.Option(
        "force-overwrite-default-scheduler",
        options.parse_bool,
        True,
        "replace an explicit default-scheduler on GPU-slice pods (other names are respected)",
        flag_kind="bool",
    ),
    options.Option(
        "trusted-service-accounts",
        _names,
        mutation.DEFAULT_TRUSTED_SERVICE_ACCOUNTS,
        "comma list of users (or groups) allowed to write internal pod annotations",
    ),
    options.Option(
        "deny-privileged",
        options.parse_bool,
        True,
        "refuse GPU-slice pods that have a privileged container",
        flag_kind="bool",
    ),
    options.Option(
        "excluded-namespaces", _names, (), "comma list of namespaces whose pods pass untouched"
    ),
    options.Option(
        "runtime-class-name", _text, None, "runtimeClassName set on GPU-slice pods that have none"
    ),
    options.Option(
        "kubeconfig", _text, None, "kubeconfig path (default: in-cluster, then ~/.kube/config)"
    ),
)


@dataclass(frozen=True, slots=True)
class ServeConfig:
    """Everything :func:`start` needs, validated."""

    settings: mutation.Settings
    bind_address: str
    port: int
    metrics_port: int
    tls_cert_file: str
    tls_key_file: str
    kubeconfig: str | None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_options(parser, OPTIONS)


def resolve(args: argparse.Namespace, environ: Mapping[str, str]) -> ServeConfig:
    """Flag > env > file > default; every error names the setting."""
    v = options.resolve(OPTIONS, args, environ)
    return _validate(v)


def _validate(v: Mapping[str, Any]) -> ServeConfig:
    if v["port"] == v["metrics_port"]:
        raise InvalidConfigError(
            "metrics-port", v["metrics_port"], "equals port", "give the listeners distinct ports"
        )
    for name in ("tls-cert-file", "tls-key-file"):
        path = v[name.replace("-", "_")]
        if not path:
            raise InvalidConfigError(
                name,
                path,
                "is required: the API server calls webhooks over HTTPS only",
                f"pass --{name} (the chart mounts the webhook's certificate Secret)",
            )
        if not os.path.isfile(path):
            raise InvalidConfigError(name, path, "is not a readable file", "fix the path")
    scheduler = v["scheduler_name"]
    if not _DNS_SUBDOMAIN.match(scheduler):
        raise InvalidConfigError(
            "scheduler-name",
            scheduler,
            "is not a valid scheduler name",
            "use lowercase letters, digits, '-' and '.', as the kube-scheduler profile is named",
        )
    runtime = v["runtime_class_name"] or None
    if runtime is not None and not _DNS_SUBDOMAIN.match(runtime):
        raise InvalidConfigError(
            "runtime-class-name",
            runtime,
            "is not a valid RuntimeClass name",
            "give the metadata.name of a RuntimeClass, e.g. nvidia",
        )
    for ns in v["excluded_namespaces"]:
        if not _DNS_LABEL.match(ns):
            raise InvalidConfigError(
                "excluded-namespaces", ns, "is not a namespace name", "list namespace names"
            )
    settings = mutation.Settings(
        scheduler_name=scheduler,
        force_overwrite_default_scheduler=v["force_overwrite_default_scheduler"],
        trusted_service_accounts=frozenset(v["trusted_service_accounts"]),
        deny_privileged=v["deny_privileged"],
        excluded_namespaces=frozenset(v["excluded_namespaces"]),
        runtime_class_name=runtime,
    )
    return ServeConfig(
        settings=settings,
        bind_address=v["bind_address"],
        port=v["port"],
        metrics_port=v["metrics_port"],
        tls_cert_file=v["tls_cert_file"],
        tls_key_file=v["tls_key_file"],
        kubeconfig=v["kubeconfig"] or None,
    )


async def start(
    life: lifecycle.Lifecycle, config: ServeConfig, registry: CollectorRegistry
) -> server.Ports:
    """Connect, start the fleet watch (a root task) and both listeners; all stop with ``life``."""
    ssl_context = tls.server_context(config.tls_cert_file, config.tls_key_file)
    client = await kube_client.KubeClient.connect(
        config.kubeconfig, user_agent="kantaloupe-webhook"
    )
    life.on_shutdown(client.close)
    cache = FleetCache()
    informer = watching.Informer(
        client,
        kube_client.nodes_path(),
        objects.Node,
        meta=lambda n: n.metadata,
        on_change=cache.on_change,
    )
    life.guard.spawn("webhook-fleet-watch", informer.run(), root=True)
    loop = asyncio.get_running_loop()
    started = loop.time()

    def ready() -> bool:
        return informer.synced.is_set() or loop.time() - started > FLEET_GRACE_S

    webhook = server.Webhook(config.settings, server.WebhookMetrics(registry), cache.models)
    return await server.start(
        life,
        webhook,
        registry,
        host=config.bind_address,
        port=config.port,
        metrics_port=config.metrics_port,
        ssl_context=ssl_context,
        readiness=ready,
    )


def run(args: argparse.Namespace) -> int:
    logs.setup_logging("DEBUG" if getattr(args, "debug", False) else "INFO")
    config = resolve(args, os.environ)

    async def main(life: lifecycle.Lifecycle) -> None:
        await start(life, config, CollectorRegistry())

    return lifecycle.run_process(main, grace_s=GRACE_S)
