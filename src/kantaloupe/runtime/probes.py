"""The HTTP face every server shares: ``/healthz``, ``/readyz`` and ``/metrics``.

``/readyz`` answers 503 while the readiness callback says no or the process is stopping;
``/metrics`` renders an injected ``CollectorRegistry`` (never the global one), so collectors
compute state-derived series at scrape time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

Check = Callable[[], bool]


def _always() -> bool:
    return True


def add_probes(
    app: web.Application,
    *,
    readiness: Check,
    liveness: Check = _always,
    stopping: Check = lambda: False,
    registry: CollectorRegistry | None = None,
    prepare: Callable[[], None] | None = None,
) -> web.Application:
    """Add the probe routes. With ``prepare``, ``/metrics`` calls it on the loop (to copy state
    into a snapshot) and renders the registry in a worker thread, so a large scrape never
    stalls the loop; collectors must then render only what ``prepare`` copied."""

    async def healthz(_: web.Request) -> web.Response:
        if liveness():
            return web.Response(text="ok\n")
        return web.Response(status=503, text="unhealthy\n")

    async def readyz(_: web.Request) -> web.Response:
        if stopping():
            return web.Response(status=503, text="stopping\n")
        if readiness():
            return web.Response(text="ok\n")
        return web.Response(status=503, text="not ready\n")

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/livez", healthz)
    app.router.add_get("/readyz", readyz)
    if registry is not None:
        reg = registry

        async def metrics(_: web.Request) -> web.Response:
            if prepare is None:
                body = generate_latest(reg)
            else:
                prepare()
                body = await asyncio.to_thread(generate_latest, reg)
            return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

        app.router.add_get("/metrics", metrics)
    return app


def build_app(
    *,
    readiness: Check,
    registry: CollectorRegistry | None,
    liveness: Check = _always,
    stopping: Check = lambda: False,
    client_max_size: int = 4 << 20,
    prepare: Callable[[], None] | None = None,
) -> web.Application:
    """A fresh application with the probes (and ``/metrics`` when a registry is given)."""
    app = web.Application(client_max_size=client_max_size)
    return add_probes(
        app,
        readiness=readiness,
        liveness=liveness,
        stopping=stopping,
        registry=registry,
        prepare=prepare,
    )
