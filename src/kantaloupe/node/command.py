"""``kantaloupe node-agent``: flags and env into settings, files checked, then the agent runs.

Every flag has an env twin ``KANTALOUPE_<FLAG>`` (``--node-name`` also reads ``NODE_NAME``, as a
DaemonSet sets it from ``spec.nodeName``); a flag beats its env, which beats the default. The
config and inventory files are read before anything starts, so a broken one stops the agent with
exit 2 and one line naming file, field and fix.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

from kantaloupe.api.errors import InvalidConfigError
from kantaloupe.node.agent import AgentSettings, run_agent
from kantaloupe.node.config import load_config
from kantaloupe.node.devices import load_inventory
from kantaloupe.runtime.logs import setup_logging

log = logging.getLogger(__name__)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _env_name(flag: str) -> str:
    return "KANTALOUPE_" + flag.lstrip("-").replace("-", "_").upper()


def _env(flag: str, default: str | None = None) -> str | None:
    return os.environ.get(_env_name(flag), default)


def _env_bool(flag: str, default: bool) -> bool:
    raw = os.environ.get(_env_name(flag))
    if raw is None:
        return default
    if raw.strip().lower() in _TRUE:
        return True
    if raw.strip().lower() in _FALSE:
        return False
    raise InvalidConfigError(_env_name(flag), raw, "is not a boolean", "use true or false")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    def add(flag: str, default: str | None, help_text: str, metavar: str | None = None) -> None:
        shown = f" (default: {default})" if default else ""
        parser.add_argument(
            flag, default=None, metavar=metavar, help=f"{help_text} [env {_env_name(flag)}]{shown}"
        )

    add("--node-name", None, "this node's name (also env NODE_NAME)")
    add("--inventory", None, "inventory YAML of simulated GPUs instead of NVML", metavar="PATH")
    add("--config", None, "per-node config YAML (split count, scaling, exclusions)", metavar="PATH")
    add("--device-plugin-dir", "/var/lib/kubelet/device-plugins", "kubelet's device plugin dir")
    add("--library-source", None, "libkantaloupe-core.so to install on the host", metavar="PATH")
    add("--library-dir", "/usr/local/kantaloupe", "host dir the library is installed into")
    add("--state-dir", "/var/lib/kantaloupe", "host dir of per-container state")
    add("--metrics-port", "9394", "port of /metrics, /healthz and /readyz")
    add("--metrics-address", "0.0.0.0", "address the metrics port binds")
    add("--lease-namespace", "kantaloupe-system", "namespace of the heartbeat Lease")
    add("--kubeconfig", None, "kubeconfig (default: in-cluster, then ~/.kube/config)")
    add("--wait-for-file", None, "wait until this file exists before starting", metavar="PATH")
    add("--discovery-interval", "30", "seconds between device discoveries")
    add("--kubelet-poll-interval", "1", "seconds between checks of kubelet's socket")
    parser.add_argument(
        "--publish-capacity",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="publish nvidia.com/gpumem and gpucores totals in node capacity "
        f"[env {_env_name('--publish-capacity')}] (default: true)",
    )
    parser.add_argument(
        "--cdi",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="answer Allocate with CDI device names too "
        f"[env {_env_name('--cdi')}] (default: false)",
    )


def _pick(args: argparse.Namespace, flag: str, default: str | None = None) -> str | None:
    value = getattr(args, flag.lstrip("-").replace("-", "_"))
    return value if value is not None else _env(flag, default)


def _number(args: argparse.Namespace, flag: str, default: str, *, minimum: float) -> float:
    raw = _pick(args, flag, default) or default
    try:
        value = float(raw)
    except ValueError:
        raise InvalidConfigError(
            flag, raw, "is not a number", f"give seconds, e.g. {default}"
        ) from None
    if value < minimum:
        raise InvalidConfigError(flag, raw, f"must be at least {minimum:g}", f"e.g. {default}")
    return value


def settings_from(args: argparse.Namespace) -> AgentSettings:
    """Flags > env > defaults, validated; :class:`InvalidConfigError` names the flag."""
    node = _pick(args, "--node-name") or os.environ.get("NODE_NAME")
    if not node:
        raise InvalidConfigError(
            "--node-name", "", "is required", "pass --node-name or set NODE_NAME from spec.nodeName"
        )
    port = _number(args, "--metrics-port", "9394", minimum=0)
    if port != int(port) or port > 65535:
        raise InvalidConfigError("--metrics-port", port, "is not a port", "use 0-65535")

    def path(flag: str, default: str | None = None) -> Path | None:
        raw = _pick(args, flag, default)
        return Path(raw) if raw else None

    kubeconfig = path("--kubeconfig")
    if kubeconfig is not None and not kubeconfig.is_file():
        raise InvalidConfigError(
            "--kubeconfig", str(kubeconfig), "is not a file", "point it at a readable kubeconfig"
        )
    publish = args.publish_capacity
    cdi = args.cdi
    return AgentSettings(
        node=node,
        inventory=path("--inventory"),
        config_file=path("--config"),
        plugin_dir=path("--device-plugin-dir", "/var/lib/kubelet/device-plugins") or Path(),
        library_source=path("--library-source"),
        library_dir=path("--library-dir", "/usr/local/kantaloupe") or Path(),
        state_dir=path("--state-dir", "/var/lib/kantaloupe") or Path(),
        metrics_port=int(port),
        metrics_address=_pick(args, "--metrics-address", "0.0.0.0") or "0.0.0.0",
        lease_namespace=_pick(args, "--lease-namespace") or "kantaloupe-system",
        kubeconfig=kubeconfig,
        wait_for_file=path("--wait-for-file"),
        discovery_interval_s=_number(args, "--discovery-interval", "30", minimum=0.05),
        kubelet_poll_s=_number(args, "--kubelet-poll-interval", "1", minimum=0.01),
        publish_capacity=_env_bool("--publish-capacity", True) if publish is None else publish,
        cdi=_env_bool("--cdi", False) if cdi is None else cdi,
    )


def wait_for_file(path: Path, *, poll_s: float = 1.0) -> None:
    """Block until ``path`` exists (e.g. the GPU Operator's toolkit-ready marker)."""
    if path.exists():
        return
    log.info("waiting for a file before starting", extra={"path": str(path)})
    while not path.exists():
        time.sleep(poll_s)


def run(args: argparse.Namespace) -> int:
    setup_logging("DEBUG" if getattr(args, "debug", False) else "INFO")
    settings = settings_from(args)
    if settings.wait_for_file is not None:
        wait_for_file(settings.wait_for_file)
    config = load_config(settings.config_file, settings.node)
    if settings.inventory is not None:
        load_inventory(settings.inventory)  # fail fast, before anything starts
    return run_agent(settings, config)
