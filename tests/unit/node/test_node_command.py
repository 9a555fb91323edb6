"""``kantaloupe node-agent`` settings: flag > env > default, errors naming the flag."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from kantaloupe.api.errors import InvalidConfigError
from kantaloupe.node import command


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return parser.parse_args(argv)


def test_defaults_and_node_name_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NODE_NAME", "from-downward-api")
    s = command.settings_from(parse())
    assert s.node == "from-downward-api"
    assert s.plugin_dir == Path("/var/lib/kubelet/device-plugins")
    assert (s.metrics_port, s.publish_capacity, s.cdi) == (9394, True, False)
    assert s.lease_namespace == "kantaloupe-system"


def test_flag_beats_env_beats_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KANTALOUPE_NODE_NAME", "env-node")
    monkeypatch.setenv("KANTALOUPE_STATE_DIR", "/env/state")
    monkeypatch.setenv("KANTALOUPE_CDI", "true")
    monkeypatch.setenv("KANTALOUPE_PUBLISH_CAPACITY", "false")
    s = command.settings_from(parse("--state-dir", "/flag/state", "--no-cdi"))
    assert (s.node, s.state_dir, s.cdi, s.publish_capacity) == (
        "env-node",
        Path("/flag/state"),
        False,
        False,
    )


@pytest.mark.parametrize(
    ("argv", "env", "where"),
    [
        pytest.param((), {}, "--node-name", id="no-node"),
        pytest.param(("--node-name", "n", "--metrics-port", "x"), {}, "--metrics-port", id="port"),
        pytest.param(
            ("--node-name", "n", "--metrics-port", "70000"), {}, "--metrics-port", id="port-range"
        ),
        pytest.param(("--node-name", "n"), {"KANTALOUPE_CDI": "perhaps"}, "KANTALOUPE_CDI", id="b"),
        pytest.param(
            ("--node-name", "n", "--kubeconfig", "/absent"), {}, "--kubeconfig", id="kubeconfig"
        ),
        pytest.param(
            ("--node-name", "n", "--discovery-interval", "0"), {}, "--discovery-interval", id="iv"
        ),
    ],
)
def test_bad_settings_name_the_flag(
    monkeypatch: pytest.MonkeyPatch, argv: tuple[str, ...], env: dict[str, str], where: str
) -> None:
    monkeypatch.delenv("NODE_NAME", raising=False)
    monkeypatch.delenv("KANTALOUPE_NODE_NAME", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(InvalidConfigError) as info:
        command.settings_from(parse(*argv))
    assert info.value.where == where
