"""Helpers of the chart tests: paths, the pinned tools, ``helm template`` and lookups."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from kantaloupe.testing import BinariesNotFoundError, find_tool

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "kantaloupe"
DEPLOY = REPO / "deploy"
NAMESPACE = "kantaloupe-system"
KUBE_VERSION = "v1.36.3"

Manifest = dict[str, Any]
Render = Callable[..., list[Manifest]]


def tool(name: str) -> Path:
    """A pinned tool; fails (not skips) when missing, as the control plane does: CI builds it."""
    try:
        return find_tool(name)
    except BinariesNotFoundError as e:
        pytest.fail(str(e), pytrace=False)


def helm_template(
    helm: Path,
    values: Mapping[str, Any] | None = None,
    *,
    sets: Sequence[str] = (),
    kube_version: str = KUBE_VERSION,
    api_versions: Sequence[str] = (),
    tmp_path: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """``helm template`` of the chart (release ``kantaloupe`` in :data:`NAMESPACE`)."""
    args = [
        str(helm),
        "template",
        "kantaloupe",
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--kube-version",
        kube_version,
    ]
    for api in api_versions:
        args += ["--api-versions", api]
    if values is not None:
        assert tmp_path is not None, "values need a tmp_path to be written to"
        path = tmp_path / f"values-{len(list(tmp_path.iterdir()))}.yaml"
        path.write_text(yaml.safe_dump(dict(values)))
        args += ["--values", str(path)]
    for s in sets:
        args += ["--set", s]
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)


def find(objs: Sequence[Manifest], kind: str, name_suffix: str = "") -> Manifest:
    """The one object of ``kind`` whose name ends with ``name_suffix``."""
    hits = [o for o in objs if o["kind"] == kind and o["metadata"]["name"].endswith(name_suffix)]
    assert len(hits) == 1, f"{len(hits)} {kind} objects named *{name_suffix}: {hits}"
    return hits[0]


def kinds(objs: Sequence[Manifest]) -> set[str]:
    return {o["kind"] for o in objs}


def container(obj: Manifest, name: str) -> Manifest:
    spec = obj["spec"]["template"]["spec"]
    (hit,) = [c for c in spec["containers"] if c["name"] == name]
    return hit
