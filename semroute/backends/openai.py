"""``OpenAIBackend``: one OpenAI-compatible server (vLLM, llama.cpp's server, TGI) behind the ``Backend`` seam.

It speaks ``/v1/chat/completions`` (JSON, or SSE when streaming), ``/v1/models`` (its models,
all of them loaded: such a server serves what it started with) and ``/v1/embeddings``, over
httpx. Failures leave as ``BackendError``s naming the instance, as ``OllamaBackend``'s do:
connection refused or lost, 429/502/503 -> ``BackendUnavailable`` (``Retry-After`` kept);
timeouts and 504 -> ``BackendTimeout``; other statuses and bad bodies -> ``BackendProtocolError``.
Ollama's option names map to OpenAI's (``num_predict`` -> ``max_tokens``). It does not choose
instances, count slots or retry (the pool does).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import weakref
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from ..errors import ConfigError
from ..request import validate_chat
from ..types import Chunk, Completion, Message
from .asyncio_net import transport
from .http_errors import HttpStatus, status_error, translate as _translate
from ..settings import Timeout

__all__ = ["OpenAIBackend"]

# How long a health probe may wait for /v1/models once connected (see ``health``); a guess, not a measurement.
_HEALTH_READ_S = 15.0
_OPTION_NAMES = {"num_predict": "max_tokens", "temperature": "temperature", "top_p": "top_p", "seed": "seed",
                 "stop": "stop", "frequency_penalty": "frequency_penalty", "presence_penalty": "presence_penalty"}


_EDGE = (HttpStatus, httpx.HTTPError, ConnectionError, TimeoutError, ValueError, KeyError, IndexError, TypeError)


def _base_url(host: str) -> str:
    raw = host.strip().rstrip("/") if isinstance(host, str) else ""
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"an OpenAI-compatible server is http(s)://name[:port][/v1], got {host!r}")
    return raw if raw.endswith("/v1") else f"{raw}/v1"


def _body(model: str, messages: Sequence[Message], options: Mapping[str, Any] | None, stream: bool) -> dict[str, Any]:
    validate_chat(model, messages)
    body: dict[str, Any] = {"model": model, "messages": [{"role": m.role, "content": m.content} for m in messages],
                            "stream": stream}
    if stream:
        body["stream_options"] = {"include_usage": True}
    for key, value in (options or {}).items():
        if key in _OPTION_NAMES:
            body[_OPTION_NAMES[key]] = value
    return body


def _sse_data(line: str) -> dict[str, Any] | None:
    """The JSON of one ``data:`` line; None for other lines and ``[DONE]``."""
    if not line.startswith("data:"):
        return None
    data = line[5:].strip()
    if not data or data == "[DONE]":
        return None
    event = json.loads(data)
    if "error" in event:
        raise HttpStatus(500, json.dumps(event["error"]), None)
    return event


@dataclass(slots=True)
class _StreamState:
    """What a stream has told so far: the model's name, usage, whether it finished, chunks given."""

    model: str
    usage: dict[str, Any] = field(default_factory=dict)
    finished: bool = False
    chunks: int = 0


