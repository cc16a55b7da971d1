"""``OllamaBackend``: one Ollama server behind the ``Backend`` seam, over the ``ollama`` client.

It turns ``Message``s into ``/api/chat`` calls (sync with ``ollama.Client``, async with
``ollama.AsyncClient``) and answers with ``Completion`` or ``Chunk``s. Every failure leaves as a
``BackendError`` naming the instance, raised from the original error:

* connection refused or lost, HTTP 429/502/503 -> ``BackendUnavailable`` (``retry_after`` kept)
* connect/read/total timeouts, HTTP 504          -> ``BackendTimeout``
* any other status (404 unknown model, 500), bad body -> ``BackendProtocolError(status=)``

(the mapping is ``http_errors``'s, shared with the OpenAI-compatible backend). A stream that fails
after its first chunk raises the same errors after the chunks it gave; callers must not retry then. This module does not choose instances, count slots or retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import weakref
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import ollama
import orjson

from ..errors import (
    BackendProtocolError,
    BackendTimeout,
    ConfigError,
    InvalidRequest,
)
from ..redact import redact_text
from ..request import validate_chat
from ..types import Chunk, Completion, Message
from .asyncio_net import transport as _transport
from .http1 import Http1, Streamed
from .loop_clients import (  # noqa: F401 - importable from here, as before the split
    _STREAMS_PER_CLIENT,
    LoopClients,
    _AsyncEntry,
    _close_at_loop_shutdown,
    _Shard,
    close_idle_loops,
    close_running_loop,
    entry_of,
    shard_of,
)
from .ollama_lean import _lean_chat, _lean_client, _lean_completion, _ollama_detail, _open_lean, _reads_of, _translate
from .ndjson import Lines
from .deadline import timeout_at as _timeout_at
from .groups import flatten
from .http_errors import HttpStatus, status_error
from ..settings import Timeout

__all__ = ["OllamaBackend"]


# Errors that come from the network or the server; anything else is a bug and propagates.
_EDGE_ERRORS = (HttpStatus, httpx.HTTPError, ollama.ResponseError, ConnectionError, TimeoutError, ValueError)


# The pool's limiter bounds concurrency; httpx's own cap would queue silently. Idle connections
# are all kept (for httpx's 5 s expiry): keeping 64 made each burst of 300 streams open, and
# then close, 236 connections again (bench/serve.py's streams).
_LIMITS = httpx.Limits(max_connections=None, max_keepalive_connections=None)


def _status_error(response: httpx.Response) -> HttpStatus:
    """Raised from a response hook, so the status and ``Retry-After`` survive
    (``ollama.ResponseError`` keeps the status but drops ``Retry-After``)."""
    return status_error(response, _ollama_detail(response.text, response.status_code))


def _check_status(response: httpx.Response) -> None:
    if response.status_code >= 400:
        response.read()
        raise _status_error(response)


async def _acheck_status(response: httpx.Response) -> None:
    if response.status_code >= 400:
        await response.aread()
        raise _status_error(response)



def _base_url(host: str) -> str:
    """``host`` as a base URL, with Ollama's defaults: http, port 11434 (443 for https)."""
    if not isinstance(host, str) or not host.strip():
        raise ConfigError(f"an Ollama host is required, e.g. 'http://127.0.0.1:11434', got {host!r}")
    raw = host.strip().rstrip("/")
    parts = urlsplit(raw if "://" in raw else f"http://{raw}")
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"invalid port in Ollama host {host!r}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"an Ollama host must be http(s)://name[:port], got {host!r}")
    if port is None:
        port = 443 if parts.scheme == "https" else 11434
        netloc = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        parts = parts._replace(netloc=f"{netloc}:{port}")
    return urlunsplit(parts)


def _payload(model: object, messages: object) -> list[dict[str, str]]:
    """Validate before any I/O; ``InvalidRequest`` changes nothing."""
    validate_chat(model, messages)
    return [{"role": str.__str__(m.role), "content": str.__str__(m.content)} for m in messages]


