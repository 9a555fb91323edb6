"""Installing the isolation library on the host: by checksum, atomically, with its preload file."""

from __future__ import annotations

from pathlib import Path

import pytest

from kantaloupe.api.errors import InvalidConfigError
from kantaloupe.node.library import find_installed, install_library


def test_install_copies_once_and_writes_the_preload_file(tmp_path: Path) -> None:
    source = tmp_path / "build" / "libkantaloupe-core.so"
    source.parent.mkdir()
    source.write_bytes(b"\x7fELF v1")
    host = tmp_path / "host"

    first = install_library(source, host)
    assert first.copied
    assert first.library.read_bytes() == b"\x7fELF v1"
    assert first.preload.read_text() == f"{first.library}\n"
    inode = first.library.stat().st_ino

    again = install_library(source, host)
    assert not again.copied
    assert again.library.stat().st_ino == inode  # untouched

    source.write_bytes(b"\x7fELF v2")
    updated = install_library(source, host)
    assert updated.copied and updated.library.read_bytes() == b"\x7fELF v2"
    assert updated.sha256 != first.sha256
    assert sorted(p.name for p in host.iterdir()) == ["ld.so.preload", "libkantaloupe-core.so"]
    assert find_installed(host) == updated.__class__(
        updated.library, updated.preload, updated.sha256, copied=False
    )


def test_missing_source_names_the_flag(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfigError, match="--library-source"):
        install_library(tmp_path / "absent.so", tmp_path / "host")
    assert find_installed(tmp_path / "host") is None
