"""The HTTP face on a real socket: recorded bodies in, protocol answers out, never a 500."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from extender_support import SAMPLES, node, world

from kantaloupe.extender import server
from kantaloupe.runtime import probes
from kantaloupe.runtime.lifecycle import Lifecycle, bound_port, serve


@pytest.fixture
async def base_url() -> AsyncIterator[tuple[str, object]]:
    w = world()
    w.add_node(node("gpu-node-1"))
    life = Lifecycle(grace_s=2)
    ready = [False]
    app = probes.build_app(
        readiness=lambda: ready[0], registry=w.registry, stopping=life.is_stopping
    )
    server.add_routes(app, w.extender, w.metrics)
    runner = await serve(life, app, "127.0.0.1", 0)
    yield f"http://127.0.0.1:{bound_port(runner)}", (w, ready, life)
    await life.shutdown()


async def test_filter_and_bind_recorded_payloads(base_url: tuple[str, object]) -> None:
    url, (w, _, _) = base_url  # type: ignore[misc]
    filter_body = (SAMPLES / "extender-args-filter.json").read_bytes()
    from kantaloupe.extender import wire

    w.writer.add(wire.decode_filter_args(filter_body).pod)
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{url}/filter", data=filter_body) as r:
            assert r.status == 200
            doc = json.loads(await r.read())
        assert doc["NodeNames"] == ["gpu-node-1"] and doc["Error"] == ""
        bind_body = (SAMPLES / "extender-binding-args-bind.json").read_bytes()
        async with s.post(f"{url}/bind", data=bind_body) as r:
            assert r.status == 200 and json.loads(await r.read()) == {"Error": ""}
        async with s.post(f"{url}/prioritize", data=filter_body) as r:
            assert json.loads(await r.read()) == [{"Host": "gpu-node-1", "Score": 10}]
        async with s.get(f"{url}/metrics") as r:
            text = await r.text()
        assert 'kantaloupe_extender_filter_duration_seconds_count{result="fit"} 1.0' in text


@pytest.mark.parametrize("verb", ["filter", "bind"])
async def test_bad_bodies_get_error_field_not_500(base_url: tuple[str, object], verb: str) -> None:
    url, _ = base_url
    async with aiohttp.ClientSession() as s, s.post(f"{url}/{verb}", data=b"{oops") as r:
        assert r.status == 200
        assert "is not a JSON object" in json.loads(await r.read())["Error"]


async def test_probes_follow_readiness_and_stopping(base_url: tuple[str, object]) -> None:
    url, (_, ready, life) = base_url  # type: ignore[misc]
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{url}/healthz") as r:
            assert r.status == 200
        async with s.get(f"{url}/readyz") as r:
            assert r.status == 503
        ready[0] = True
        async with s.get(f"{url}/readyz") as r:
            assert r.status == 200
        life.request_stop("test")
        async with s.get(f"{url}/readyz") as r:
            assert r.status == 503
