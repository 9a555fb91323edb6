"""``kantaloupe webhook`` settings: flag > env > file > default, errors naming the setting."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from kantaloupe.api.errors import InvalidConfigError
from kantaloupe.webhook import command, mutation


@pytest.fixture
def tls_files(tmp_path: Path) -> dict[str, str]:
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_text("cert")
    key.write_text("key")
    return {"KANTALOUPE_TLS_CERT_FILE": str(cert), "KANTALOUPE_TLS_KEY_FILE": str(key)}


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_defaults(tls_files: dict[str, str]) -> None:
    config = command.resolve(parse(), tls_files)
    assert (config.port, config.metrics_port, config.bind_address) == (9443, 9396, "0.0.0.0")
    assert config.settings == mutation.Settings()
    assert config.kubeconfig is None
    assert "system:serviceaccount:kantaloupe:kantaloupe-scheduler" in (
        config.settings.trusted_service_accounts
    )


def test_flag_beats_env_beats_file(tmp_path: Path, tls_files: dict[str, str]) -> None:
    path = tmp_path / "webhook.yaml"
    path.write_text(
        "version: v1\n"
        "scheduler-name: from-file\n"
        "runtime-class-name: nvidia\n"
        "excluded-namespaces: [kube-system, monitoring]\n"
        "deny-privileged: false\n"
    )
    env = {**tls_files, "KANTALOUPE_SCHEDULER_NAME": "from-env", "KANTALOUPE_PORT": "8443"}
    config = command.resolve(parse("--config", str(path), "--port", "7443"), env)
    assert config.port == 7443
    assert config.settings.scheduler_name == "from-env"
    assert config.settings.runtime_class_name == "nvidia"
    assert config.settings.excluded_namespaces == {"kube-system", "monitoring"}
    assert config.settings.deny_privileged is False
    config = command.resolve(parse("--scheduler-name", "from-flag", "--config", str(path)), env)
    assert config.settings.scheduler_name == "from-flag"


def test_boolean_flags_and_lists(tls_files: dict[str, str]) -> None:
    config = command.resolve(
        parse(
            "--no-force-overwrite-default-scheduler",
            "--deny-privileged",
            "--trusted-service-accounts",
            "a, b,,c",
        ),
        {**tls_files, "KANTALOUPE_DENY_PRIVILEGED": "false"},
    )
    assert config.settings.force_overwrite_default_scheduler is False
    assert config.settings.deny_privileged is True
    assert config.settings.trusted_service_accounts == {"a", "b", "c"}


@pytest.mark.parametrize(
    ("argv", "env", "file", "fragments"),
    [
        pytest.param(("--port", "99999"), {}, None, ("port", "1-65535"), id="port-range"),
        pytest.param(
            (), {"KANTALOUPE_METRICS_PORT": "x"}, None, ("KANTALOUPE_METRICS_PORT",), id="env-named"
        ),
        pytest.param(
            ("--metrics-port", "9443"), {}, None, ("metrics-port", "equals port"), id="same-port"
        ),
        pytest.param(
            ("--scheduler-name", "Bad_Name"), {}, None, ("scheduler-name",), id="scheduler-name"
        ),
        pytest.param(
            ("--runtime-class-name", "No Way"),
            {},
            None,
            ("runtime-class-name",),
            id="runtime-class",
        ),
        pytest.param(
            ("--excluded-namespaces", "ok,NOT_OK"),
            {},
            None,
            ("excluded-namespaces", "NOT_OK"),
            id="namespace",
        ),
        pytest.param(
            (), {"KANTALOUPE_DENY_PRIVILEGED": "maybe"}, None, ("deny-privileged",), id="bool"
        ),
        pytest.param((), {}, "version: v2\n", ("version", "v1"), id="file-version"),
        pytest.param(
            (),
            {},
            "version: v1\nschedular-name: x\n",
            ("schedular-name", "is not a setting"),
            id="file-typo",
        ),
    ],
)
def test_errors_name_the_setting(
    tmp_path: Path,
    tls_files: dict[str, str],
    argv: tuple[str, ...],
    env: dict[str, str],
    file: str | None,
    fragments: tuple[str, ...],
) -> None:
    if file is not None:
        path = tmp_path / "c.yaml"
        path.write_text(file)
        argv = (*argv, "--config", str(path))
    with pytest.raises(InvalidConfigError) as info:
        command.resolve(parse(*argv), {**tls_files, **env})
    for fragment in fragments:
        assert fragment in str(info.value)


def test_tls_files_are_required(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfigError, match=r"tls-cert-file.*HTTPS"):
        command.resolve(parse(), {})
    with pytest.raises(InvalidConfigError, match=r"tls-key-file.*not a readable file"):
        cert = tmp_path / "c"
        cert.write_text("x")
        command.resolve(parse("--tls-cert-file", str(cert), "--tls-key-file", "/nope"), {})


def test_cli_wires_the_subcommand() -> None:
    from kantaloupe import cli

    args = cli.build_parser(only="webhook").parse_args(["webhook", "--port", "1234"])
    assert args.port == "1234"
