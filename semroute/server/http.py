"""What both APIs share at the HTTP edge: bounded JSON bodies, errors as statuses, disconnects.

``read_json`` reads at most ``max_body_bytes`` and parses one JSON object; ``failure_of`` maps
any exception to a ``Failure`` (status, message, kind, ``Retry-After``) that each API module
writes in its own error shape; ``until_disconnect`` runs a request's work and cancels it when
the client goes away, so an abandoned request stops holding a model slot.
Not here: either API's JSON shapes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Awaitable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import orjson
from starlette.requests import ClientDisconnect, Request

from ..errors import (
    BackendProtocolError,
    BackendTimeout,
    BackendUnavailable,
    EmbeddingError,
    InvalidRequest,
    NoInstanceAvailable,
    Overloaded,
    SemrouteError,
)
from ..redact import redact_text
from .auth import RateLimited, Unauthorized
from .gateway import UnknownModel

__all__ = ["BodyTooLarge", "Failure", "dumps", "failure_of", "read_json", "until_disconnect"]

log = logging.getLogger("semroute.server")
T = TypeVar("T")


class BodyTooLarge(InvalidRequest):
    """The request body is larger than the server accepts."""


class ClientGone(Exception):
    """The client disconnected before its answer was ready."""


@dataclass(frozen=True, slots=True)
class Failure:
    """An error as the HTTP edge sees it. ``kind`` picks the API's error type/code."""

    status: int
    message: str
    kind: str
    retry_after_s: int | None = None


def dumps(value: Any) -> bytes:
    """Compact JSON bytes, as Ollama writes them: ``orjson`` (a streamed line is encoded per chunk,
    ~10 times faster than ``json``); ``json`` only for what orjson refuses (a lone surrogate)."""
    try:
        return orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError
        return json.dumps(value, separators=(",", ":")).encode()


def failure_of(exc: BaseException, *, retry_after_s: int) -> Failure:
    """The status for an error; unknown errors are 500s with a generic message (details are logged).

    The message is redacted (``semroute.redact``) here too: not every error reaching the edge is a
    ``SemrouteError`` (whose messages are redacted when raised), and bodies go to clients.
    """
    failure = _classify(exc, retry_after_s)
    return replace(failure, message=redact_text(failure.message))


def _classify(exc: BaseException, retry_after_s: int) -> Failure:
    if isinstance(exc, Unauthorized):
        return Failure(401, str(exc), "unauthorized")
    if isinstance(exc, RateLimited):
        return Failure(429, str(exc), "rate_limited", max(1, math.ceil(exc.retry_after_s)))
    if isinstance(exc, Overloaded):
        return Failure(503, f"server busy, please try again: {exc}", "overloaded", retry_after_s)
    if isinstance(exc, UnknownModel):
        return Failure(404, str(exc), "model_not_found")
    if isinstance(exc, BodyTooLarge):
        return Failure(413, str(exc), "too_large")
    if isinstance(exc, InvalidRequest):
        return Failure(400, str(exc), "invalid_request")
    if isinstance(exc, BackendProtocolError) and exc.status is not None and 400 <= exc.status < 500:
        return Failure(exc.status, str(exc), "invalid_request" if exc.status != 404 else "model_not_found")
    if isinstance(exc, BackendTimeout):
        return Failure(504, str(exc), "upstream")
    if isinstance(exc, (BackendUnavailable, NoInstanceAvailable)):
        return Failure(503, str(exc), "unavailable", retry_after_s)
    if isinstance(exc, (SemrouteError, EmbeddingError)):
        return Failure(502, str(exc), "upstream")
    log.error("internal error", exc_info=exc)
    return Failure(500, "internal server error", "internal")


def _loads(raw: bytes) -> Any:
    """``orjson`` first (a few times faster than ``json``); ``json`` for what orjson refuses but
    ``json`` reads (UTF-16 bodies, NaN, integers past 64 bits), so accepted bodies stay the same."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


async def read_json(request: Request, max_bytes: int) -> dict[str, Any]:
    """The body as a JSON object; ``BodyTooLarge`` past ``max_bytes``, ``InvalidRequest`` if not JSON."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise BodyTooLarge(f"request body of {declared} bytes is over the limit of {max_bytes}")
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > max_bytes:
            raise BodyTooLarge(f"request body is over the limit of {max_bytes} bytes")
    try:
        payload = _loads(bytes(body) or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"invalid JSON body: {exc}") from exc
    if not isinstance(payload, dict):
        raise InvalidRequest("request body must be a JSON object")
    return payload


async def until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """``await work``, cancelled if the client disconnects first (then ``ClientGone``)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            return task.result()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise ClientGone()
    finally:
        watcher.cancel()
        if not task.done():  # we were cancelled ourselves (shutdown): take the work down too
            task.cancel()


async def _disconnected(request: Request) -> None:
    """Returns once the client has gone (the body is already read, so only a disconnect comes)."""
    try:
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                return
    except ClientDisconnect:
        return
