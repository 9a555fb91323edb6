"""One process, one loop: start, serve, stop on SIGTERM within a bound, exit with a code.

::

    async def main(life: Lifecycle) -> None:
        app = probes.build_app(readiness=state.is_ready, registry=registry,
                               stopping=life.is_stopping)
        await serve(life, app, "0.0.0.0", 8443, ssl_context=ctx)
        life.guard.spawn("informer", informer.run(), root=True)
        life.on_shutdown(client.close)

    sys.exit(run_process(main, grace_s=20))

On SIGTERM/SIGINT: ``/readyz`` turns 503 at once (``is_stopping``), the listeners stop
accepting and in-flight requests get ``drain_s`` to finish, tasks are cancelled, shutdown hooks
run (last registered first), and the process exits 0 — all within ``grace_s``. When a root task
ends (it failed, or returned although nobody asked to stop) the same path runs and the exit
code is 1.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from collections.abc import Awaitable, Callable

from aiohttp import web

from kantaloupe.runtime.tasks import TaskGuard

log = logging.getLogger(__name__)

Hook = Callable[[], Awaitable[object]]


class Lifecycle:
    """What a running server shares: the stop signal, the task guard, shutdown hooks."""

    def __init__(self, *, grace_s: float = 20.0, drain_s: float | None = None) -> None:
        self.grace_s = grace_s
        self.drain_s = drain_s if drain_s is not None else grace_s / 2
        self.stopping = asyncio.Event()
        self.failed = False
        self.reason = ""
        self.guard = TaskGuard(on_root_exit=self._root_exit)
        self._hooks: list[Hook] = []
        self._runners: list[web.AppRunner] = []

    def is_stopping(self) -> bool:
        return self.stopping.is_set()

    def request_stop(self, reason: str, *, failed: bool = False) -> None:
        if not self.stopping.is_set():
            log.info("stopping", extra={"reason": reason, "failed": failed})
            self.reason = reason
            self.failed = failed
            self.stopping.set()

    def _root_exit(self, name: str, error: BaseException | None) -> None:
        self.request_stop(f"root task {name} ended", failed=True)

    def on_shutdown(self, hook: Hook) -> None:
        """Run ``hook`` at shutdown (hooks run last-registered first, each bounded)."""
        self._hooks.append(hook)

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig.name)

    def remove_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)

    async def shutdown(self) -> bool:
        """Drain listeners, cancel tasks, run hooks; True when all finished within the bound."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.grace_s
        clean = True
        for runner in reversed(self._runners):
            try:
                await asyncio.wait_for(runner.cleanup(), max(0.1, deadline - loop.time()))
            except TimeoutError:
                clean = False
                log.error("listener did not drain in time")
        self._runners.clear()
        clean &= await self.guard.cancel_all(max(0.1, min(5.0, deadline - loop.time())))
        for hook in reversed(self._hooks):
            try:
                await asyncio.wait_for(hook(), max(0.1, deadline - loop.time()))
            except TimeoutError:
                clean = False
                log.error("shutdown hook timed out", extra={"hook": repr(hook)})
            except Exception:
                clean = False
                log.exception("shutdown hook failed", extra={"hook": repr(hook)})
        self._hooks.clear()
        return clean


async def serve(
    life: Lifecycle,
    app: web.Application,
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
) -> web.AppRunner:
    """Listen on ``host:port``; the listener stops and drains during :meth:`Lifecycle.shutdown`."""
    runner = web.AppRunner(app, shutdown_timeout=life.drain_s, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context, reuse_address=True)
    await site.start()
    life._runners.append(runner)
    return runner


def bound_port(runner: web.AppRunner) -> int:
    """The port a runner listens on (after ``port=0``)."""
    for address in runner.addresses:
        if isinstance(address, tuple):
            return int(address[1])
    raise RuntimeError("runner has no TCP address")


async def run_async(
    main: Callable[[Lifecycle], Awaitable[None]],
    *,
    grace_s: float = 20.0,
    drain_s: float | None = None,
    signals: bool = True,
) -> int:
    """Run ``main`` (which starts servers and root tasks, then returns) until told to stop."""
    life = Lifecycle(grace_s=grace_s, drain_s=drain_s)
    if signals:
        life.install_signal_handlers()
    try:
        try:
            await main(life)
        except Exception:
            log.exception("start-up failed")
            life.request_stop("start-up failed", failed=True)
            await life.shutdown()
            raise
        await life.stopping.wait()
        clean = await life.shutdown()
        if not clean:
            log.warning("shutdown was not clean")
        return 1 if life.failed else 0
    finally:
        if signals:
            life.remove_signal_handlers()


def run_process(
    main: Callable[[Lifecycle], Awaitable[None]],
    *,
    grace_s: float = 20.0,
    drain_s: float | None = None,
) -> int:
    """``asyncio.run`` of :func:`run_async`; the process exit code."""
    return asyncio.run(run_async(main, grace_s=grace_s, drain_s=drain_s))
