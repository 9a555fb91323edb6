"""Find the pinned control-plane binaries and helper tools that ``tools/controlplane/build.sh``
built.

The build script caches binaries outside the clone, keyed by the versions in
``tools/controlplane/versions.env``; this module reads the same file and computes the same paths,
so a version bump makes tests look for (and ``make controlplane`` build) the new binaries.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "BUILD_HINT",
    "Binaries",
    "BinariesNotFoundError",
    "cache_root",
    "find_binaries",
    "find_tool",
    "pinned_versions",
    "repo_root",
]

BUILD_HINT = "run `make controlplane` (it runs `bash tools/controlplane/build.sh`)"
_BIN_ENV = "KANTALOUPE_CONTROLPLANE_BIN"


class BinariesNotFoundError(FileNotFoundError):
    """A pinned binary is not built yet; the message names the make target that builds it."""


@dataclass(frozen=True, slots=True)
class Binaries:
    """Paths of the control-plane executables."""

    etcd: Path
    kube_apiserver: Path
    kube_scheduler: Path
    kubectl: Path

    @classmethod
    def from_dir(cls, bin_dir: Path) -> Binaries:
        """The four binaries in ``bin_dir``; raises :class:`BinariesNotFoundError` if one lacks."""
        found = cls(
            etcd=bin_dir / "etcd",
            kube_apiserver=bin_dir / "kube-apiserver",
            kube_scheduler=bin_dir / "kube-scheduler",
            kubectl=bin_dir / "kubectl",
        )
        missing = [p.name for p in found.all() if not os.access(p, os.X_OK)]
        if missing:
            raise BinariesNotFoundError(
                f"control-plane binaries {missing} not found in {bin_dir}: {BUILD_HINT}, "
                f"or point {_BIN_ENV} at a folder holding etcd, kube-apiserver, kube-scheduler "
                "and kubectl"
            )
        return found

    def all(self) -> tuple[Path, ...]:
        return (self.etcd, self.kube_apiserver, self.kube_scheduler, self.kubectl)


def repo_root() -> Path:
    """The checkout this package was installed from (editable install)."""
    return Path(__file__).resolve().parents[3]


def cache_root() -> Path:
    """``$KANTALOUPE_CACHE``, else ``~/.cache/kantaloupe`` (the Makefile exports the same)."""
    env = os.environ.get("KANTALOUPE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "kantaloupe"


def pinned_versions(versions_file: Path | None = None) -> dict[str, str]:
    """The ``NAME=value`` pairs of ``tools/controlplane/versions.env``."""
    path = versions_file or repo_root() / "tools" / "controlplane" / "versions.env"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise BinariesNotFoundError(
            f"{path} not found: the control-plane versions live in the Kantaloupe checkout"
        ) from e
    versions: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            name, _, value = line.partition("=")
            versions[name.strip()] = " ".join(shlex.split(value))
    return versions


def _controlplane_dir(versions: dict[str, str]) -> Path:
    k8s = versions["K8S_VERSION"].removeprefix("v")
    etcd = versions["ETCD_VERSION"].removeprefix("v")
    return cache_root() / "controlplane" / f"{k8s}-etcd{etcd}" / "bin"


def _prometheus_release(module_version: str) -> str:
    """Prometheus 3.x publishes release 3.XX.Y as Go module version v0.3XX.Y (as build.sh)."""
    minor_patch = module_version.removeprefix("v0.")
    major_minor, _, patch = minor_patch.partition(".")
    return f"{major_minor[0]}.{int(major_minor[1:])}.{patch}"


def find_binaries(bin_dir: Path | None = None) -> Binaries:
    """The control-plane binaries: ``bin_dir``, else ``$KANTALOUPE_CONTROLPLANE_BIN``, else the
    cache folder of the pinned versions. Never builds: that is ``make controlplane``'s job."""
    if bin_dir is None:
        env = os.environ.get(_BIN_ENV)
        bin_dir = Path(env) if env else _controlplane_dir(pinned_versions())
    return Binaries.from_dir(bin_dir)


def find_tool(name: str) -> Path:
    """A pinned helper tool by name: ``kube-apiserver``, ``kube-scheduler``, ``kubectl``, ``etcd``,
    ``helm`` or ``promtool``.

    ``$KANTALOUPE_<NAME>_BIN`` (``-`` as ``_``, e.g. ``KANTALOUPE_HELM_BIN``) overrides the path.
    The PATH is not searched: tests must run the pinned version.
    """
    override = os.environ.get(f"KANTALOUPE_{name.upper().replace('-', '_')}_BIN")
    if override:
        path = Path(override)
    else:
        versions = pinned_versions()
        if name in ("kube-apiserver", "kube-scheduler", "kubectl", "etcd"):
            path = _controlplane_dir(versions) / name
            env = os.environ.get(_BIN_ENV)
            if env:
                path = Path(env) / name
        elif name == "helm":
            path = cache_root() / "helm" / versions["HELM_VERSION"].removeprefix("v") / "bin" / name
        elif name == "promtool":
            release = _prometheus_release(versions["PROMETHEUS_VERSION"])
            path = cache_root() / "promtool" / release / "bin" / name
        else:
            raise ValueError(
                f"unknown tool {name!r}: want kube-apiserver, kube-scheduler, kubectl, etcd, "
                "helm or promtool"
            )
    if not os.access(path, os.X_OK):
        raise BinariesNotFoundError(f"{name} not found at {path}: {BUILD_HINT}")
    return path
