"""The shared runtime as the extender uses it: stop on request, exit non-zero on a dead root."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import aiohttp

from kantaloupe.runtime import logs, probes
from kantaloupe.runtime.lifecycle import Lifecycle, bound_port, run_async, serve


async def test_stop_request_drains_and_exits_zero() -> None:
    seen: list[str] = []

    async def main(life: Lifecycle) -> None:
        app = probes.build_app(readiness=lambda: True, registry=None, stopping=life.is_stopping)
        runner = await serve(life, app, "127.0.0.1", 0)
        port = bound_port(runner)

        async def worker() -> None:
            try:
                await asyncio.Event().wait()
            finally:
                seen.append("cancelled")

        life.guard.spawn("worker", worker(), root=True)

        async def hook() -> None:
            seen.append("hook")

        life.on_shutdown(hook)
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/readyz") as r:
            assert r.status == 200
        asyncio.get_running_loop().call_soon(life.request_stop, "SIGTERM")

    assert await run_async(main, grace_s=2, signals=False) == 0
    assert seen == ["cancelled", "hook"]


async def test_dead_root_task_exits_non_zero() -> None:
    async def main(life: Lifecycle) -> None:
        async def boom() -> None:
            raise RuntimeError("watch died")

        life.guard.spawn("boom", boom(), root=True)

    assert await run_async(main, grace_s=2, signals=False) == 1


def test_json_logs_carry_extra_fields() -> None:
    stream = io.StringIO()
    logs.setup_logging("INFO", stream=stream)
    logging.getLogger("t").info("bound", extra={"pod": "p", "node": "n1"})
    doc = json.loads(stream.getvalue().splitlines()[-1])
    assert doc["msg"] == "bound" and doc["pod"] == "p" and doc["node"] == "n1"
    assert doc["level"] == "info"
    logging.getLogger().handlers.clear()
