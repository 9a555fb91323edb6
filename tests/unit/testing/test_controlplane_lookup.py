"""Finding the pinned binaries, and the PKI the control plane runs on."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from kantaloupe.testing import binaries, pki


def test_missing_binaries_name_the_make_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KANTALOUPE_CONTROLPLANE_BIN", str(tmp_path))
    with pytest.raises(binaries.BinariesNotFoundError, match="make controlplane"):
        binaries.find_binaries()


def test_cache_path_is_keyed_by_the_pinned_versions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KANTALOUPE_CONTROLPLANE_BIN", raising=False)
    monkeypatch.setenv("KANTALOUPE_CACHE", str(tmp_path))
    v = binaries.pinned_versions()
    bin_dir = (
        tmp_path
        / "controlplane"
        / f"{v['K8S_VERSION'].removeprefix('v')}-etcd{v['ETCD_VERSION'].removeprefix('v')}"
        / "bin"
    )
    bin_dir.mkdir(parents=True)
    for name in ("etcd", "kube-apiserver", "kube-scheduler", "kubectl"):
        (bin_dir / name).write_text("#!/bin/sh\n")
        (bin_dir / name).chmod(0o755)
    found = binaries.find_binaries()
    assert found.kube_apiserver == bin_dir / "kube-apiserver"
    assert binaries.find_tool("kubectl") == bin_dir / "kubectl"


def test_promtool_cache_path_uses_the_prometheus_release(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KANTALOUPE_CACHE", str(tmp_path))
    monkeypatch.delenv("KANTALOUPE_PROMTOOL_BIN", raising=False)
    with pytest.raises(binaries.BinariesNotFoundError, match=r"promtool/3\.\d+\.\d+/bin"):
        binaries.find_tool("promtool")


def test_unknown_tool_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown tool"):
        binaries.find_tool("kubelet")


def test_pki_issues_a_chain_that_verifies(tmp_path: Path) -> None:
    ca = pki.CertificateAuthority(tmp_path)
    server = ca.issue_server("srv")
    client = ca.issue_client("cli", user="alice", groups=("system:masters",))
    # A server context that loads the pair and a client context that trusts the CA: both parse.
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(server.cert_file, server.key_file)
    client_ctx = ssl.create_default_context(cafile=str(ca.cert_file))
    client_ctx.load_cert_chain(client.cert_file, client.key_file)
    assert (server.key_file.stat().st_mode & 0o777) == 0o600
