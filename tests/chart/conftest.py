"""Fixtures for the chart, image and monitoring tests: the pinned helm and promtool, a renderer,
the real control plane for server-side dry runs."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from chartkit import Manifest, Render, helm_template, tool

from kantaloupe.testing import BinariesNotFoundError, ControlPlane, find_binaries


@pytest.fixture(scope="session")
def helm() -> Path:
    return tool("helm")


@pytest.fixture(scope="session")
def promtool() -> Path:
    return tool("promtool")


@pytest.fixture
def render(helm: Path, tmp_path: Path) -> Render:
    """Render the chart with ``values`` and return its objects; the render must succeed."""

    def _render(values: Mapping[str, Any] | None = None, **kw: Any) -> list[Manifest]:
        done = helm_template(helm, values, tmp_path=tmp_path, **kw)
        assert done.returncode == 0, done.stderr
        return [d for d in yaml.safe_load_all(done.stdout) if d]

    return _render


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """etcd + kube-apiserver + kube-scheduler, as tests/integration's fixture of the same name."""
    try:
        binaries = find_binaries()
    except BinariesNotFoundError as e:
        pytest.fail(str(e), pytrace=False)
    with ControlPlane(binaries=binaries) as plane:
        yield plane
        plane.check_running()
