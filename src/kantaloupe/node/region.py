"""Reader of the isolation core's shared region (the node monitor's side).

Every process of a GPU container maps one region file (``CUDA_DEVICE_MEMORY_SHARED_CACHE``) in
which the isolation core (``core/``) keeps the container's per-device limits, the cross-process
charge of each device and one slot per process. ``core/include/kl_region.h`` is the layout's one
definition; the constants below mirror it and ``tests/unit/node/test_region.py`` checks them
against the header and against a region written by the C code.

The reader copies the file once and decodes that copy, so one :class:`Region` is one snapshot.
Counters are 8-byte aligned and written atomically by the library, so each field is a value some
writer stored. The only field the monitor writes is ``sm_switch`` (:func:`write_sm_switch`).
"""

from __future__ import annotations

import enum
import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from kantaloupe.api.errors import KantaloupeError

MAGIC = 0x4B4C5247
ABI_VERSION = 1
MAX_DEVICES = 16
MAX_PROCS = 1024
UUID_LEN = 48
LOCK_BYTES = 64
HEADER_SIZE = 128
DEVICE_SIZE = 136
SLOT_SIZE = 152
DEVICES_OFFSET = HEADER_SIZE
PROCS_OFFSET = DEVICES_OFFSET + DEVICE_SIZE * MAX_DEVICES
REGION_SIZE = PROCS_OFFSET + SLOT_SIZE * MAX_PROCS
SM_SWITCH_OFFSET = 24

# magic, abi_version, size, device_count, max_procs, sm_switch, proc_count, generation,
# lock (opaque), last_kernel_ns, reserved
_HEADER = struct.Struct(f"<IIQIIIIQ{LOCK_BYTES}xQ16x")
# uuid, limit_bytes, total_bytes, reserved_bytes, limit_state, sm_limit, sm_state, sm_util,
# sm_tokens, sm_last_ns, sm_scale, sm_util_ns, sm_waited_ns, sm_waited_mark
_DEVICE = struct.Struct(f"<{UUID_LEN}sQQQIIIIqQQQQQ")
# pid, host_pid, start_time, state, pad, used[MAX_DEVICES]
_SLOT = struct.Struct(f"<iiQI4x{MAX_DEVICES}Q")

assert _HEADER.size == HEADER_SIZE
assert _DEVICE.size == DEVICE_SIZE
assert _SLOT.size == SLOT_SIZE

SLOT_ACTIVE = 1


class LimitState(enum.IntEnum):
    """How a device limit applies (``KL_LIMIT_*``)."""

    NONE = 0
    """No limit: the library passes calls through."""
    SET = 1
    """The limit applies."""
    INVALID = 2
    """Configured but unparseable: the library refuses allocations (launches)."""


class RegionFormatError(KantaloupeError):
    """A region file that is not a Kantaloupe region of this ABI version."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(
            f"shared region {path}: {problem}; the container's processes recreate it when they "
            "restart, so restart the pod if this persists"
        )


@dataclass(frozen=True, slots=True)
class DeviceState:
    """One device of a container's region (index = the container's CUDA ordinal)."""

    index: int
    uuid: str
    limit_state: LimitState
    limit_bytes: int
    """Memory limit in bytes; meaningful when ``limit_state`` is SET."""
    total_bytes: int
    """Physical size last seen by a CUDA process in the container (0: not yet)."""
    reserved_bytes: int
    """Bytes charged on the device by all the container's processes."""
    sm_state: LimitState
    sm_limit: int
    """Compute share in percent; meaningful when ``sm_state`` is SET."""
    sm_util: int
    """Last utilisation sample the limiter used, percent."""
    sm_waited_ns: int
    """Total time launches waited for the compute share."""


@dataclass(frozen=True, slots=True)
class ProcessSlot:
    """One live (or not yet reclaimed) process of the container."""

    pid: int
    """Pid in the container's namespace."""
    host_pid: int
    """Host pid when known, else 0."""
    start_time: int
    """Start time in clock ticks since boot (``/proc/<pid>/stat`` field 22)."""
    used_bytes: tuple[int, ...]
    """Bytes charged per device (``MAX_DEVICES`` entries)."""


