"""A real etcd + kube-apiserver + kube-scheduler on 127.0.0.1, for tests and benchmarks.

There is no kubelet and no controller-manager: :mod:`kantaloupe.testing.cluster` makes nodes
Ready and creates default ServiceAccounts the way those would. Usage::

    with ControlPlane() as cp:          # or cp = ControlPlane().start(); ...; cp.stop()
        cp.admin_kubeconfig             # Path of a system:masters kubeconfig
        cp.restart_apiserver()
        cp.restart_scheduler(replace(cp.scheduler_config, http_timeout="5s"))

Processes are stopped by PID on :meth:`ControlPlane.stop`, on any exception or
KeyboardInterrupt inside :meth:`ControlPlane.start`, at interpreter exit (``atexit``) and on
SIGTERM when the process had no SIGTERM handler of its own.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import http.client
import logging
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Final, Literal

import yaml

from kantaloupe.testing import binaries as binaries_mod
from kantaloupe.testing import pki
from kantaloupe.testing.schedconfig import SchedulerConfig, render_scheduler_config

__all__ = ["Component", "ControlPlane", "ControlPlaneError"]

log = logging.getLogger(__name__)

Component = Literal["etcd", "kube-apiserver", "kube-scheduler"]
_ORDER: Final[tuple[Component, ...]] = ("etcd", "kube-apiserver", "kube-scheduler")
_POLL_S: Final = 0.02
_TAIL_LINES: Final = 40
_STOP_TIMEOUT_S: Final = 10.0
_SA_ISSUER: Final = "https://kubernetes.default.svc.cluster.local"


class ControlPlaneError(RuntimeError):
    """A component failed to start, died or missed its deadline; carries the tail of its log."""

    def __init__(self, component: str, reason: str, log_path: Path | None = None) -> None:
        self.component = component
        self.reason = reason
        self.log_path = log_path
        tail = _tail(log_path) if log_path else ""
        where = f"\n--- last {_TAIL_LINES} lines of {log_path} ---\n{tail}" if tail else ""
        super().__init__(f"{component}: {reason}{where}")


def _tail(path: Path, lines: int = _TAIL_LINES) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


def _free_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports on 127.0.0.1 (held open together, so no duplicates)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


@dataclass(frozen=True, slots=True)
class Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int
    scheduler: int
    extender: int
    """Reserved for the test's extender: the default scheduler config points here."""


@dataclass(slots=True)
class _Process:
    name: Component
    args: list[str]
    log_path: Path
    probe: Callable[[], bool]
    popen: subprocess.Popen[bytes] | None = None
    started_s: float = 0.0
    ready_s: float = 0.0


_live: set[ControlPlane] = set()
_live_lock = threading.Lock()
_hooks_installed = False


def _stop_all_live() -> None:
    with _live_lock:
        planes = list(_live)
    for plane in planes:
        plane.stop()


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    _stop_all_live()
    raise SystemExit(128 + signum)


def _install_backstops() -> None:
    """atexit always; SIGTERM only from the main thread and only if nobody handles it yet."""
    global _hooks_installed
    if _hooks_installed:
        return
    _hooks_installed = True
    atexit.register(_stop_all_live)
    in_main = threading.current_thread() is threading.main_thread()
    if in_main and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_sigterm)


