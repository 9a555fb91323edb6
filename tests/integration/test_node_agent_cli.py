"""A broken config or inventory file stops ``kantaloupe node-agent`` at start: exit 2 and one
line naming the file, the field and the fix (no traceback)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize(
    ("flag", "text", "field"),
    [
        pytest.param("--config", "version: v1\nsplitcount: 4\n", "splitcount", id="config-typo"),
        pytest.param("--config", "split_count: 0\n", "split_count", id="config-range"),
        pytest.param(
            "--inventory",
            "devices:\n  - {uuid: GPU-a, model: L4}\n",
            "devices[0].memory_mib",
            id="inventory-missing-field",
        ),
    ],
)
def test_broken_file_is_a_clear_error_at_start(
    tmp_path: Path, flag: str, text: str, field: str
) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "kantaloupe.cli",
            "node-agent",
            "--node-name",
            "n1",
            flag,
            str(path),
            "--device-plugin-dir",
            str(tmp_path / "dp"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert str(path) in lines[0] and field in lines[0]
    assert "Traceback" not in done.stderr


def test_missing_node_name_names_the_flag(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "kantaloupe.cli", "node-agent"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert done.returncode == 2
    assert "--node-name" in done.stderr and "NODE_NAME" in done.stderr
