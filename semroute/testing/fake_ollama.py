"""``FakeOllama``: a real HTTP server on loopback that speaks Ollama's API, for tests and benches.

It answers ``/api/chat``, ``/api/generate`` (NDJSON streams by default, one JSON object with
``"stream": false``), ``/api/embed``, ``/api/tags``, ``/api/ps``, ``/api/version`` and ``/``
exactly as the ``ollama`` client expects, with deterministic answers (see ``fake_content``).
It can be slow (``Timing``), full (``Capacity``: 503 beyond parallel + queue) and broken on
demand (``Fault``: refuse, error, busy, hang, drop), switchable at runtime; ``stats`` counts
what it saw. It is not a model, not a proxy and not meant to face anything but loopback tests.

The server is asyncio over ``h11`` in its own thread with its own event loop (``LoopServer``), so
hundreds of concurrent streams cost one thread; state is touched only on that loop (counters
behind a lock).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..errors import ConfigError
from . import fake_content as content
from .fake_config import INFERENCE_ENDPOINTS, Capacity, Counters, FakeStats, Fault, FaultKind, FaultSchedule, Timing
from .fake_handlers import Generation
from .http11 import HttpConnection, HttpRequest
from .loop_server import LoopServer

__all__ = ["FakeOllama", "DEFAULT_MODELS", "FAKE_VERSION"]

DEFAULT_MODELS = ("llama3.2:3b", "llama3.1:8b")
FAKE_VERSION = "0.9.0"
_ROUTES = {
    ("POST", "/api/chat"): "chat",
    ("POST", "/api/generate"): "generate",
    ("POST", "/api/embed"): "embed",
    ("GET", "/api/tags"): "tags",
    ("GET", "/api/ps"): "ps",
    ("GET", "/api/version"): "version",
    ("GET", "/"): "root",
    ("HEAD", "/"): "root",
}
_KNOWN_PATHS = {path for _, path in _ROUTES}
_BUSY = "server busy, please try again.  maximum pending requests exceeded"  # Ollama's wording


class FakeOllama(LoopServer):
    """A fake Ollama server. Use as a context manager, or ``start()`` / ``stop()``::

        with FakeOllama(["llama3.2:3b"]) as fake:
            ollama.Client(fake.url).chat("llama3.2:3b", [{"role": "user", "content": "hi"}])

    ``timing`` may be replaced while running; faults are switched with ``set_fault``.
    ``reply`` scripts answers: called as ``reply(model, prompt)`` (the last user message) for
    each chat/generate request, it returns the answer text, or None for the default
    deterministic echo (``answer_text``). It runs on the server's thread, so keep it quick;
    it may be replaced while running (``fake.reply = ...``). Example: a judge that says yes
    only about cities, ``reply=lambda model, prompt: "Yes" if "city" in prompt else "No"``.
    ``last_options`` is the ``options`` object of the last chat/generate request (None: it had none).
    """

    def __init__(
        self,
        models: Iterable[str] = DEFAULT_MODELS,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        timing: Timing = Timing(),
        capacity: Capacity = Capacity(),
        extra_words: int = 8,
        embed_dim: int = 384,
        reply: Callable[[str, str], str | None] | None = None,
    ) -> None:
        names = [models] if isinstance(models, str) else list(models)
        if not names or not all(isinstance(m, str) and m.strip() for m in names):
            raise ConfigError(f"FakeOllama needs at least one model name, got {models!r}")
        if not isinstance(extra_words, int) or extra_words < 0 or not isinstance(embed_dim, int) or embed_dim < 1:
            raise ConfigError("extra_words must be an int >= 0 and embed_dim an int >= 1")
        if not isinstance(timing, Timing) or not isinstance(capacity, Capacity):
            raise ConfigError(f"timing must be a Timing and capacity a Capacity, got {timing!r}, {capacity!r}")
        super().__init__(host, port)
        self._models = tuple(dict.fromkeys(content.canonical_model(m) for m in names))
        self.timing = timing
        if reply is not None and not callable(reply):
            raise ConfigError(f"reply must be a function (model, prompt) -> str | None, got {reply!r}")
        self.reply = reply
        self._capacity = capacity
        self._extra_words, self._embed_dim = extra_words, embed_dim
        self._counters = Counters()
        self._slots: asyncio.Semaphore | None = None  # owned by the server loop once started
        self._gate: asyncio.Event | None = None
        self._faults = FaultSchedule()
        self._loaded: dict[str, float] = {}
        self.last_options: dict[str, Any] | None = None

    # -- what it serves --------------------------------------------------------------------

    @property
    def models(self) -> tuple[str, ...]:
        return self._models

    @property
    def capacity(self) -> Capacity:
        return self._capacity

    async def _setup(self) -> None:
        self._slots = asyncio.Semaphore(self._capacity.max_parallel)
        self._gate = asyncio.Event()
        self._gate.set()

    def _accepts(self) -> bool:
        return not self._faults.refusing

    def _connected(self) -> None:
        self._counters.connection()

    def _disconnected(self) -> None:
        self._counters.disconnection()

    # -- faults and stats ------------------------------------------------------------------

    def set_fault(self, fault: Fault | FaultKind | None, **options: Any) -> None:
        """Switch to ``fault`` (a ``Fault`` or a kind plus ``Fault`` fields); None clears it.

        ``fake.set_fault("error", count=2)`` fails the next two inference requests with 500;
        ``fake.set_fault("refuse")`` stops listening until the fault is cleared.
        """
        if isinstance(fault, str):
            fault = Fault(fault, **options)
        elif options:
            raise ConfigError("pass Fault fields only together with a fault kind")
        if self._thread is None:
            if fault is not None and fault.kind == "refuse":
                raise RuntimeError("start FakeOllama before making it refuse connections")
            self._faults.install(fault)
            return
        self._call(self._switch_fault(fault))

    def clear_fault(self) -> None:
        self.set_fault(None)

    def pause(self) -> None:
        """Hold every inference request once it has a slot, until ``resume()``.

        Lets a test fill the fake's capacity deterministically, without timing.
        """
        self._call(self._set_gate(False))

    def resume(self) -> None:
        self._call(self._set_gate(True))

    async def _set_gate(self, open_: bool) -> None:
        assert self._gate is not None
        if open_:
            self._gate.set()
        else:
            self._gate.clear()

    def wait_until(self, predicate: Callable[[FakeStats], bool], timeout: float = 5.0) -> FakeStats:
        """Poll ``stats`` until ``predicate`` holds; raise ``TimeoutError`` after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats()
            if predicate(stats):
                return stats
            if time.monotonic() > deadline:
                raise TimeoutError(f"FakeOllama stats never matched within {timeout}s: {stats}")
            time.sleep(0.002)

    @property
    def fault(self) -> Fault | None:
        return self._faults.fault

    def stats(self) -> FakeStats:
        """A snapshot of the counters (safe to call from any thread)."""
        return self._counters.snapshot()

    def reset_stats(self) -> None:
        self._counters.reset()

    async def _switch_fault(self, fault: Fault | None) -> None:
        was_refusing = self._faults.refusing
        self._faults.install(fault)
        refusing = self._faults.refusing
        if refusing and not was_refusing:
            await self._stop_listening()
            await self._close_connections()  # idle keep-alive connections would still answer
        elif was_refusing and not refusing:
            await self._listen()

    # -- HTTP ------------------------------------------------------------------------------

    async def _dispatch(self, conn: HttpConnection, request: HttpRequest) -> bool:
        """Answer one request; False closes the connection."""
        endpoint = _ROUTES.get((request.method, request.path))
        if endpoint is None:
            status, text = (
                (405, "405 method not allowed") if request.path in _KNOWN_PATHS else (404, "404 page not found")
            )
            await conn.respond(status, text.encode(), "text/plain", head_only=request.method == "HEAD")
            return True
        payload: Mapping[str, Any] = {}
        if request.method == "POST":
            try:
                payload = json.loads(request.body or b"{}")
            except ValueError as exc:
                return await _error(conn, 400, f"invalid JSON body: {exc}")
            if not isinstance(payload, dict):
                return await _error(conn, 400, "request body must be a JSON object")
        raw_model = payload.get("model")
        model = content.canonical_model(raw_model) if isinstance(raw_model, str) and raw_model.strip() else ""
        self._counters.request(endpoint, model)
        fault = self._faults.take(endpoint)
        if fault is not None:
            self._counters.fault(fault.kind)
        if fault is not None and (fault.kind != "drop" or endpoint not in INFERENCE_ENDPOINTS):
            return await self._fail(conn, fault)
        if endpoint in INFERENCE_ENDPOINTS:
            if endpoint != "embed":
                self.last_options = payload.get("options")
            return await self._infer(conn, endpoint, model, payload, fault)
        return await self._metadata(conn, request, endpoint)

    async def _fail(self, conn: HttpConnection, fault: Fault) -> bool:
        if fault.kind == "error":
            return await _error(conn, fault.status, f"fake ollama: injected {fault.status} error")
        if fault.kind == "busy":
            return await _error(conn, 503, _BUSY, headers=self._retry_after())
        if fault.kind == "hang":
            await conn.wait_for_disconnect()
        return False  # hang ended, or drop before any response

    def _retry_after(self) -> tuple[tuple[str, str], ...]:
        seconds = self._capacity.retry_after_s
        return () if seconds is None else (("retry-after", f"{seconds:g}"),)

    async def _infer(
        self, conn: HttpConnection, endpoint: str, model: str, payload: Mapping[str, Any], fault: Fault | None
    ) -> bool:
        if not model:
            return await _error(conn, 400, "model is required")
        if model not in self._models:
            return await _error(conn, 404, f'model "{payload.get("model")}" not found, try pulling it first')
        capacity = self._capacity
        if not self._counters.try_enter(capacity.max_parallel + capacity.queue):
            return await _error(conn, 503, _BUSY, headers=self._retry_after())
        assert self._slots is not None and self._gate is not None

        def completed(tokens: int) -> None:
            self._loaded[model] = time.time() + 300.0  # Ollama's default keep_alive: 5 minutes
            self._counters.completed(endpoint, model, tokens)

        job = Generation(
            conn, endpoint, model, payload, self.timing, self._extra_words, completed,
            reply=self.reply, streams=lambda: self._counters.active,
        )
        try:
            async with self._slots:
                self._counters.start()
                try:
                    await self._gate.wait()
                    if endpoint == "embed":
                        keep = await job.embed(self._embed_dim, fault)
                    else:
                        keep = await job.generate(fault)
                finally:
                    self._counters.finish()
        finally:
            self._counters.leave()
        return keep

    async def _metadata(self, conn: HttpConnection, request: HttpRequest, endpoint: str) -> bool:
        self._counters.completed(endpoint, "")  # before the answer: a client must find it counted
        if endpoint == "root":
            await conn.respond(
                200, b"Ollama is running", "text/plain; charset=utf-8", head_only=request.method == "HEAD"
            )
        else:
            await conn.respond_json(200, self._metadata_body(endpoint))
        return True

    def _metadata_body(self, endpoint: str) -> dict[str, Any]:
        if endpoint == "tags":
            return {"models": [content.tag_entry(m) for m in self._models]}
        if endpoint == "ps":
            now = time.time()
            return {"models": [content.ps_entry(m, until) for m, until in sorted(self._loaded.items()) if until > now]}
        return {"version": FAKE_VERSION}


async def _error(conn: HttpConnection, status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> bool:
    await conn.respond_json(status, {"error": message}, headers)
    return True


if __name__ == "__main__":  # python -m semroute.testing.fake_ollama
    import sys

    from .fake_cli import main

    sys.exit(main())
