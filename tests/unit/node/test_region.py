"""The Python reader of the shared region against kl_region.h and a region the C code wrote."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kantaloupe.node import region as rg

CORE = Path(__file__).resolve().parents[3] / "core"
HEADER = CORE / "include" / "kl_region.h"
TOOL = CORE / "build" / "tests" / "region_tool"
GIB = 1 << 30
MIB = 1 << 20


@pytest.fixture(scope="module")
def tool() -> Path:
    if not TOOL.exists():
        if shutil.which("make") is None or shutil.which("cc") is None:
            pytest.skip("no C toolchain to build core/build/tests/region_tool")
        subprocess.run(
            ["make", "-s", "-C", str(CORE), "build/tests/region_tool"],
            check=True,
            capture_output=True,
        )
    return TOOL


def _header_defines() -> dict[str, str]:
    text = HEADER.read_text()
    return dict(re.findall(r"^#define (KL_[A-Z_]+) +(\S+)", text, flags=re.MULTILINE))


def test_constants_match_the_header() -> None:
    d = _header_defines()
    assert int(d["KL_REGION_MAGIC"].rstrip("u"), 16) == rg.MAGIC
    assert int(d["KL_REGION_ABI_VERSION"].rstrip("u")) == rg.ABI_VERSION
    assert int(d["KL_MAX_DEVICES"]) == rg.MAX_DEVICES
    assert int(d["KL_MAX_PROCS"]) == rg.MAX_PROCS
    assert int(d["KL_UUID_LEN"]) == rg.UUID_LEN
    assert int(d["KL_LOCK_BYTES"]) == rg.LOCK_BYTES
    assert int(d["KL_REGION_HEADER_SIZE"]) == rg.HEADER_SIZE
    assert int(d["KL_REGION_DEVICE_SIZE"]) == rg.DEVICE_SIZE
    assert int(d["KL_REGION_SLOT_SIZE"]) == rg.SLOT_SIZE
    assert int(d["KL_SLOT_ACTIVE"].rstrip("u")) == rg.SLOT_ACTIVE
    for state in rg.LimitState:
        assert int(d[f"KL_LIMIT_{state.name}"].rstrip("u")) == state.value


def test_layout_matches_the_compiled_structs(tool: Path) -> None:
    layout = json.loads(subprocess.run([tool, "layout"], check=True, capture_output=True).stdout)
    assert layout["MAGIC"] == rg.MAGIC
    assert layout["REGION_SIZE"] == rg.REGION_SIZE
    assert layout["DEVICE_SIZE"] == rg.DEVICE_SIZE
    assert layout["SLOT_SIZE"] == rg.SLOT_SIZE
    assert layout["kl_region.devices"] == rg.DEVICES_OFFSET
    assert layout["kl_region.procs"] == rg.PROCS_OFFSET
    assert layout["kl_region.sm_switch"] == rg.SM_SWITCH_OFFSET
    assert layout["kl_region.lock"] == 40
    assert layout["kl_region.last_kernel_ns"] == 40 + rg.LOCK_BYTES
    assert layout["kl_region_device.reserved_bytes"] == 64
    assert layout["kl_region_device.sm_waited_ns"] == 120
    assert layout["kl_region_slot.used"] == 24


def test_reads_a_region_written_by_the_library(tool: Path, tmp_path: Path) -> None:
    path = tmp_path / "region.cache"
    out = subprocess.run([tool, "create", str(path)], check=True, capture_output=True).stdout
    wrote = json.loads(out)
    r = rg.read_region(path)
    assert r is not None
    assert r.abi_version == rg.ABI_VERSION
    assert r.device_count == wrote["device_count"] == 3
    assert r.sm_switch is True
    d0, d1, d2 = r.devices
    assert d0.uuid == "GPU-4b4c0000-0000-0000-0000-000000000000"
    assert (d0.limit_state, d0.limit_bytes, d0.total_bytes) == (rg.LimitState.SET, GIB, 80 * GIB)
    assert d0.reserved_bytes == 300 * MIB
    assert (d0.sm_state, d0.sm_limit) == (rg.LimitState.SET, 30)
    assert (d1.limit_bytes, d1.reserved_bytes) == (3 * GIB, 5 * MIB)
    assert d2.limit_state is rg.LimitState.INVALID
    (proc,) = r.processes
    assert proc.pid == wrote["pid"]
    assert proc.start_time == wrote["start_time"]
    assert proc.used_bytes[:2] == (wrote["used0"], wrote["used1"])
    assert len(proc.used_bytes) == rg.MAX_DEVICES
    assert sum(p.used_bytes[0] for p in r.processes) == d0.reserved_bytes
    assert r.last_kernel_ns == 123456789
    assert r.last_kernel_age_s(123456789 + 2_000_000_000) == pytest.approx(2.0)


def test_sm_switch_written_by_the_monitor(tool: Path, tmp_path: Path) -> None:
    path = tmp_path / "region.cache"
    subprocess.run([tool, "create", str(path)], check=True, capture_output=True)
    rg.write_sm_switch(path, False)
    r = rg.read_region(path)
    assert r is not None and r.sm_switch is False
    rg.write_sm_switch(path, True)
    r = rg.read_region(path)
    assert r is not None and r.sm_switch is True


def test_absent_or_empty_file_is_no_region(tmp_path: Path) -> None:
    assert rg.read_region(tmp_path / "missing.cache") is None
    empty = tmp_path / "empty.cache"
    empty.write_bytes(b"")
    assert rg.read_region(empty) is None
    creating = tmp_path / "creating.cache"
    creating.write_bytes(bytes(rg.REGION_SIZE))
    assert rg.read_region(creating) is None


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        pytest.param(b"KLRG", "shorter than the header", id="truncated-header"),
        pytest.param(b"\x01\x02\x03\x04" + bytes(rg.REGION_SIZE), "magic", id="foreign-file"),
        pytest.param(
            rg.MAGIC.to_bytes(4, "little") + (9).to_bytes(4, "little") + bytes(rg.REGION_SIZE),
            "ABI version 9",
            id="newer-abi",
        ),
    ],
)
def test_foreign_files_are_refused(tmp_path: Path, data: bytes, problem: str) -> None:
    path = tmp_path / "bad.cache"
    path.write_bytes(data)
    with pytest.raises(rg.RegionFormatError, match=problem):
        rg.read_region(path)


@given(st.binary(max_size=rg.HEADER_SIZE + 64))
@settings(max_examples=200, deadline=None)
def test_any_bytes_decode_or_raise_our_error(data: bytes) -> None:
    with contextlib.suppress(rg.RegionFormatError):
        rg.parse_region(data)
