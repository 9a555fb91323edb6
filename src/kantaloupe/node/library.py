"""Install the isolation library on the host, where every GPU container can mount it.

The library is copied into the host directory only when its SHA-256 differs (a restart of the
agent rewrites nothing), through a temporary file and a rename, so a container starting at that
moment sees the old file or the new one, never half of one. Beside it goes ``ld.so.preload``,
naming the library's path; containers mount the library at the same path as on the host and the
preload file at ``/etc/ld.so.preload`` (HAMi's scheme: it catches every dynamically linked process,
not only shells that honour ``LD_PRELOAD``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from kantaloupe.api.errors import InvalidConfigError

log = logging.getLogger(__name__)

LIBRARY_NAME = "libkantaloupe-core.so"
PRELOAD_NAME = "ld.so.preload"
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class InstalledLibrary:
    """Where the library and its preload file are on the host (containers use the same paths)."""

    library: Path
    preload: Path
    sha256: str
    copied: bool
    """False when the host already had this exact library."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def install_library(source: Path, host_dir: Path) -> InstalledLibrary:
    """Copy ``source`` into ``host_dir`` unless an identical copy is there; write the preload file.

    Blocking file I/O: call it through a thread from the loop.
    """
    if not source.is_file():
        raise InvalidConfigError(
            "--library-source",
            str(source),
            "is not a file",
            "build it with `make -C core` or point --library-source at libkantaloupe-core.so",
        )
    host_dir.mkdir(parents=True, exist_ok=True)
    target = host_dir / LIBRARY_NAME
    wanted = sha256_of(source)
    copied = not (target.is_file() and sha256_of(target) == wanted)
    if copied:
        _write_atomically(target, source.read_bytes(), mode=0o755)
        log.info("isolation library installed", extra={"path": str(target), "sha256": wanted})
    preload = host_dir / PRELOAD_NAME
    content = f"{target}\n".encode()
    if not (preload.is_file() and preload.read_bytes() == content):
        _write_atomically(preload, content, mode=0o644)
    return InstalledLibrary(library=target, preload=preload, sha256=wanted, copied=copied)


def find_installed(host_dir: Path) -> InstalledLibrary | None:
    """The library already in ``host_dir`` (put there by someone else), or None."""
    target, preload = host_dir / LIBRARY_NAME, host_dir / PRELOAD_NAME
    if not (target.is_file() and preload.is_file()):
        return None
    return InstalledLibrary(target, preload, sha256_of(target), copied=False)


def _write_atomically(target: Path, content: bytes, *, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
