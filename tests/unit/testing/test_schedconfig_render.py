"""The scheduler config template renders to the configuration kube-scheduler needs."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import yaml

from kantaloupe.testing.schedconfig import (
    DEFAULT_MANAGED_RESOURCES,
    SchedulerConfig,
    SchedulerConfigError,
    render_scheduler_config,
    template_path,
)

BASE = SchedulerConfig(extender_url="http://127.0.0.1:8888", kubeconfig="/tmp/sched.kubeconfig")


def render(config: SchedulerConfig = BASE) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(render_scheduler_config(config))
    return loaded


def test_defaults_give_one_kantaloupe_profile_and_the_extender() -> None:
    cfg = render()
    assert cfg["apiVersion"] == "kubescheduler.config.k8s.io/v1"
    assert cfg["kind"] == "KubeSchedulerConfiguration"
    assert cfg["clientConnection"] == {"kubeconfig": "/tmp/sched.kubeconfig"}
    assert cfg["leaderElection"]["leaderElect"] is False
    assert [p["schedulerName"] for p in cfg["profiles"]] == ["kantaloupe-scheduler"]
    (ext,) = cfg["extenders"]
    assert ext["urlPrefix"] == "http://127.0.0.1:8888"
    assert ext["filterVerb"] == "filter"
    assert ext["bindVerb"] == "bind"
    assert ext["prioritizeVerb"] == ""
    assert ext["nodeCacheCapable"] is True
    assert ext["httpTimeout"] == "30s"
    assert ext["enableHTTPS"] is False
    assert ext["tlsConfig"] == {"insecure": False, "caFile": ""}


def test_every_gpu_resource_is_managed_and_ignored_by_the_scheduler() -> None:
    resources = render()["extenders"][0]["managedResources"]
    assert resources == [{"name": r, "ignoredByScheduler": True} for r in DEFAULT_MANAGED_RESOURCES]
    assert {r["name"] for r in resources} == {
        "nvidia.com/gpu",
        "nvidia.com/gpumem",
        "nvidia.com/gpumem-percentage",
        "nvidia.com/gpucores",
        "nvidia.com/priority",
    }


def test_test_plane_adds_the_default_profile() -> None:
    cfg = render(dataclasses.replace(BASE, default_profile=True))
    assert [p["schedulerName"] for p in cfg["profiles"]] == [
        "kantaloupe-scheduler",
        "default-scheduler",
    ]


def test_chart_like_settings() -> None:
    cfg = render(
        SchedulerConfig(
            extender_url="https://kantaloupe.kube-system.svc:443",
            enable_https=True,
            tls_ca_file="/etc/kantaloupe/ca.crt",
            leader_elect=True,
            leader_elect_namespace="gpu",
            scheduler_name="gpu-scheduler",
            prioritize_verb="prioritize",
            http_timeout="1m30s",
            managed_resources=("nvidia.com/gpu",),
        )
    )
    assert cfg["clientConnection"]["kubeconfig"] == ""
    assert cfg["leaderElection"] == {
        "leaderElect": True,
        "resourceName": "kantaloupe-scheduler",
        "resourceNamespace": "gpu",
    }
    assert [p["schedulerName"] for p in cfg["profiles"]] == ["gpu-scheduler"]
    ext = cfg["extenders"][0]
    assert ext["enableHTTPS"] is True
    assert ext["tlsConfig"] == {"insecure": False, "caFile": "/etc/kantaloupe/ca.crt"}
    assert ext["prioritizeVerb"] == "prioritize"
    assert ext["httpTimeout"] == "1m30s"
    assert ext["managedResources"] == [{"name": "nvidia.com/gpu", "ignoredByScheduler": True}]


def test_plain_replacement_of_the_whole_file_gives_the_same_config() -> None:
    """Helm replaces tokens everywhere, header comments included; the result must not differ."""
    text = template_path().read_text()
    for token, value in BASE.tokens().items():
        text = text.replace(token, value)
    config = yaml.safe_load(text)
    assert "@@" not in yaml.safe_dump(config)
    assert config == render()


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        pytest.param({"extender_url": "127.0.0.1:80"}, "http:// or https://", id="no-scheme"),
        pytest.param({"enable_https": True}, "must agree", id="https-flag-without-https-url"),
        pytest.param(
            {
                "extender_url": "https://x",
                "enable_https": True,
                "tls_insecure": True,
                "tls_ca_file": "/ca",
            },
            "pick one",
            id="insecure-and-ca",
        ),
        pytest.param({"http_timeout": "30"}, "Go duration", id="timeout-without-unit"),
        pytest.param({"scheduler_name": "default-scheduler"}, "default_profile", id="default-name"),
        pytest.param({"kubeconfig": 'a"b'}, "quotes", id="quote-in-string"),
    ],
)
def test_invalid_settings_are_refused(change: dict[str, Any], fragment: str) -> None:
    with pytest.raises(SchedulerConfigError, match=fragment):
        render_scheduler_config(dataclasses.replace(BASE, **change))


def test_a_template_without_a_token_is_refused() -> None:
    text = template_path().read_text().replace('"@@HTTP_TIMEOUT@@"', '"10s"')
    with pytest.raises(SchedulerConfigError, match="HTTP_TIMEOUT"):
        render_scheduler_config(BASE, text)


def test_a_template_with_an_unknown_token_is_refused() -> None:
    text = template_path().read_text() + "percentageOfNodesToScore: @@PERCENTAGE@@\n"
    with pytest.raises(SchedulerConfigError, match="PERCENTAGE"):
        render_scheduler_config(BASE, text)
