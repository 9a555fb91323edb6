"""`promtool check metrics` on each component's /metrics exposition, produced by the components' own
metric classes on a fresh registry (the same objects their servers render at /metrics).

Populated with a small fleet, so the HAMi device gauges carry samples and their labels are checked.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import factories
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from kantaloupe.api.ids import DeviceUuid
from kantaloupe.extender.metrics import AllocationCollector, ExtenderMetrics, StateView
from kantaloupe.node.devices import Gpu
from kantaloupe.node.monitor import MonitorCollector
from kantaloupe.node.statedir import StateDir
from kantaloupe.scheduling.ledger import Ledger
from kantaloupe.webhook.server import WebhookMetrics

# HAMi's exact names, kept so HAMi's dashboards keep working (STYLE.md §2), though promtool's linter
# would name them differently.
HAMI_NAMES_LINT_ALLOWS = {"hami_gpu_shared_count"}


class _NoRegions:
    def read(self, path: Path) -> None:
        return None


def _scheduler_exposition() -> bytes:
    registry = CollectorRegistry()
    metrics = ExtenderMetrics(registry)
    metrics.filter_duration.labels("ok").observe(0.002)
    metrics.bind_duration.labels("ok").observe(0.01)
    ledger = Ledger([factories.node("gpu-1", gpus=2), factories.node("gpu-2", gpus=1)])
    registry.register(
        AllocationCollector(
            StateView(
                ledger=ledger,
                pod_names=lambda uid: None,
                handoffs_in_flight=lambda: 0,
                is_leader=lambda: True,
                node_states=lambda: {"ready": 2, "agent_stale": 0},
            )
        )
    )
    return generate_latest(registry)


def _webhook_exposition() -> bytes:
    registry = CollectorRegistry()
    WebhookMetrics(registry)
    return generate_latest(registry)


def _node_agent_exposition(tmp_path: Path) -> bytes:
    registry = CollectorRegistry()
    gpus = (Gpu(DeviceUuid("GPU-a"), 0, "NVIDIA A100-SXM4-40GB", 40960),)
    registry.register(
        MonitorCollector(
            node="gpu-1",
            gpus=lambda: gpus,
            nvml=None,
            state_dir=StateDir(tmp_path),
            regions=_NoRegions(),
            registered=lambda: True,
        )
    )
    return generate_latest(registry)


@pytest.mark.parametrize("component", ["scheduler", "webhook", "node-agent"])
def test_promtool_check_metrics(promtool: Path, tmp_path: Path, component: str) -> None:
    text = {
        "scheduler": _scheduler_exposition,
        "webhook": _webhook_exposition,
        "node-agent": lambda: _node_agent_exposition(tmp_path),
    }[component]()
    assert text.strip(), f"{component} exposed nothing"
    done = subprocess.run(
        [str(promtool), "check", "metrics"],
        input=text,
        capture_output=True,
        timeout=60,
        check=False,
    )
    report = (done.stdout + done.stderr).decode()
    # 0: clean; 3: lint problems only (one line each, starting with the metric); else unparsable.
    assert done.returncode in (0, 3), report
    problems = [line for line in report.splitlines() if line.strip()]
    unexpected = [p for p in problems if p.split()[0] not in HAMI_NAMES_LINT_ALLOWS]
    assert not unexpected, report
