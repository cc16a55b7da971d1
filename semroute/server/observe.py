"""Watching the gateway: Prometheus ``/metrics``, ``/healthz``, ``/readyz`` and access logs.

``Observer`` is ASGI middleware around the whole app: it times every request until its last
body byte (streams included), counts it by endpoint, status and answer source, writes one JSON
access-log line (``semroute.access`` logger: tenant name, never a key), and releases the
request's admission slot whatever happened (a stream the client abandoned before it started
must not keep its slot). The answers a request's misses produce are stored once its last body
byte is sent (``semroute.write_behind.HeldWrites``), or when it ends otherwise. Metrics live in
a registry of their own per app (no module globals); the router's own counters and latency
percentiles are exported next to them.

``/stats`` is ``Router.stats()`` as JSON (``semroute stats --url``); ``/healthz`` says the process
answers; ``/readyz`` says the cache is loaded (store and
embedding model) and every tier has a healthy instance that has its model.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..batching import BatchingEmbedder
from ..prom import RouterCollector
from ..write_behind import HeldWrites
from .service import Service

__all__ = ["Observer", "GatewayMetrics", "routes"]

access_log = logging.getLogger("semroute.access")

# Request latencies span an exact hit over loopback (~0.5 ms, bench/serve.py) to a long model answer.
_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_PATHS = frozenset({"/api/chat", "/api/generate", "/api/embed", "/api/tags", "/api/ps", "/api/version", "/",
                    "/v1/chat/completions", "/v1/embeddings", "/v1/models", "/metrics", "/healthz", "/readyz", "/stats"})


class _InFlight:
    """Requests being answered now (the router's own metrics come from ``semroute.prom``)."""

    def __init__(self, service: Service) -> None:
        self._service = service

    def collect(self) -> Iterator[Metric]:
        inflight = GaugeMetricFamily("semroute_gateway_in_flight", "Requests being answered now")
        inflight.add_metric([], self._service.inflight)
        yield inflight


class _Batches:
    """The embedding batcher's counters: how full its batches are and how busy its model is."""

    def __init__(self, batcher: BatchingEmbedder) -> None:
        self._batcher = batcher

    def collect(self) -> Iterator[Metric]:
        b = self._batcher
        yield CounterMetricFamily("semroute_gateway_embed_batches", "Batches the embedding model ran", value=b.batches)
        yield CounterMetricFamily("semroute_gateway_embed_texts", "Texts embedded in those batches",
                                  value=b.batched_texts)
        yield CounterMetricFamily("semroute_gateway_embed_busy_seconds", "Seconds the embedding model spent on "
                                  "batches (a rate near 1: the embedder limits throughput)", value=b.busy_s)
        yield GaugeMetricFamily("semroute_gateway_embed_queued", "Texts waiting for the next batch", value=b.queued)


class GatewayMetrics:
    """The app's Prometheus registry and its request metrics."""

    def __init__(self, service: Service, batcher: BatchingEmbedder | None = None) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("semroute_gateway_requests", "HTTP requests answered",
                                ["endpoint", "status", "source"], registry=self.registry)
        self.latency = Histogram("semroute_gateway_request_seconds", "Time to the last byte of the response",
                                 ["endpoint", "source"], buckets=_BUCKETS, registry=self.registry)
        self.stream_errors = Counter("semroute_gateway_stream_errors", "Streams that ended with an error line",
                                     ["kind"], registry=self.registry)
        self.ready = Gauge("semroute_gateway_ready", "1 when /readyz would answer 200", registry=self.registry)
        self.ready.set_function(lambda: float(not readiness(service)))
        self.registry.register(RouterCollector(service.gateway.router.metrics))  # type: ignore[arg-type]
        self.registry.register(_InFlight(service))  # type: ignore[arg-type]
        if batcher is not None:
            self.registry.register(_Batches(batcher))  # type: ignore[arg-type]


class Observer:
    """ASGI middleware: timing, metrics, access log and slot release for every HTTP request."""

    def __init__(self, app: ASGIApp, *, metrics: GatewayMetrics, log_access: bool) -> None:
        self.app = app
        self.metrics = metrics
        self.log_access = log_access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0
        held = HeldWrites().enter()

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                held.release()

        try:
            await self.app(scope, receive, sending)
        finally:
            held.exit()
            state = scope.get("state") or {}
            slot = state.get("slot")
            if slot is not None:
                slot.release()
            self._record(scope, state, status or 499, time.perf_counter() - started)

    def _record(self, scope: Scope, state: dict[str, Any], status: int, seconds: float) -> None:
        path = scope.get("path", "")
        endpoint = path if path in _PATHS else "other"
        source = state.get("source", "")
        self.metrics.requests.labels(endpoint, str(status), source).inc()
        self.metrics.latency.labels(endpoint, source).observe(seconds)
        if "stream_error" in state:
            self.metrics.stream_errors.labels(state["stream_error"]).inc()
        if self.log_access and endpoint not in ("/metrics", "/healthz", "/readyz", "/stats"):
            client = scope.get("client") or ("", 0)
            access_log.info(json.dumps({
                "ts": round(time.time(), 3), "method": scope.get("method"), "path": path, "status": status,
                "ms": round(seconds * 1000, 3), "source": source or None, "model": state.get("model"),
                "tenant": state.get("tenant"), "client": client[0], "stream_error": state.get("stream_error"),
            }))


def readiness(service: Service) -> list[str]:
    """What keeps the gateway from being ready (empty when ready)."""
    problems = [] if service.gateway.cache_loaded else ["cache not loaded"]
    problems += [f"tier {t}: no healthy instance with its model" for t in service.gateway.unready_tiers()]
    return problems


def routes(service: Service, metrics: GatewayMetrics) -> list[Route]:
    async def metrics_endpoint(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def stats(request: Request) -> Response:  # what `semroute stats --url` reads
        return Response(json.dumps(service.gateway.router.stats(), default=str), media_type="application/json")

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        problems = readiness(service)
        return JSONResponse({"ready": not problems, "problems": problems}, status_code=503 if problems else 200)

    return [Route("/metrics", metrics_endpoint, methods=["GET"]), Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]), Route("/stats", stats, methods=["GET"])]
