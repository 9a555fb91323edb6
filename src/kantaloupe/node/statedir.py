"""The per-container state directory: where the isolation library's region lives on the host.

Layout on the host (``--state-dir``)::

    <state-dir>/containers/<pod-uid>_<container>/
        container.json    written by Allocate: who the container is and what it was given
        region.cache      written by the isolation library (CUDA_DEVICE_MEMORY_SHARED_CACHE)

Each directory is mounted read-write at :data:`CONTAINER_STATE_DIR` in its container, so the
library inside writes ``/usr/local/kantaloupe/state/region.cache`` and the monitor reads the
same bytes from the host side. Directories of pods that are gone are removed by the monitor.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import msgspec

from kantaloupe.api.allocation import SliceV1

CONTAINER_STATE_DIR = "/usr/local/kantaloupe/state"
"""Where a container sees its own state directory."""
REGION_FILE = "region.cache"
RECORD_FILE = "container.json"
CONTAINERS = "containers"

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=253)]


class ContainerRecordV1(msgspec.Struct, frozen=True, tag_field="v", tag=1):
    """``container.json``: the container a state directory belongs to."""

    namespace: Name
    pod: Name
    pod_uid: Name
    container: Name
    index: Annotated[int, msgspec.Meta(ge=0)]
    """Position in the allocation (init containers first)."""
    devices: tuple[SliceV1, ...]
    """The slices handed out, in the container's device order (``CUDA_DEVICE_MEMORY_LIMIT_<i>``)."""
    priority: int | None = None
    allocated_at: float = 0.0


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(ContainerRecordV1)


@dataclass(frozen=True, slots=True)
class ContainerState:
    """One container's directory as found on disk; ``record`` is None when unreadable."""

    path: Path
    pod_uid: str
    record: ContainerRecordV1 | None

    @property
    def region(self) -> Path:
        return self.path / REGION_FILE


class StateDir:
    """The host side of the layout. Blocking file I/O: call through a thread from the loop."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def container_dir(self, pod_uid: str, container: str) -> Path:
        return self.root / CONTAINERS / f"{pod_uid}_{container}"

    def prepare(self, record: ContainerRecordV1) -> Path:
        """Create the container's directory (world-writable: the app may run as any user)."""
        path = self.container_dir(record.pod_uid, record.container)
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, 0o777)
        fd, tmp = tempfile.mkstemp(dir=path, prefix=f".{RECORD_FILE}.")
        with os.fdopen(fd, "wb") as f:
            f.write(_ENCODER.encode(record))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path / RECORD_FILE)
        return path

    def containers(self) -> list[ContainerState]:
        base = self.root / CONTAINERS
        try:
            entries = sorted(p for p in base.iterdir() if p.is_dir())
        except FileNotFoundError:
            return []
        out: list[ContainerState] = []
        for path in entries:
            pod_uid = path.name.partition("_")[0]
            out.append(ContainerState(path, pod_uid, _read_record(path / RECORD_FILE)))
        return out

    def remove(self, state: ContainerState) -> None:
        shutil.rmtree(state.path, ignore_errors=True)


def _read_record(path: Path) -> ContainerRecordV1 | None:
    with contextlib.suppress(OSError, msgspec.DecodeError, msgspec.ValidationError):
        return _DECODER.decode(path.read_bytes())
    return None