@dataclass(frozen=True, slots=True)
class Region:
    """One snapshot of a region."""

    abi_version: int
    device_count: int
    sm_switch: bool
    proc_count: int
    generation: int
    last_kernel_ns: int
    """CLOCK_MONOTONIC nanoseconds of a recent kernel launch (0: none); compare with
    ``time.monotonic_ns()`` on the same host."""
    devices: tuple[DeviceState, ...]
    """The first ``device_count`` devices."""
    processes: tuple[ProcessSlot, ...]

    def last_kernel_age_s(self, now_monotonic_ns: int) -> float | None:
        """Seconds since the container last launched a kernel; None if never."""
        if not self.last_kernel_ns:
            return None
        return max(0.0, (now_monotonic_ns - self.last_kernel_ns) / 1e9)


def _uuid(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("ascii", errors="replace")


def parse_region(data: bytes, path: str = "<bytes>") -> Region:
    """Decodes the bytes of a region file; raises :class:`RegionFormatError`."""
    if len(data) < HEADER_SIZE:
        raise RegionFormatError(path, f"{len(data)} bytes is shorter than the header")
    (magic, abi, size, device_count, max_procs, sm_switch, proc_count, generation, last_kernel) = (
        _HEADER.unpack_from(data, 0)
    )
    if magic != MAGIC:
        raise RegionFormatError(path, f"magic {magic:#x} is not {MAGIC:#x}")
    if abi != ABI_VERSION:
        raise RegionFormatError(path, f"ABI version {abi} is not {ABI_VERSION}")
    if size != REGION_SIZE or len(data) < REGION_SIZE:
        raise RegionFormatError(path, f"size {size} (file {len(data)}) is not {REGION_SIZE}")
    if max_procs != MAX_PROCS or device_count > MAX_DEVICES:
        raise RegionFormatError(path, f"{max_procs} slots / {device_count} devices out of range")
    devices = []
    for i in range(device_count):
        f = _DEVICE.unpack_from(data, DEVICES_OFFSET + i * DEVICE_SIZE)
        devices.append(
            DeviceState(
                index=i,
                uuid=_uuid(f[0]),
                limit_bytes=f[1],
                total_bytes=f[2],
                reserved_bytes=f[3],
                limit_state=LimitState(f[4]) if f[4] in (0, 1, 2) else LimitState.INVALID,
                sm_limit=f[5],
                sm_state=LimitState(f[6]) if f[6] in (0, 1, 2) else LimitState.INVALID,
                sm_util=f[7],
                sm_waited_ns=f[12],
            )
        )
    procs = []
    for i in range(MAX_PROCS):
        s = _SLOT.unpack_from(data, PROCS_OFFSET + i * SLOT_SIZE)
        if s[3] != SLOT_ACTIVE:
            continue
        procs.append(ProcessSlot(pid=s[0], host_pid=s[1], start_time=s[2], used_bytes=s[4:]))
    return Region(
        abi_version=abi,
        device_count=device_count,
        sm_switch=bool(sm_switch),
        proc_count=proc_count,
        generation=generation,
        last_kernel_ns=last_kernel,
        devices=tuple(devices),
        processes=tuple(procs),
    )


def read_region(path: Path) -> Region | None:
    """The region at ``path``; None when the file is absent or still empty (no CUDA process
    yet). Raises :class:`RegionFormatError` for a file of another format or ABI version."""
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                return None
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
                data = bytes(m[:REGION_SIZE])
    except FileNotFoundError:
        return None
    if len(data) >= 4 and data[:4] == b"\0\0\0\0":
        return None  # being created: the magic is written last
    return parse_region(data, str(path))


def write_sm_switch(path: Path, enabled: bool) -> None:
    """Turns the container's compute limits on or off (``GPU_CORE_UTILIZATION_POLICY=DEFAULT``
    follows it; FORCE and DISABLE ignore it)."""
    with path.open("r+b") as f, mmap.mmap(f.fileno(), REGION_SIZE) as m:
        parse_region(bytes(m), str(path))
        m[SM_SWITCH_OFFSET : SM_SWITCH_OFFSET + 4] = struct.pack("<I", 1 if enabled else 0)
