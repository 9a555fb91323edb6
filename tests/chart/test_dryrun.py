"""Every object the chart renders, applied with server-side dry-run to the real kube-apiserver, so
the API server itself validates it (schemas, CEL in matchConditions, RBAC role references).

Objects of CRD-backed kinds (ServiceMonitor, PrometheusRule, cert-manager's Certificate and Issuer)
are left out: their CRDs belong to other projects and are not installed on the test control plane.
test_render.py and test_monitoring.py check them locally instead.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from chartkit import CHART, NAMESPACE, Render

from kantaloupe.testing import ControlPlane

pytestmark = pytest.mark.integration

CRD_KINDS = {"ServiceMonitor", "PrometheusRule", "Certificate", "Issuer", "ClusterIssuer"}

VALUE_SETS = [
    pytest.param({}, id="defaults"),
    pytest.param({"certificates": {"mode": "helm"}}, id="helm-certificates"),
    pytest.param(
        {
            "certificates": {"mode": "cert-manager"},
            "monitoring": {
                "serviceMonitor": {"enabled": True},
                "prometheusRule": {"enabled": True},
                "dashboard": {"enabled": True},
            },
            "runtimeClass": {"name": "nvidia", "create": True},
            "nodeAgent": {"gpuOperator": {"waitForToolkit": True}, "cdi": True},
        },
        id="cert-manager-monitoring-runtimeclass",
    ),
    pytest.param(
        {
            "resourceNames": {
                "gpu": "example.com/vgpu",
                "memory": "example.com/vgpu-memory",
                "memoryPercentage": "example.com/vgpu-memory-percentage",
                "cores": "example.com/vgpu-cores",
                "priority": "example.com/vgpu-priority",
            },
            "nodeAgent": {"nodeSelector": {"accelerator": "nvidia", "gpu": None}},
            "webhook": {"matchConditions": False, "failurePolicy": "Ignore", "replicas": 1},
            "scheduler": {"config": {"bind-timeout": "20s"}},
        },
        id="custom-names-no-match-conditions",
    ),
]


def _kubectl(
    cp: ControlPlane, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(cp.binaries.kubectl), "--kubeconfig", str(cp.admin_kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def release_namespace(control_plane: ControlPlane) -> str:
    done = _kubectl(control_plane, "create", "namespace", NAMESPACE)
    assert done.returncode == 0 or "AlreadyExists" in done.stderr, done.stderr
    return NAMESPACE


@pytest.mark.parametrize("values", VALUE_SETS)
def test_every_rendered_object_passes_server_side_dry_run(
    control_plane: ControlPlane,
    release_namespace: str,
    render: Render,
    tmp_path: Path,
    values: dict[str, Any],
) -> None:
    objs = [o for o in render(values) if o["kind"] not in CRD_KINDS]
    assert objs
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(yaml.safe_dump_all(objs))
    done = _kubectl(control_plane, "apply", "--dry-run=server", "-f", str(manifest))
    assert done.returncode == 0, done.stdout + done.stderr
    applied = [line for line in done.stdout.splitlines() if "(server dry run)" in line]
    assert len(applied) == len(objs), done.stdout


def test_helm_install_dry_run_against_the_api_server_renders_notes(
    control_plane: ControlPlane, release_namespace: str, helm: Path
) -> None:
    """`helm install --dry-run=server`: the cluster's real version meets the chart's kubeVersion,
    `lookup` runs against the API (certificates.mode=helm) and NOTES.txt renders."""
    done = subprocess.run(
        [
            str(helm),
            "install",
            "kantaloupe",
            str(CHART),
            "--namespace",
            release_namespace,
            "--dry-run=server",
            "--kubeconfig",
            str(control_plane.admin_kubeconfig),
            "--set",
            "certificates.mode=helm",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    notes = done.stdout.split("NOTES:", 1)[1]
    assert "kubectl label node <node> gpu=on" in notes
    assert "kantaloupe-scheduler" in notes