class OpenAIBackend:
    """One OpenAI-compatible server. Thread-safe; sync and async calls may be mixed."""

    def __init__(self, host: str, *, timeout: Timeout = Timeout(), name: str | None = None,
                 api_key: str | None = None) -> None:
        if not isinstance(timeout, Timeout):
            raise ConfigError(f"timeout must be a semroute Timeout, got {timeout!r}")
        self.base = _base_url(host)
        self.name = name or self.base
        self.timeout = timeout
        self._headers = {} if api_key is None else {"authorization": f"Bearer {api_key}"}
        self._lock = threading.Lock()
        self._client: httpx.Client | None = None
        self._aclients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary())

    def __repr__(self) -> str:
        return f"OpenAIBackend({self.base!r})"

    def _limits(self) -> dict[str, Any]:
        t = self.timeout
        return dict(timeout=httpx.Timeout(connect=t.connect, read=t.effective_read, write=t.effective_read,
                                          pool=t.effective_read),
                    limits=httpx.Limits(max_connections=None, max_keepalive_connections=None), headers=self._headers)

    def _sync(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(**self._limits())
            return self._client

    def _async(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._aclients.get(loop)
            if client is None:
                options = self._limits()  # over plain asyncio sockets, as OllamaBackend's (see asyncio_net)
                client = self._aclients[loop] = httpx.AsyncClient(**options, transport=transport(limits=options["limits"]))
            return client

    @contextlib.contextmanager
    def _edge(self, state: _StreamState | None = None) -> Iterator[None]:
        try:
            yield
        except _EDGE as exc:
            raise _translate(exc, self.name, state.chunks if state else 0) from exc

    @staticmethod
    def _check(response: httpx.Response) -> None:
        if response.status_code >= 400:
            raise status_error(response)

    def _completion(self, data: Mapping[str, Any], model: str, started: float) -> Completion:
        usage = data.get("usage") or {}
        return Completion(text=data["choices"][0]["message"].get("content") or "", model=data.get("model") or model,
                          instance=self.name, prompt_tokens=int(usage.get("prompt_tokens") or 0),
                          completion_tokens=int(usage.get("completion_tokens") or 0),
                          duration_ms=(time.perf_counter() - started) * 1000.0)

    def _parts(self, event: Mapping[str, Any], state: _StreamState) -> Iterator[Chunk]:
        """The text chunks of one SSE event; ``state`` collects the model, usage and finish."""
        state.model = event.get("model") or state.model
        state.usage = event.get("usage") or state.usage
        for choice in event.get("choices") or ():
            text = (choice.get("delta") or {}).get("content") or ""
            if text:
                state.chunks += 1
                yield Chunk(text=text, model=state.model, instance=self.name)
            state.finished = state.finished or choice.get("finish_reason") is not None

    def _last(self, state: _StreamState) -> Chunk:
        if not state.finished:
            raise _translate(HttpStatus(502, "the stream ended without a finish_reason", None), self.name, state.chunks)
        return Chunk(text="", done=True, model=state.model, instance=self.name,
                     prompt_tokens=int(state.usage.get("prompt_tokens") or 0),
                     completion_tokens=int(state.usage.get("completion_tokens") or 0))

    # -- sync --------------------------------------------------------------------------------

    def chat(self, model: str, messages: Sequence[Message], *, options: Mapping[str, Any] | None = None) -> Completion:
        body, started = _body(model, messages, options, False), time.perf_counter()
        with self._edge():
            response = self._sync().post(f"{self.base}/chat/completions", json=body)
            self._check(response)
            return self._completion(response.json(), model, started)

    def stream(self, model: str, messages: Sequence[Message], *, options: Mapping[str, Any] | None = None) -> Iterator[Chunk]:
        body = _body(model, messages, options, True)
        return self._stream(model, body)

    def _stream(self, model: str, body: dict[str, Any]) -> Iterator[Chunk]:
        state = _StreamState(model)
        with self._edge(state), self._sync().stream("POST", f"{self.base}/chat/completions", json=body) as response:
            if response.status_code >= 400:
                response.read()
                self._check(response)
            for line in response.iter_lines():
                if (event := _sse_data(line)) is not None:
                    yield from self._parts(event, state)
        yield self._last(state)

    def models(self) -> list[str]:
        with self._edge():
            response = self._sync().get(f"{self.base}/models")
            self._check(response)
            return [str(m["id"]) for m in response.json()["data"]]

    def loaded_models(self) -> list[str]:
        return self.models()  # an OpenAI-compatible server serves the models it started with

    def health(self) -> bool:
        # llama.cpp's server answers /v1/models only between generation steps: a busy instance
        # can take seconds, so the read part of a probe gets longer than the connect timeout.
        timeout = httpx.Timeout(self.timeout.connect, read=max(self.timeout.connect, _HEALTH_READ_S))
        try:
            return self._sync().get(f"{self.base}/models", timeout=timeout).status_code == 200
        except Exception:  # noqa: BLE001 - health() must never raise
            return False

    # -- async -------------------------------------------------------------------------------

    async def achat(self, model: str, messages: Sequence[Message], *,
                    options: Mapping[str, Any] | None = None) -> Completion:
        body, started = _body(model, messages, options, False), time.perf_counter()
        with self._edge():
            response = await self._async().post(f"{self.base}/chat/completions", json=body)
            self._check(response)
            return self._completion(response.json(), model, started)

    def astream(self, model: str, messages: Sequence[Message], *, options: Mapping[str, Any] | None = None) -> AsyncIterator[Chunk]:
        body = _body(model, messages, options, True)
        return self._astream(model, body)

    async def _astream(self, model: str, body: dict[str, Any]) -> AsyncIterator[Chunk]:
        state = _StreamState(model)
        with self._edge(state):
            async with self._async().stream("POST", f"{self.base}/chat/completions", json=body) as response:
                if response.status_code >= 400:
                    await response.aread()
                    self._check(response)
                async for line in response.aiter_lines():
                    if (event := _sse_data(line)) is not None:
                        for chunk in self._parts(event, state):
                            yield chunk
        yield self._last(state)

    async def aembed(self, model: str, texts: Sequence[str]) -> list[list[float]]:
        with self._edge():
            response = await self._async().post(f"{self.base}/embeddings", json={"model": model, "input": list(texts)})
            self._check(response)
            rows = sorted(response.json()["data"], key=lambda row: row["index"])
            return [list(map(float, row["embedding"])) for row in rows]

    # -- lifetime ----------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    async def aclose(self) -> None:
        with self._lock:
            client = self._aclients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()
        self.close()
