"""values.schema.json: a wrong value fails `helm template`/`install` with a message naming it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from chartkit import helm_template


def _names(message: str, path: str) -> bool:
    """Helm prints the failing value as a JSON pointer (`/a/b`) or dotted (`a.b`), by version."""
    return f"/{path.replace('.', '/')}" in message or path in message


@pytest.mark.parametrize(
    ("values", "path"),
    [
        pytest.param({"scheduler": {"replicas": "two"}}, "scheduler/replicas", id="type"),
        pytest.param(
            {"scheduler": {"nodeSchedulerPolicy": "pack"}}, "nodeSchedulerPolicy", id="enum"
        ),
        pytest.param(
            {"scheduler": {"gpuSchedulerPolicy": "fastest"}}, "gpuSchedulerPolicy", id="gpu"
        ),
        pytest.param({"scheduler": {"httpTimeout": "30 seconds"}}, "httpTimeout", id="duration"),
        pytest.param({"webhook": {"failurePolicy": "fail"}}, "failurePolicy", id="policy-case"),
        pytest.param({"webhook": {"timeoutSeconds": 60}}, "timeoutSeconds", id="timeout-max"),
        pytest.param(
            {"webhook": {"reinvocationPolicy": "Always"}}, "reinvocationPolicy", id="reinv"
        ),
        pytest.param({"certificates": {"mode": "openssl"}}, "certificates/mode", id="cert-mode"),
        pytest.param({"nodeAgent": {"metricsPort": 70000}}, "metricsPort", id="port-range"),
        pytest.param({"nodeAgent": {"libraryDir": "usr/local"}}, "libraryDir", id="relative-path"),
        pytest.param(
            {"nodeAgent": {"config": {"split_count": 0}}}, "split_count", id="split-count"
        ),
        pytest.param({"nodeAgent": {"config": {"splitCount": 4}}}, "splitCount", id="node-typo"),
        pytest.param({"nodeAgent": {"nodeSelectr": {"gpu": "on"}}}, "nodeSelectr", id="typo"),
        pytest.param({"resourceNames": {"gpu": "nvidia com/gpu"}}, "resourceNames/gpu", id="name"),
        pytest.param({"runtimeClass": {"create": True}}, "runtimeClass/name", id="class-no-name"),
        pytest.param({"monitoring": {"serviceMonitor": {"enabled": "yes"}}}, "enabled", id="bool"),
        pytest.param(
            {"webhook": {"extraTrustedServiceAccounts": ["just-a-name"]}},
            "extraTrustedServiceAccounts",
            id="sa-format",
        ),
    ],
)
def test_bad_value_is_rejected_naming_it(
    helm: Path, tmp_path: Path, values: dict[str, Any], path: str
) -> None:
    done = helm_template(helm, values, tmp_path=tmp_path)
    assert done.returncode != 0, f"accepted {values}"
    message = done.stderr
    assert "schema" in message, message
    assert _names(message, path), message


def test_good_values_pass(helm: Path, tmp_path: Path) -> None:
    values = {
        "scheduler": {
            "replicas": 2,
            "reservationTtl": "45s",
            "gpuSchedulerPolicy": "fragmentation",
        },
        "webhook": {"failurePolicy": "Ignore", "extraTrustedServiceAccounts": ["ops:gpu-admin"]},
        "nodeAgent": {"config": {"split_count": 4, "nodes": [{"name": "gpu-3", "split_count": 2}]}},
        "certificates": {"certManager": {"issuerRef": {"name": "ca", "kind": "ClusterIssuer"}}},
    }
    done = helm_template(helm, values, tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
