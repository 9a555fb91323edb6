"""``kantaloupe webhook`` as a process: serves HTTPS, then exits 0 on SIGTERM, promptly."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from webhook_support import SAMPLE

from kantaloupe.testing import pki


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str, context: ssl.SSLContext | None = None, data: bytes | None = None) -> int:
    try:
        with urllib.request.urlopen(url, data=data, timeout=2, context=context) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except OSError:
        return 0


def test_serves_then_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    ca = pki.CertificateAuthority(tmp_path)
    pair = ca.issue_server("webhook", dns_names=("localhost",), ips=("127.0.0.1",))
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: x\n"
        "clusters: [{name: x, cluster: {server: 'http://127.0.0.1:9'}}]\n"
        "users: [{name: x, user: {}}]\n"
        "contexts: [{name: x, context: {cluster: x, user: x}}]\n"
    )
    port, metrics_port = free_port(), free_port()
    env = {
        **os.environ,
        "KANTALOUPE_TLS_CERT_FILE": str(pair.cert_file),
        "KANTALOUPE_TLS_KEY_FILE": str(pair.key_file),
    }
    argv = [
        sys.executable, "-m", "kantaloupe.cli", "webhook", "--bind-address", "127.0.0.1",
        "--port", str(port), "--metrics-port", str(metrics_port), "--kubeconfig", str(kubeconfig),
    ]  # fmt: skip
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        context = ssl.create_default_context(cafile=str(ca.cert_file))
        deadline = time.monotonic() + 20
        while get(f"http://127.0.0.1:{metrics_port}/healthz") != 200:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "webhook did not come up"
            time.sleep(0.05)
        url = f"https://127.0.0.1:{port}/mutate"
        assert get(url, context, SAMPLE.read_bytes()) == 200
        assert get(url, context, b"nonsense") == 400
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert time.monotonic() - started < 10
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()
