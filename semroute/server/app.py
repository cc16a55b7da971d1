"""``create_app``: the gateway's ASGI application (Starlette) over one ``Router``, and its lifetime.

At startup it gives the event loop ``threads`` worker threads (blocking steps such as embedding
run there, and a micro-batch can only hold as many requests as there are threads), starts
loading the cache (store and embedding model) in the background, so the port answers at once,
and probes every tier's instances then keeps checking them. At shutdown (after the server has
stopped accepting) it waits up to ``drain_s`` for admitted requests to finish, then closes
the pools, the router and the embedder batcher.

Not here: serving sockets (uvicorn, from ``semroute serve``), routing rules (``gateway``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

from starlette.applications import Starlette

from ..batching import BatchingEmbedder
from ..errors import SemrouteError
from ..router import Router
from . import observe, ollama_api, openai_api
from .auth import Tenants
from .gateway import Gateway
from .service import Service
from .settings import ServerSettings

__all__ = ["create_app"]

log = logging.getLogger("semroute.server")


def create_app(router: Router, settings: ServerSettings = ServerSettings(), *,
               batcher: BatchingEmbedder | None = None, tenants: Tenants | None = None) -> Starlette:
    """The gateway app. It owns ``router`` (and ``batcher``) from now on: shutdown closes them."""
    service = Service(Gateway(router, settings), settings, tenants or Tenants(settings.keys))
    metrics = observe.GatewayMetrics(service)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        executor = ThreadPoolExecutor(settings.threads, thread_name_prefix="semroute-serve")
        loop.set_default_executor(executor)
        background = [asyncio.create_task(_load_cache(service.gateway), name="semroute-load-cache")]
        for tier in router.tiers:
            await router.pipeline.pool(tier).astart_health_checks()  # its first round runs at once
        try:
            yield
        finally:
            await _drain(service, settings.drain_s)
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await _close(router, batcher)
            executor.shutdown(wait=False, cancel_futures=True)

    app = Starlette(routes=[*ollama_api.routes(service), *openai_api.routes(service),
                            *observe.routes(service, metrics)], lifespan=lifespan)
    app.add_middleware(observe.Observer, metrics=metrics, log_access=settings.access_log)
    app.state.service = service
    app.state.metrics = metrics
    return app


async def _load_cache(gateway: Gateway) -> None:
    """Load the store and the embedding model off the loop; requests are served meanwhile."""
    try:
        await asyncio.to_thread(gateway.load_cache)
    except SemrouteError as exc:  # requests fail open on the store; readiness stays false
        log.error("cache could not be loaded: %s", exc)


async def _drain(service: Service, drain_s: float) -> None:
    if service.inflight:
        log.info("draining %d requests in flight (up to %gs)", service.inflight, drain_s)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(service.idle.wait(), drain_s)


async def _close(router: Router, batcher: BatchingEmbedder | None) -> None:
    for tier in router.tiers:
        await router.pipeline.pool(tier).aclose()
    await asyncio.to_thread(router.close)
    if batcher is not None:
        await asyncio.to_thread(batcher.close)