class OllamaBackend:
    """One Ollama server. Thread-safe; sync and async calls may be mixed.

    Connections are kept alive: one sync pool, and one async pool per event loop (an httpx
    connection belongs to the loop that opened it). See ``close`` for how async pools end.
    """

    def __init__(self, host: str, *, timeout: Timeout = Timeout(), name: str | None = None) -> None:
        if not isinstance(timeout, Timeout):
            raise ConfigError(f"timeout must be a semroute Timeout, got {timeout!r}")
        self.host = _base_url(host)  # used only to connect: it may carry credentials
        self.name = redact_text(name or self.host)  # what logs, errors and stats show
        self.timeout = timeout
        self._lock = threading.Lock()
        self._client: ollama.Client | None = None
        self._probe: httpx.Client | None = None
        # One async client per event loop: httpx connections belong to the loop that opened them.
        self._aclients: LoopClients = weakref.WeakKeyDictionary()

    def __repr__(self) -> str:
        return f"OllamaBackend({self.name!r})"

    # -- clients ---------------------------------------------------------------------------

    def _httpx_timeout(self) -> httpx.Timeout:
        t = self.timeout
        return httpx.Timeout(connect=t.connect, read=t.effective_read, write=t.effective_read, pool=t.effective_read)

    def _sync(self) -> ollama.Client:
        with self._lock:
            if self._client is None:
                self._client = ollama.Client(
                    self.host,
                    timeout=self._httpx_timeout(),
                    event_hooks={"response": [_check_status]},
                    limits=_LIMITS,
                )
            return self._client

    def _prober(self) -> httpx.Client:
        """The health probe's kept-alive client. ``httpx.get`` built a client per probe, loading
        the CA bundle into a new SSL context each time: the most sampled frame of a gateway's
        health thread, holding the GIL the event loop needs."""
        with self._lock:
            if self._probe is None:
                self._probe = httpx.Client()
            return self._probe

    async def _async(self) -> ollama.AsyncClient:
        """The async client of the running loop, made on first use in that loop."""
        return (await self._entry())[0]

    async def _entry(self) -> _AsyncEntry:
        return await entry_of(self._aclients, self._lock, self._new_async,
                              lambda client: _lean_client(self.host, client, self.timeout))

    def _new_async(self) -> ollama.AsyncClient:
        return ollama.AsyncClient(self.host, timeout=self._httpx_timeout(), event_hooks={"response": [_acheck_status]},
                                  transport=_transport(limits=_LIMITS))

    async def _lean(self) -> Http1 | None:
        """The running loop's lean client for model calls, or None (see ``_lean_client``)."""
        return (await self._entry())[3]

    @contextlib.contextmanager
    def _edge(self) -> Iterator[None]:
        try:
            yield
        except UnicodeEncodeError as exc:  # the request could not be encoded: the caller's fault
            raise InvalidRequest(f"the request to {self.name} cannot be encoded: {exc.reason}") from exc
        except _EDGE_ERRORS as exc:
            raise _translate(exc, self.name) from exc

    def _completion(self, response: ollama.ChatResponse, model: str, started: float) -> Completion:
        return Completion(
            text=response.message.content or "",
            model=response.model or model,
            instance=self.name,
            prompt_tokens=response.prompt_eval_count or 0,
            completion_tokens=response.eval_count or 0,
            duration_ms=(time.perf_counter() - started) * 1000.0,
        )

    def _chunk(self, part: ollama.ChatResponse, model: str) -> Chunk:
        return Chunk(
            text=part.message.content or "",
            done=bool(part.done),
            model=part.model or model,
            instance=self.name,
            prompt_tokens=(part.prompt_eval_count or 0) if part.done else 0,
            completion_tokens=(part.eval_count or 0) if part.done else 0,
        )

    def _deadline_passed(self, started: float, chunks: int) -> BackendTimeout | None:
        total = self.timeout.total
        if total is not None and time.monotonic() - started > total:
            return BackendTimeout(
                f"{self.name} exceeded the total timeout of {total:g}s after {chunks} streamed chunks",
                instance=self.name,
            )
        return None

    # -- sync ------------------------------------------------------------------------------

    def chat(self, model: str, messages: Sequence[Message], *, options: Mapping[str, Any] | None = None) -> Completion:
        """One complete answer; ``options`` are Ollama's model options (temperature, num_predict, ...)."""
        payload = _payload(model, messages)
        started = time.perf_counter()
        with self._edge():
            response = self._sync().chat(model=model, messages=payload, stream=False, options=options)
        return self._completion(response, model, started)

    def stream(self, model: str, messages: Sequence[Message], *, options: Mapping[str, Any] | None = None) -> Iterator[Chunk]:
        """Chunks of the answer; the last has ``done=True`` and the token counts."""
        payload = _payload(model, messages)  # validated now, not at the first next()
        return self._stream(model, payload, options)

    def _stream(self, model: str, payload: list[dict[str, str]], options: Mapping[str, Any] | None) -> Iterator[Chunk]:
        started, chunks, parts = time.monotonic(), 0, None
        try:
            try:
                parts = self._sync().chat(model=model, messages=payload, stream=True, options=options)
                for part in parts:
                    chunk = self._chunk(part, model)
                    if chunk.text or chunk.done:
                        chunks += 1
                        yield chunk
                    if chunk.done:
                        return
                    if (late := self._deadline_passed(started, chunks)) is not None:
                        raise late
            except _EDGE_ERRORS as exc:
                raise _translate(exc, self.name, chunks) from exc
            raise BackendProtocolError(
                f"{self.name} ended the stream without a final chunk after {chunks} chunks", instance=self.name
            )
        finally:
            if parts is not None:
                parts.close()

    # -- async -----------------------------------------------------------------------------

    async def achat(
        self, model: str, messages: Sequence[Message], *, options: Mapping[str, Any] | None = None
    ) -> Completion:
        payload = _payload(model, messages)
        started = time.perf_counter()
        with self._edge():
            async with _timeout_at(self._deadline()):
                lean = await self._lean()
                if lean is not None:
                    return _lean_completion(await _lean_chat(lean, model, payload, options), model, started, self.name)
                response = await (await self._async()).chat(
                    model=model, messages=payload, stream=False, options=options
                )
        return self._completion(response, model, started)


    def astream(self, model: str, messages: Sequence[Message], *, options: Mapping[str, Any] | None = None) -> AsyncIterator[Chunk]:
        return flatten(self.astream_groups(model, messages, options=options))

    def astream_groups(self, model: str, messages: Sequence[Message], *,
                       options: Mapping[str, Any] | None = None) -> AsyncIterator[list[Chunk]]:
        """``astream``'s chunks in the groups that arrived in one read (``semroute.backends.groups``)."""
        body = {"model": model, "messages": _payload(model, messages), "stream": True}
        if options:
            body["options"] = options
        return self._astream_groups(model, body)

    async def _astream_groups(self, model: str, body: dict[str, Any]) -> AsyncIterator[list[Chunk]]:
        """NDJSON straight off the connection: each read's complete lines become one group.

        Not the ``ollama`` client's stream: it builds a pydantic model per line, one line per
        iteration; here a line costs one ``orjson.loads`` and one ``Chunk``. Plain ``http://``
        hosts are read over the lean client (``Http1.open``), others over httpx.
        """
        deadline, chunks, opened, shard = self._deadline(), 0, None, None
        try:
            try:
                # The deadline wraps each await, never a yield: the consumer's time between
                # chunks counts against ``total`` but its code never runs inside our timeout.
                async with _timeout_at(deadline):
                    lean = await self._lean()
                    if lean is None:
                        shard = await self._shard()
                        shard.streams += 1
                    opened = await (_open_lean(lean, body) if lean is not None else self._open_stream(shard, body))
                reads, lines = _reads_of(opened), Lines()
                while True:
                    if deadline is None:  # a timeout context per read is a timer per read
                        data = await reads()
                    else:
                        async with _timeout_at(deadline):
                            data = await reads()
                    group, error = self._group(lines.feed(data if data is not None else b"\n"), model)
                    if group:
                        chunks += len(group)
                        yield group
                    if error is not None:  # after the chunks before it, as they arrived
                        raise error
                    if group and group[-1].done:
                        if isinstance(opened, Streamed):  # the body's end, so the connection is kept
                            await opened.finish()
                        return
                    if data is None:
                        break
            except _EDGE_ERRORS as exc:
                raise _translate(exc, self.name, chunks) from exc
            raise BackendProtocolError(
                f"{self.name} ended the stream without a final chunk after {chunks} chunks", instance=self.name
            )
        finally:
            if shard is not None:
                shard.streams -= 1
            if opened is not None:
                await opened.aclose()

    async def _shard(self) -> _Shard:
        """The stream client with fewest open streams (``loop_clients.shard_of``)."""
        client, _, shards, _ = await self._entry()
        return shard_of(shards, lambda: httpx.AsyncClient(
            base_url=client._client.base_url, headers=client._client.headers, timeout=self._httpx_timeout(),
            event_hooks={"response": [_acheck_status]}, transport=_transport(limits=_LIMITS)))

    async def _open_stream(self, shard: _Shard, body: dict[str, Any]) -> httpx.Response:
        """``POST /api/chat`` (stream) on one of the loop's clients (the ``ollama`` client's own
        connections first): status checked by the response hook."""
        request = shard.http.build_request("POST", "/api/chat", json=body)
        return await shard.http.send(request, stream=True)

    def _group(self, lines: list[bytes], model: str) -> tuple[list[Chunk], Exception | None]:
        """The chunks of one read's lines up to the final one, and the error a line raised (if any)."""
        group: list[Chunk] = []
        try:
            for line in lines:
                chunk = self._chunk_of(orjson.loads(line), model)
                if chunk.text or chunk.done:
                    group.append(chunk)
                    if chunk.done:  # nothing after the final chunk counts
                        break
        except _EDGE_ERRORS as exc:
            return group, exc
        return group, None

    def _chunk_of(self, part: Any, model: str) -> Chunk:
        if not isinstance(part, dict):
            raise ValueError(f"a stream line is not a JSON object: {str(part)[:80]}")
        if err := part.get("error"):
            raise ollama.ResponseError(str(err))
        message = part.get("message") or {}
        done = bool(part.get("done"))
        return Chunk(
            text=(message.get("content") if isinstance(message, dict) else None) or "",
            done=done,
            model=part.get("model") or model,
            instance=self.name,
            prompt_tokens=(part.get("prompt_eval_count") or 0) if done else 0,
            completion_tokens=(part.get("eval_count") or 0) if done else 0,
        )

    async def aembed(self, model: str, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text from ``/api/embed`` (as the model returns it: not normalised here)."""
        if not isinstance(model, str) or not model.strip():
            raise InvalidRequest(f"model must be a non-empty string, got {model!r}")
        with self._edge():
            async with _timeout_at(self._deadline()):
                response = await (await self._async()).embed(model=model, input=list(texts))
        return [list(map(float, row)) for row in response.embeddings]

    def _deadline(self) -> float | None:
        total = self.timeout.total
        return None if total is None else asyncio.get_running_loop().time() + total

    # -- metadata --------------------------------------------------------------------------

    def models(self) -> list[str]:
        with self._edge():
            return [m.model for m in self._sync().list().models if m.model]

    def loaded_models(self) -> list[str]:
        with self._edge():
            return [m.model or m.name or "" for m in self._sync().ps().models if m.model or m.name]

    def health(self) -> bool:
        """True when ``/api/version`` answers 200 within ``timeout.connect``; never raises."""
        try:
            response = self._prober().get(f"{self.host}/api/version", timeout=self.timeout.connect)
        except Exception:  # noqa: BLE001 - health() must never raise
            return False
        return response.status_code == 200

    def close(self) -> None:
        """Close the connections. Idempotent; the backend reopens them if used again.

        Async connections belong to their event loop: ``aclose()`` inside the loop closes them
        at once; otherwise they are closed when the loop shuts down (``asyncio.run`` and
        pytest-asyncio shut down async generators before closing a loop).
        """
        with self._lock:
            client, self._client = self._client, None
            prober, self._probe = self._probe, None
        if client is not None:
            client.close()
        if prober is not None:
            prober.close()
        close_idle_loops(self._aclients, self._lock)

    async def aclose(self) -> None:
        """Close the connections, including the async ones of the running loop."""
        await close_running_loop(self._aclients, self._lock)
        self.close()

    def __enter__(self) -> OllamaBackend:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
