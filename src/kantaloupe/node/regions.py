"""The monitor's view of the isolation library's shared regions.

:mod:`kantaloupe.node.region` (owned with the C library, checked against ``kl_region.h``) parses
the bytes; this adapter turns a snapshot into :class:`~kantaloupe.node.monitor.RegionUsage`:
memory used per device is the device's cross-process charge (``reserved_bytes``), the last-kernel
age is measured against this host's monotonic clock (the library writes ``CLOCK_MONOTONIC``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from kantaloupe.node import region
from kantaloupe.node.monitor import DeviceRegionUsage, RegionReader, RegionUsage

log = logging.getLogger(__name__)


def usage_of(snapshot: region.Region, now_monotonic_ns: int) -> RegionUsage:
    return RegionUsage(
        devices=tuple(
            DeviceRegionUsage(
                index=d.index,
                uuid=d.uuid,
                used_bytes=d.reserved_bytes,
                limit_bytes=d.limit_bytes if d.limit_state == region.LimitState.SET else None,
            )
            for d in snapshot.devices
        ),
        last_kernel_age_s=snapshot.last_kernel_age_s(now_monotonic_ns),
    )


class LibraryRegions:
    """:class:`~kantaloupe.node.monitor.RegionReader` over :func:`region.read_region`."""

    def __init__(self, clock_ns: Callable[[], int] = time.monotonic_ns) -> None:
        self._clock_ns = clock_ns

    def read(self, path: Path) -> RegionUsage | None:
        try:
            snapshot = region.read_region(path)
        except (region.RegionFormatError, OSError) as e:
            log.warning("shared region unreadable: %s", e, extra={"path": str(path)})
            return None
        return None if snapshot is None else usage_of(snapshot, self._clock_ns())


def reader() -> RegionReader:
    return LibraryRegions()
