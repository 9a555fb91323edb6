"""The extender's HTTP face: ``POST /filter``, ``/bind``, ``/prioritize`` on top of the probes.

Input errors come back in the protocol's ``Error`` field with HTTP 200 (kube-scheduler treats
any other status as a transport failure); an unexpected failure is logged with its traceback,
answered with a short ``Error`` and counted, never a 500.
"""

from __future__ import annotations

import logging
import time

from aiohttp import web

from kantaloupe.api import errors as api_errors
from kantaloupe.extender import wire
from kantaloupe.extender.metrics import ExtenderMetrics
from kantaloupe.extender.service import Extender

log = logging.getLogger(__name__)
_JSON = "application/json"


def _reply(body: bytes) -> web.Response:
    return web.Response(body=body, content_type=_JSON)


def add_routes(app: web.Application, extender: Extender, metrics: ExtenderMetrics) -> None:
    async def filter_(request: web.Request) -> web.Response:
        body = await request.read()
        started = time.perf_counter()
        try:
            args = wire.decode_filter_args(body)
            result = extender.filter(args)
            outcome = "error" if result.error else "fit" if result.node_names else "no_fit"
        except api_errors.InputError as e:
            result, outcome = wire.FilterResult(error=str(e)), "invalid"
        except Exception as e:
            log.exception("filter failed")
            result = wire.FilterResult(error=f"internal error: {api_errors.shorten(str(e), 200)}")
            outcome = "internal"
        metrics.filter_duration.labels(outcome).observe(time.perf_counter() - started)
        return _reply(wire.encode_filter_result(result))

    async def bind(request: web.Request) -> web.Response:
        body = await request.read()
        started = time.perf_counter()
        try:
            result = await extender.bind(wire.decode_bind_args(body))
            outcome = "error" if result.error else "ok"
        except api_errors.InputError as e:
            result, outcome = wire.BindResult(error=str(e)), "invalid"
        except Exception as e:
            log.exception("bind failed")
            result = wire.BindResult(error=f"internal error: {api_errors.shorten(str(e), 200)}")
            outcome = "internal"
        metrics.bind_duration.labels(outcome).observe(time.perf_counter() - started)
        return _reply(wire.encode_bind_result(result))

    async def prioritize(request: web.Request) -> web.Response:
        try:
            items = extender.prioritize(wire.decode_filter_args(await request.read()))
        except api_errors.InputError:
            items = []
        return _reply(wire.encode_priorities(items))

    app.router.add_post("/filter", filter_)
    app.router.add_post("/bind", bind)
    app.router.add_post("/prioritize", prioritize)
