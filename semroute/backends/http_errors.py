"""How an HTTP backend's failures become ``BackendError``s: one mapping for every upstream kind.

Both backends (Ollama's API and OpenAI-compatible servers) speak HTTP through httpx, so a status,
a timeout or a lost connection means the same thing from either, and the pool's failover reads
only the ``BackendError`` subclass. This module holds that mapping and the ``Retry-After`` parser;
it does not talk to any server.

* connection refused or lost, HTTP 429/502/503 -> ``BackendUnavailable`` (``retry_after`` kept)
* connect/read/total timeouts, HTTP 504          -> ``BackendTimeout``
* any other status, a bad body                   -> ``BackendProtocolError(status=)``
"""

from __future__ import annotations

import email.utils
import time

import httpx

from ..errors import BackendError, BackendProtocolError, BackendTimeout, BackendUnavailable

__all__ = ["UNAVAILABLE_STATUSES", "HttpStatus", "retry_after", "status_error", "translate"]

UNAVAILABLE_STATUSES = frozenset({429, 502, 503})


class HttpStatus(Exception):
    """An error status with what the failover needs: the status, ``Retry-After`` and a short detail."""

    def __init__(self, status: int, body: str, retry_after: float | None, detail: str | None = None) -> None:
        super().__init__(f"HTTP {status}: {body[:200]}")
        self.status = status
        self.retry_after = retry_after
        self.detail = body[:200] if detail is None else detail


def retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds: a number of seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def status_error(response: httpx.Response, detail: str | None = None) -> HttpStatus:
    """The ``HttpStatus`` of a read error response (its body and ``Retry-After`` kept)."""
    return HttpStatus(response.status_code, response.text, retry_after(response.headers.get("retry-after")), detail)


def translate(exc: BaseException, instance: str, chunks: int = 0) -> BackendError:
    """The ``BackendError`` for an error from the network or the server (``chunks`` already given)."""
    if isinstance(exc, BackendError):
        return exc
    where = f" after {chunks} streamed chunks" if chunks else ""
    if isinstance(exc, HttpStatus):
        message = f"{instance} answered HTTP {exc.status}{where}: {exc.detail}"
        if exc.status in UNAVAILABLE_STATUSES:
            return BackendUnavailable(message, instance=instance, retry_after=exc.retry_after)
        if exc.status == 504:
            return BackendTimeout(message, instance=instance)
        return BackendProtocolError(message, instance=instance, status=exc.status)
    if isinstance(exc, (httpx.TimeoutException, TimeoutError)):
        return BackendTimeout(f"{instance} timed out{where}: {type(exc).__name__} {exc}", instance=instance)
    if isinstance(exc, (httpx.ConnectError, ConnectionError)):
        return BackendUnavailable(f"cannot connect to {instance}: {exc}", instance=instance)
    if isinstance(exc, (httpx.NetworkError, httpx.RemoteProtocolError)):
        return BackendUnavailable(f"connection to {instance} lost{where}: {exc}", instance=instance)
    return BackendProtocolError(
        f"unexpected answer from {instance}{where}: {type(exc).__name__}: {exc}", instance=instance
    )
