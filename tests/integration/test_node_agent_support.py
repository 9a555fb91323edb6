"""Support for the node agent's integration tests (no tests here): the Go test kubelet driver.

The test kubelet (``tools/testkubelet``) is built by ``tools/testkubelet/build.sh`` into the cache
(well under a second when present) and driven through its line protocol on stdin/stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def build_testkubelet() -> Path:
    """Build (or find) the test kubelet; fail, not skip, without Go and without a build."""
    if shutil.which("go") is None:
        found = sorted(Path.home().glob(".cache/kantaloupe/testkubelet/*/testkubelet"))
        if found:
            return found[-1]
        pytest.fail("go is not on PATH; run `bash tools/testkubelet/build.sh`", pytrace=False)
    done = subprocess.run(
        ["bash", str(ROOT / "tools/testkubelet/build.sh")],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if done.returncode != 0:
        pytest.fail(f"tools/testkubelet/build.sh failed:\n{done.stderr[-2000:]}", pytrace=False)
    return Path(done.stdout.strip().splitlines()[-1])


class TestKubelet:
    """One test kubelet process serving ``<dir>/kubelet.sock``."""

    __test__ = False

    def __init__(self, proc: asyncio.subprocess.Process, plugin_dir: Path) -> None:
        self.proc = proc
        self.dir = plugin_dir
        self.events: list[dict[str, Any]] = []
        self._replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read(), name="testkubelet-reader")

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            msg = json.loads(line)
            if "reply" in msg:
                await self._replies.put(msg)
            else:
                self.events.append(msg)
                self._changed.set()

    async def wait_event(
        self,
        kind: str,
        predicate: Callable[[dict[str, Any]], bool] = lambda _: True,
        *,
        after: int = 0,
        timeout_s: float = 10.0,
    ) -> dict[str, Any]:
        """The first event of ``kind`` at position ``after`` or later matching ``predicate``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            for event in self.events[after:]:
                if event.get("event") == kind and predicate(event):
                    return event
            self._changed.clear()
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError(f"no {kind} event in {timeout_s} s; saw {self.events[-5:]}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)

    async def call(self, cmd: str, **fields: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"cmd": cmd, **fields}) + "\n").encode())
        await self.proc.stdin.drain()
        return await asyncio.wait_for(self._replies.get(), 40)

    async def allocate(self, *containers: list[str]) -> dict[str, Any]:
        return await self.call("allocate", containers=[list(c) for c in containers])

    async def close(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(Exception):
                assert self.proc.stdin is not None
                self.proc.stdin.write(b'{"cmd":"quit"}\n')
                await self.proc.stdin.drain()
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


@contextlib.asynccontextmanager
async def run_testkubelet(binary: Path, plugin_dir: Path) -> AsyncIterator[TestKubelet]:
    plugin_dir.mkdir(parents=True, exist_ok=True)
    proc = await asyncio.create_subprocess_exec(
        str(binary),
        "--dir",
        str(plugin_dir),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    kubelet = TestKubelet(proc, plugin_dir)
    try:
        await kubelet.wait_event("ready")
        yield kubelet
    finally:
        await kubelet.close()


@pytest.fixture
def plugin_dir() -> Iterator[Path]:
    """A short directory for sockets: unix socket paths must stay under 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="kl-dp-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)