class ControlPlane:
    """etcd, kube-apiserver and kube-scheduler as child processes of this one.

    ``scheduler_config`` defaults to the chart's template with ``default-scheduler`` added and
    the extender at ``http://127.0.0.1:<ports.extender>``; its ``kubeconfig`` is always replaced
    with the scheduler's own. ``workdir`` (default: a fresh temporary folder) holds the PKI,
    kubeconfigs, etcd data and ``logs/<component>.log``; a temporary one is removed on
    :meth:`stop` unless ``keep_workdir`` or a start failed.
    """

    def __init__(
        self,
        *,
        binaries: binaries_mod.Binaries | None = None,
        workdir: Path | None = None,
        scheduler_config: SchedulerConfig | None = None,
        start_timeout_s: float = 60.0,
        keep_workdir: bool = False,
        extra_apiserver_args: Sequence[str] = (),
        extra_scheduler_args: Sequence[str] = (),
    ) -> None:
        self.binaries = binaries or binaries_mod.find_binaries()
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="kantaloupe-cp-"))
        self.keep_workdir = keep_workdir
        self.start_timeout_s = start_timeout_s
        self._extra_apiserver_args = list(extra_apiserver_args)
        self._extra_scheduler_args = list(extra_scheduler_args)
        p = _free_ports(5)
        self.ports = Ports(p[0], p[1], p[2], p[3], p[4])
        self.server_url = f"https://127.0.0.1:{self.ports.apiserver}"
        self.extender_url = f"http://127.0.0.1:{self.ports.extender}"
        self._pki_dir = self.workdir / "pki"
        self._logs_dir = self.workdir / "logs"
        self.admin_kubeconfig = self.workdir / "admin.kubeconfig"
        self.scheduler_kubeconfig = self.workdir / "kube-scheduler.kubeconfig"
        self._scheduler_config_path = self.workdir / "kube-scheduler-config.yaml"
        self.scheduler_config = dataclasses.replace(
            scheduler_config or SchedulerConfig(self.extender_url, default_profile=True),
            kubeconfig=str(self.scheduler_kubeconfig),
        )
        self.admin_token = os.urandom(16).hex()
        self._ca: pki.CertificateAuthority | None = None
        self._admin: pki.KeyPair | None = None
        self._procs: dict[Component, _Process] = {}
        self._failed = False
        self._stopped = False
        self.timings_s: dict[str, float] = {}
        """Seconds from start to ready per component, and ``total`` for :meth:`start`."""

    # ---- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> ControlPlane:
        """Start the three components in order and wait until each is ready; stop all on failure."""
        _install_backstops()
        with _live_lock:
            _live.add(self)
        t0 = time.monotonic()
        try:
            self._make_pki()
            self._write_kubeconfigs()
            self._write_scheduler_config(self.scheduler_config)
            self._procs = {
                "etcd": self._etcd_process(),
                "kube-apiserver": self._apiserver_process(),
                "kube-scheduler": self._scheduler_process(),
            }
            # The apiserver retries etcd by itself: starting both at once saves etcd's start-up.
            self._launch(self._procs["etcd"])
            self._launch(self._procs["kube-apiserver"])
            for name in _ORDER:
                if self._procs[name].popen is None:
                    self._launch(self._procs[name])
                self._wait_ready(self._procs[name], self.start_timeout_s)
        except BaseException:
            self._failed = True
            self.stop()
            raise
        self.timings_s["total"] = time.monotonic() - t0
        log.info(
            "control plane ready server=%s total_s=%.2f workdir=%s",
            self.server_url,
            self.timings_s["total"],
            self.workdir,
        )
        return self

    def stop(self) -> None:
        """Stop every component by PID (scheduler first), then remove a temporary workdir."""
        if self._stopped:
            return
        for name in reversed(_ORDER):
            proc = self._procs.get(name)
            if proc is not None:
                self._terminate(proc)
        with _live_lock:
            _live.discard(self)
        self._stopped = True
        if self._own_workdir and not self.keep_workdir and not self._failed:
            shutil.rmtree(self.workdir, ignore_errors=True)
        elif self._failed:
            log.warning("control plane failed; kept its logs in %s", self._logs_dir)

    # ---- fault helpers -----------------------------------------------------------------------

    def restart_apiserver(self, timeout_s: float | None = None) -> None:
        """Stop kube-apiserver gracefully and start it again on the same port; wait until ready."""
        proc = self._procs["kube-apiserver"]
        self._terminate(proc)
        self._launch(proc)
        self._wait_ready(proc, timeout_s or self.start_timeout_s)

    def kill_scheduler(self) -> None:
        """SIGKILL kube-scheduler (a crash, no graceful shutdown) and reap it."""
        proc = self._procs["kube-scheduler"]
        if proc.popen is not None and proc.popen.poll() is None:
            proc.popen.kill()
            proc.popen.wait()
            log.info("component killed component=kube-scheduler pid=%d", proc.popen.pid)
        proc.popen = None

    def start_scheduler(
        self, config: SchedulerConfig | None = None, timeout_s: float | None = None
    ) -> None:
        """Start kube-scheduler (after :meth:`kill_scheduler`), optionally with a new config."""
        proc = self._procs["kube-scheduler"]
        if proc.popen is not None and proc.popen.poll() is None:
            raise ControlPlaneError("kube-scheduler", "already running; kill_scheduler() first")
        if config is not None:
            self.scheduler_config = dataclasses.replace(
                config, kubeconfig=str(self.scheduler_kubeconfig)
            )
            self._write_scheduler_config(self.scheduler_config)
        self._launch(proc)
        self._wait_ready(proc, timeout_s or self.start_timeout_s)

    def restart_scheduler(
        self, config: SchedulerConfig | None = None, timeout_s: float | None = None
    ) -> None:
        """Kill kube-scheduler and start it again, optionally with a changed config."""
        self.kill_scheduler()
        self.start_scheduler(config, timeout_s)

    # ---- inspection --------------------------------------------------------------------------

    @property
    def ca_file(self) -> Path:
        assert self._ca is not None, "start() first"
        return self._ca.cert_file

    @property
    def ca(self) -> pki.CertificateAuthority:
        """The plane's CA: issue serving certs for loopback webhooks/extenders with it."""
        assert self._ca is not None, "start() first"
        return self._ca

    def pids(self) -> dict[str, int]:
        return {
            n: p.popen.pid
            for n, p in self._procs.items()
            if p.popen is not None and p.popen.poll() is None
        }

    def rss_bytes(self) -> dict[str, int]:
        """Resident memory of each running component, from ``/proc/<pid>/status``."""
        out: dict[str, int] = {}
        for name, pid in self.pids().items():
            with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        out[name] = int(line.split()[1]) * 1024
        return out

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system) each running component has used, from ``/proc/<pid>/stat``."""
        tick = os.sysconf("SC_CLK_TCK")
        out: dict[str, float] = {}
        for name, pid in self.pids().items():
            with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
                out[name] = (int(fields[11]) + int(fields[12])) / tick
        return out

    def log_path(self, component: Component) -> Path:
        return self._logs_dir / f"{component}.log"

    def log_tail(self, component: Component, lines: int = _TAIL_LINES) -> str:
        return _tail(self.log_path(component), lines)

    def check_running(self) -> None:
        """Raise :class:`ControlPlaneError` naming any component that has exited."""
        for name in _ORDER:
            proc = self._procs.get(name)
            if proc is None or proc.popen is None:
                continue
            rc = proc.popen.poll()
            if rc is not None:
                raise ControlPlaneError(name, f"exited with status {rc}", proc.log_path)

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the pinned kubectl against this plane as admin."""
        return subprocess.run(
            [str(self.binaries.kubectl), f"--kubeconfig={self.admin_kubeconfig}", *args],
            capture_output=True,
            text=True,
            check=check,
            timeout=60,
        )

    def write_kubeconfig(self, name: str, *, user: str, groups: Sequence[str] = ()) -> Path:
        """A kubeconfig authenticating as ``user`` in ``groups`` by client certificate."""
        pair = self.ca.issue_client(name, user=user, groups=groups)
        path = self.workdir / f"{name}.kubeconfig"
        self._write_kubeconfig(path, name, pair)
        return path

    # ---- internals ---------------------------------------------------------------------------

    def _make_pki(self) -> None:
        d = self._pki_dir
        self._ca = ca = pki.CertificateAuthority(d)
        ca.issue_server(
            "kube-apiserver",
            dns_names=(
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ),
            ips=("127.0.0.1", "10.0.0.1"),
        )
        self._admin = ca.issue_client("admin", user="kantaloupe-admin", groups=("system:masters",))
        ca.issue_client("kube-scheduler", user="system:kube-scheduler")
        ca.issue_client("front-proxy-client", user="front-proxy-client")
        pki.write_signing_key(d, "service-account")
        (d / "tokens.csv").write_text(
            f'{self.admin_token},kantaloupe-admin,kantaloupe-admin,"system:masters"\n'
        )

    def _write_kubeconfigs(self) -> None:
        assert self._admin is not None
        self._write_kubeconfig(self.admin_kubeconfig, "admin", self._admin)
        self._write_kubeconfig(
            self.scheduler_kubeconfig,
            "kube-scheduler",
            pki.KeyPair(
                b"", b"", self._pki_dir / "kube-scheduler.crt", self._pki_dir / "kube-scheduler.key"
            ),
        )

    def _write_kubeconfig(self, path: Path, user: str, pair: pki.KeyPair) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "kantaloupe-test",
                    "cluster": {
                        "server": self.server_url,
                        "certificate-authority": str(self.ca_file),
                    },
                }
            ],
            "users": [
                {
                    "name": user,
                    "user": {
                        "client-certificate": str(pair.cert_file),
                        "client-key": str(pair.key_file),
                    },
                }
            ],
            "contexts": [{"name": user, "context": {"cluster": "kantaloupe-test", "user": user}}],
            "current-context": user,
        }
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)

    def _write_scheduler_config(self, config: SchedulerConfig) -> None:
        self._scheduler_config_path.write_text(render_scheduler_config(config))

    def _etcd_process(self) -> _Process:
        client = f"http://127.0.0.1:{self.ports.etcd_client}"
        peer = f"http://127.0.0.1:{self.ports.etcd_peer}"
        args = [
            str(self.binaries.etcd),
            "--name=kantaloupe",
            f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=kantaloupe={peer}",
            "--initial-cluster-state=new",
            # Test data is thrown away: skip fsync, which dominates write latency on CI disks.
            "--unsafe-no-fsync",
            "--log-level=warn",
        ]
        return _Process(
            "etcd", args, self.log_path("etcd"), lambda: self._probe_etcd(self.ports.etcd_client)
        )

    def _apiserver_process(self) -> _Process:
        d = self._pki_dir
        args = [
            str(self.binaries.kube_apiserver),
            "--advertise-address=127.0.0.1",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.ports.apiserver}",
            f"--etcd-servers=http://127.0.0.1:{self.ports.etcd_client}",
            f"--cert-dir={self.workdir / 'apiserver-certs'}",
            f"--tls-cert-file={d / 'kube-apiserver.crt'}",
            f"--tls-private-key-file={d / 'kube-apiserver.key'}",
            f"--client-ca-file={self.ca_file}",
            f"--token-auth-file={d / 'tokens.csv'}",
            f"--service-account-key-file={d / 'service-account.pub'}",
            f"--service-account-signing-key-file={d / 'service-account.key'}",
            f"--service-account-issuer={_SA_ISSUER}",
            f"--api-audiences={_SA_ISSUER}",
            "--service-cluster-ip-range=10.0.0.0/24",
            # Advertising 127.0.0.1 makes the endpoint reconciler fail every 10 s; nothing needs it.
            "--endpoint-reconciler-type=none",
            "--authorization-mode=RBAC",
            "--enable-admission-plugins=NodeRestriction",
            "--allow-privileged=true",
            # Without these the scheduler's delegated authentication logs a missing CA in a loop.
            f"--requestheader-client-ca-file={self.ca_file}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={d / 'front-proxy-client.crt'}",
            f"--proxy-client-key-file={d / 'front-proxy-client.key'}",
            "--profiling=false",
            # Graceful stop within ~2 s: without it, http.Server.Shutdown waits up to the 60 s
            # request timeout for the scheduler's open watches.
            "--shutdown-send-retry-after=true",
            *self._extra_apiserver_args,
        ]
        return _Process(
            "kube-apiserver", args, self.log_path("kube-apiserver"), self._probe_apiserver
        )

    def _scheduler_process(self) -> _Process:
        kc = str(self.scheduler_kubeconfig)
        args = [
            str(self.binaries.kube_scheduler),
            f"--config={self._scheduler_config_path}",
            f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.ports.scheduler}",
            f"--cert-dir={self.workdir / 'scheduler-certs'}",
            "--profiling=false",
            *self._extra_scheduler_args,
        ]
        return _Process(
            "kube-scheduler",
            args,
            self.log_path("kube-scheduler"),
            lambda: self._probe_https(self.ports.scheduler, "/readyz", verify=False),
        )

    def _launch(self, proc: _Process) -> None:
        proc.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "ETCDCTL_API")}
        with proc.log_path.open("ab") as logf:
            logf.write(f"=== {time.strftime('%H:%M:%S')} starting {proc.name} ===\n".encode())
            logf.flush()
            proc.popen = subprocess.Popen(
                proc.args,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.workdir,
                # Own session: a Ctrl-C in the terminal reaches us, and we stop them in order.
                start_new_session=True,
            )
        proc.started_s = time.monotonic()
        log.info("component started component=%s pid=%d", proc.name, proc.popen.pid)

    def _wait_ready(self, proc: _Process, timeout_s: float) -> None:
        """Poll the component's readiness until ``timeout_s``; fail fast if it exits."""
        assert proc.popen is not None
        deadline = proc.started_s + timeout_s
        while True:
            try:
                rc = proc.popen.wait(timeout=_POLL_S)
            except subprocess.TimeoutExpired:
                pass
            else:
                raise ControlPlaneError(
                    proc.name, f"exited with status {rc} before it was ready", proc.log_path
                )
            if proc.probe():
                break
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    proc.name, f"not ready within {timeout_s:.0f} s", proc.log_path
                )
        proc.ready_s = time.monotonic() - proc.started_s
        self.timings_s[proc.name] = proc.ready_s
        log.info(
            "component ready component=%s pid=%d ready_s=%.2f",
            proc.name,
            proc.popen.pid,
            proc.ready_s,
        )

    def _terminate(self, proc: _Process) -> None:
        popen = proc.popen
        if popen is None:
            return
        if popen.poll() is None:
            popen.terminate()
            try:
                popen.wait(timeout=_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                log.warning("component ignored SIGTERM, killing component=%s", proc.name)
                popen.kill()
                popen.wait()
        log.info("component stopped component=%s pid=%d", proc.name, popen.pid)
        proc.popen = None

    # ---- probes (each one short request; errors mean "not yet") -------------------------------

    @staticmethod
    def _probe_etcd(port: int) -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1.0)
        try:
            conn.request("GET", "/health")
            resp = conn.getresponse()
            return resp.status == 200 and b'"health":"true"' in resp.read()
        except OSError:
            return False
        finally:
            conn.close()

    def _probe_apiserver(self) -> bool:
        return self._probe_https(self.ports.apiserver, "/readyz", verify=True)

    def _ssl_context(self, verify: bool) -> ssl.SSLContext:
        if not verify:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return ctx
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        assert self._admin is not None
        ctx.load_cert_chain(self._admin.cert_file, self._admin.key_file)
        return ctx

    def _probe_https(self, port: int, path: str, *, verify: bool) -> bool:
        conn = http.client.HTTPSConnection(
            "127.0.0.1", port, timeout=1.0, context=self._ssl_context(verify)
        )
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            return resp.status == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()
