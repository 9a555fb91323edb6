"""Settings: flag > env > file > default; errors name the setting."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from kantaloupe.api.errors import InvalidConfigError
from kantaloupe.extender import command
from kantaloupe.scheduling.policy import NodePolicy


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_defaults() -> None:
    s = command.settings_from(parse(), {})
    assert s.port == 8888 and s.reservation_ttl_s == 30.0 and s.leader_elect is True


def test_precedence_flag_env_file_default(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("version: v1\nreservation-ttl: 1m\nport: 9000\nbind-timeout: 3s\n")
    env = {"KANTALOUPE_RESERVATION_TTL": "45s", "KANTALOUPE_PORT": "9100"}
    s = command.settings_from(parse("--config", str(cfg), "--port", "9200"), env)
    assert s.port == 9200  # flag
    assert s.reservation_ttl_s == 45.0  # env over file
    assert s.bind_timeout_s == 3.0  # file over default
    assert s.handoff_timeout_s == 60.0  # default


def test_boolean_flags_and_env() -> None:
    assert command.settings_from(parse("--no-leader-elect"), {}).leader_elect is False
    assert (
        command.settings_from(parse(), {"KANTALOUPE_LEADER_ELECT": "false"}).leader_elect is False
    )


@pytest.mark.parametrize(
    "text,where",
    [
        pytest.param("version: v2\n", "version", id="version"),
        pytest.param("reservaton-ttl: 3s\n", "reservaton-ttl", id="typo"),
        pytest.param("port: http\n", "port (from config file", id="bad-int"),
        pytest.param("node-scheduler-policy: random\n", "node-scheduler-policy", id="choice"),
        pytest.param("- a\n", "config", id="not-mapping"),
    ],
)
def test_file_errors_name_the_setting(tmp_path: Path, text: str, where: str) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    with pytest.raises(InvalidConfigError) as e:
        command.settings_from(parse("--config", str(cfg)), {})
    assert str(e.value).startswith(where)


def test_env_errors_name_the_variable() -> None:
    with pytest.raises(InvalidConfigError, match="KANTALOUPE_BIND_TIMEOUT"):
        command.settings_from(parse(), {"KANTALOUPE_BIND_TIMEOUT": "soon"})


def test_tls_needs_both_files() -> None:
    with pytest.raises(InvalidConfigError, match="tls-cert-file"):
        command.settings_from(parse("--tls-cert-file", "/x"), {})


def test_policy_parsed() -> None:
    s = command.settings_from(parse("--node-scheduler-policy", "spread"), {})
    assert s.node_policy is NodePolicy.SPREAD
