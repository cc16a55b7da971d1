"""The model call's lean path beside ``OllamaBackend``: ``POST /api/chat`` over ``http1.Http1`` for
plain ``http://`` hosts, a whole answer checked and turned into a ``Completion`` or a stream opened
(``_open_lean``; its body read by ``_reads_of``), and the Ollama error helpers it shares with the
``ollama`` client path (``_ollama_detail``, ``_translate``; ``semroute.backends.ollama`` imports
them from here).

Why a lean path: through httpx and the ``ollama`` client a miss paid about 1 ms more for the same
bytes (see ``http1``). ``OllamaBackend`` keeps one ``Http1`` per event loop beside its ollama
client (``_lean_client`` builds it) and falls back to the ollama client when it is None.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx
import ollama
import orjson

from ..errors import BackendError, BackendProtocolError
from ..settings import Timeout
from ..types import Completion
from .http1 import Http1, Streamed, plain_http
from .ndjson import body_reads
from .http_errors import HttpStatus, translate
from .http_errors import retry_after as _retry_after


def _ollama_detail(body: str, status: int) -> str:
    """Ollama's own error message out of an error body (``{"error": ...}``), else the body's start."""
    try:
        return str(ollama.ResponseError(body, status).error)
    except Exception:  # noqa: BLE001 - a detail is nice to have, never worth failing for
        return body[:200]


def _translate(exc: BaseException, instance: str, chunks: int = 0) -> BackendError:
    """``http_errors.translate``, plus Ollama's error lines inside a stream."""
    if isinstance(exc, ollama.ResponseError):
        where = f" after {chunks} streamed chunks" if chunks else ""
        status = exc.status_code if exc.status_code > 0 else None
        return BackendProtocolError(
            f"{instance} reported an error{where}: {exc.error}", instance=instance, status=status
        )
    return translate(exc, instance, chunks)


def _lean_client(host: str, client: ollama.AsyncClient, timeout: Timeout) -> Http1 | None:
    """The model call's lean HTTP/1.1 client for ``host`` (None when httpx must serve it: TLS,
    credentials in the URL, a proxy from the environment); the ollama client's own headers
    (its ``User-Agent``, an ``OLLAMA_API_KEY`` bearer), without compression."""
    if not plain_http(host):
        return None
    headers = {name: value for name, value in client._client.headers.items()
               if name.lower() not in ("accept-encoding", "host", "content-length", "transfer-encoding")}
    return Http1(host, headers=headers, connect_s=timeout.connect, read_s=timeout.effective_read)


async def _lean_chat(lean: Http1, model: str, payload: list[dict[str, str]],
                     options: Mapping[str, Any] | None) -> Any:
    """``POST /api/chat`` (not streamed) over the lean client: the answer as parsed JSON, or
    the same errors the ollama client path raises (``HttpStatus`` for an error status)."""
    body: dict[str, Any] = {"model": model, "messages": payload, "stream": False}
    if options:
        body["options"] = options
    reply = await lean.post("/api/chat", orjson.dumps(body))
    if reply.status >= 300:
        text = reply.body.decode("utf-8", "replace")
        raise HttpStatus(reply.status, text, _retry_after(reply.headers.get("retry-after")),
                         _ollama_detail(text, reply.status))
    return orjson.loads(reply.body)


def _lean_completion(part: Any, model: str, started: float, instance: str) -> Completion:
    """``OllamaBackend._completion`` for a parsed answer: Ollama's fields, checked as the ollama client's
    ``ChatResponse`` checks them (an answer without a message is a bad answer)."""
    if not isinstance(part, dict):
        raise BackendProtocolError(f"unexpected answer from {instance}: not a JSON object", instance=instance)
    if err := part.get("error"):
        raise _translate(ollama.ResponseError(str(err)), instance)
    message = part.get("message")
    if not isinstance(message, dict) or not isinstance(message.get("content") or "", str):
        raise BackendProtocolError(f"unexpected answer from {instance}: no message", instance=instance)
    return Completion(
        text=message.get("content") or "",
        model=part.get("model") or model,
        instance=instance,
        prompt_tokens=part.get("prompt_eval_count") or 0,
        completion_tokens=part.get("eval_count") or 0,
        duration_ms=(time.perf_counter() - started) * 1000.0,
    )


async def _open_lean(lean: Http1, body: dict[str, Any]) -> Streamed:
    """A streamed ``POST /api/chat`` over the lean client; an error status raises ``HttpStatus``
    (with Ollama's detail and ``Retry-After``) before any chunk, as the httpx path's hook does."""
    opened = await lean.open("/api/chat", orjson.dumps(body))
    if opened.status >= 400:
        try:
            text = (await opened.read_all()).decode("utf-8", "replace")
        finally:
            await opened.aclose()
        raise HttpStatus(opened.status, text, _retry_after(opened.headers.get("retry-after")),
                         _ollama_detail(text, opened.status))
    return opened


def _reads_of(opened: Streamed | httpx.Response) -> Callable[[], Awaitable[bytes | None]]:
    """The next read of a stream's body (None at its end), whichever client opened it."""
    if isinstance(opened, Streamed):
        return opened.read
    reads = body_reads(opened)
    return lambda: anext(reads, None)
