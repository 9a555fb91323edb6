"""The webhook's HTTP face: ``POST /mutate`` over HTTPS, ``/metrics`` and probes over HTTP.

Thin: decode the AdmissionReview, call :func:`kantaloupe.webhook.mutation.decide`, encode.
A body that is not an AdmissionReview v1 gets HTTP 400; a refused pod gets ``allowed: false``
with code 400/403 and the message; HTTP 500 means a bug (the traceback is logged).
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram

from kantaloupe.api import keys
from kantaloupe.runtime import lifecycle, probes
from kantaloupe.sizing import GpuModel
from kantaloupe.webhook import mutation, review

log = logging.getLogger(__name__)

MAX_BODY_BYTES: Final = 8 * 1024 * 1024
"""Well above the largest pod etcd stores (1.5 MiB), twice (object and oldObject)."""
_DURATION_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
MALFORMED: Final = "malformed"
ERROR: Final = "error"
RESULTS: Final = (*(o.value for o in mutation.Outcome), MALFORMED, ERROR)


class WebhookMetrics:
    """The webhook's metrics, registered on the given (fresh, in tests) registry."""

    __slots__ = ("denials", "duration", "requests")

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "kantaloupe_webhook_requests_total",
            "Admission requests by operation and result "
            "(mutated, allowed, skipped, denied, malformed, error).",
            ["operation", "result"],
            registry=registry,
        )
        self.duration = Histogram(
            "kantaloupe_webhook_duration_seconds",
            "Time to answer one admission request, decode to encode.",
            buckets=_DURATION_BUCKETS,
            registry=registry,
        )
        self.denials = Counter(
            "kantaloupe_webhook_denials_total",
            "Pods refused, by reason.",
            ["reason"],
            registry=registry,
        )
        for reason in mutation.DenialReason:
            self.denials.labels(reason=reason.value)


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes
    content_type: str = "application/json"


class Webhook:
    """Answers AdmissionReview bodies; no sockets here, so tests call :meth:`answer` directly."""

    __slots__ = ("fleet", "metrics", "settings")

    def __init__(
        self,
        settings: mutation.Settings,
        metrics: WebhookMetrics,
        fleet: Callable[[], Sequence[GpuModel]] = tuple,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.fleet = fleet

    def answer(self, body: bytes) -> Reply:
        started = time.perf_counter()
        try:
            return self._answer(body)
        finally:
            self.metrics.duration.observe(time.perf_counter() - started)

    def _answer(self, body: bytes) -> Reply:
        try:
            rev = review.decode_review(body)
        except review.MalformedReviewError as e:
            self.metrics.requests.labels(operation="unknown", result=MALFORMED).inc()
            log.warning("malformed admission review", extra={"error": str(e)})
            return Reply(400, str(e).encode(), "text/plain")
        operation = rev.operation.value.lower() if rev.operation else "unknown"
        try:
            decision = self._decide(rev)
            payload = review.encode_response(rev.uid, decision)
        except Exception:
            self.metrics.requests.labels(operation=operation, result=ERROR).inc()
            log.exception("webhook failed on a review", extra={"uid": rev.uid})
            return Reply(500, b"internal error; see the webhook's log", "text/plain")
        self.metrics.requests.labels(operation=operation, result=decision.outcome.value).inc()
        pod = rev.pod.display_name if rev.pod else ""
        if decision.denial is not None:
            self.metrics.denials.labels(reason=decision.denial.reason.value).inc()
            log.info(
                "pod denied",
                extra={
                    "pod": pod,
                    "operation": operation,
                    "reason": decision.denial.reason.value,
                    "user": rev.user.username,
                    "detail": decision.denial.message,
                },
            )
        elif decision.patch:
            log.info(
                "pod mutated",
                extra={"pod": pod, "operation": operation, "patch_ops": len(decision.patch)},
            )
        return Reply(200, payload)

    def _decide(self, rev: review.Review) -> mutation.Decision:
        if rev.operation is None or rev.pod is None:
            return mutation.Decision(mutation.Outcome.ALLOWED)
        wants_fleet = rev.pod.annotations is not None and keys.LLM in rev.pod.annotations
        fleet = self.fleet() if wants_fleet else ()
        return mutation.decide(
            rev.operation, rev.pod, rev.user, self.settings, old=rev.old_pod, fleet=fleet
        )


# ---- listeners --------------------------------------------------------------------------------


def build_app(
    webhook: Webhook, readiness: Callable[[], bool], stopping: Callable[[], bool]
) -> web.Application:
    """The HTTPS app: ``POST /mutate`` plus the probes (kubelet may probe either port)."""

    async def mutate(request: web.Request) -> web.Response:
        body = await request.read()
        reply = webhook.answer(body)
        return web.Response(status=reply.status, body=reply.body, content_type=reply.content_type)

    app = probes.build_app(
        readiness=readiness, registry=None, stopping=stopping, client_max_size=MAX_BODY_BYTES
    )
    app.router.add_post("/mutate", mutate)
    return app


@dataclass(frozen=True, slots=True)
class Ports:
    webhook: int
    metrics: int


async def start(
    life: lifecycle.Lifecycle,
    webhook: Webhook,
    registry: CollectorRegistry,
    *,
    host: str,
    port: int,
    metrics_port: int,
    ssl_context: ssl.SSLContext | None,
    readiness: Callable[[], bool] = lambda: True,
) -> Ports:
    """Listen on both ports (0: any free one); they drain and close with ``life``'s shutdown."""
    runner = await lifecycle.serve(
        life, build_app(webhook, readiness, life.is_stopping), host, port, ssl_context=ssl_context
    )
    metrics_app = probes.build_app(
        readiness=readiness, registry=registry, stopping=life.is_stopping
    )
    metrics_runner = await lifecycle.serve(life, metrics_app, host, metrics_port)
    ports = Ports(lifecycle.bound_port(runner), lifecycle.bound_port(metrics_runner))
    log.info(
        "webhook listening",
        extra={"host": host, "port": ports.webhook, "metrics_port": ports.metrics},
    )
    return ports
