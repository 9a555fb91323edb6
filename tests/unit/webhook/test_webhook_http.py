"""The HTTP face over a real socket: /mutate, /metrics, probes, and a clean stop."""

from __future__ import annotations

import aiohttp
from prometheus_client import CollectorRegistry
from webhook_support import SAMPLE, patch_of

from kantaloupe.runtime import lifecycle
from kantaloupe.webhook import mutation, server


async def test_serves_reviews_metrics_and_probes_then_stops() -> None:
    life = lifecycle.Lifecycle(grace_s=5)
    registry = CollectorRegistry()
    ready = {"fleet": False}
    hook = server.Webhook(mutation.Settings(), server.WebhookMetrics(registry))
    ports = await server.start(
        life,
        hook,
        registry,
        host="127.0.0.1",
        port=0,
        metrics_port=0,
        ssl_context=None,
        readiness=lambda: ready["fleet"],
    )
    base, metrics = f"http://127.0.0.1:{ports.webhook}", f"http://127.0.0.1:{ports.metrics}"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{metrics}/readyz") as r:
                assert r.status == 503
            ready["fleet"] = True
            for url in (f"{base}/readyz", f"{metrics}/readyz", f"{metrics}/healthz"):
                async with http.get(url) as r:
                    assert r.status == 200, url
            async with http.post(f"{base}/mutate", data=SAMPLE.read_bytes()) as r:
                assert r.status == 200
                response = (await r.json())["response"]
                assert response["allowed"] and patch_of(response)
            async with http.post(f"{base}/mutate", data=b"{") as r:
                assert r.status == 400
            async with http.get(f"{metrics}/metrics") as r:
                text = await r.text()
            assert (
                'kantaloupe_webhook_requests_total{operation="create",result="mutated"} 1.0' in text
            )
            assert 'kantaloupe_webhook_denials_total{reason="privileged"} 0.0' in text
            assert "kantaloupe_webhook_duration_seconds_bucket" in text
            life.request_stop("test")
            async with http.get(f"{base}/readyz") as r:
                assert r.status == 503
    finally:
        life.request_stop("test")
        assert await life.shutdown()
