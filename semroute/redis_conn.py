"""Talking to Redis safely: building a client from a URL, hiding secrets, and failing open.

Shared by ``RedisStore`` (``semroute.cache.redis``), ``RedisLimiter``
(``semroute.backends.redis_limiter``) and ``RedisSingleFlight`` (``semroute.redis_flight``).

* ``connect(url)`` builds a redis-py client from ``redis://``, ``rediss://`` (TLS) or
  ``unix://`` URLs with password and db honoured, and short socket timeouts so a dead server
  costs a request at most a fraction of a second.
* ``redact_url(url)`` (``semroute.redact``'s, re-exported) is how a URL may appear in logs,
  errors and reprs: userinfo and credential-like query parameters replaced by ``***``.
* ``Outage`` is a small circuit: after a connection error every call fails fast with
  ``StoreUnavailable`` for a back-off period, then one call tries again (redis-py reconnects
  by itself), and the outage is logged once when it starts and once when it ends.

It is not a store, a limiter or a lock. ``redis`` is imported lazily (the ``semroute[redis]``
extra), never by ``import semroute``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from .errors import ConfigError, StoreError, StoreUnavailable
from .redact import redact_url  # the one redaction helper; re-exported for the Redis modules

__all__ = ["Outage", "RedisTimeouts", "connect", "redact_url", "check_binary_client"]

log = logging.getLogger("semroute")

T = TypeVar("T")

_SCHEMES = ("redis", "rediss", "unix")


@dataclass(frozen=True, slots=True)
class RedisTimeouts:
    """Socket timeouts for a Redis client, in seconds.

    Loopback and LAN round trips take well under a millisecond; 0.5 s to connect and 2 s per
    command are long enough for a busy server and short enough that an unreachable one costs a
    request at most that long once per back-off period (``Outage``).
    """

    connect_s: float = 0.5
    command_s: float = 2.0

    def __post_init__(self) -> None:
        for name in ("connect_s", "command_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ConfigError(f"redis {name} must be a positive number of seconds, got {value!r}")


def connect(url: str, *, timeouts: RedisTimeouts = RedisTimeouts()) -> Any:
    """A redis-py client for ``url`` (bytes replies). Does no I/O: the first command connects."""
    if not isinstance(url, str) or urlsplit(url).scheme not in _SCHEMES:
        shown = redact_url(url) if isinstance(url, str) else type(url).__name__
        raise ConfigError(f"a Redis URL must start with redis://, rediss:// or unix://, got {shown!r}")
    try:
        import redis
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ConfigError("Redis support needs the redis package: pip install 'semroute[redis]'") from exc
    try:
        return redis.Redis.from_url(
            url,
            socket_connect_timeout=timeouts.connect_s,
            socket_timeout=timeouts.command_s,
            health_check_interval=30,
            decode_responses=False,
        )
    except ValueError as exc:  # redis-py's message may quote the URL: do not chain its text
        raise ConfigError(f"invalid Redis URL {redact_url(url)!r}") from None if "@" in url else exc


def check_binary_client(client: Any) -> None:
    """Refuse a client that decodes replies: vectors travel as raw bytes."""
    kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})
    if kwargs.get("decode_responses"):
        raise ConfigError("the Redis client must be created with decode_responses=False (vectors are bytes)")


def describe(client: Any) -> str:
    """Where a client points, without secrets: ``host:port/db`` or the socket path."""
    kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})
    if "path" in kwargs:
        return f"unix:{kwargs['path']}"
    return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"


class Outage:
    """Fail fast while Redis is known to be down, retry after a back-off, log once per outage.

    ``backoff_s`` doubles from ``min_backoff_s`` up to ``max_backoff_s`` while attempts keep
    failing. ``errors`` counts failed calls (including the fast ones) for metrics.
    """

    def __init__(
        self,
        where: str,
        *,
        min_backoff_s: float = 0.25,
        max_backoff_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.where = where
        self.min_backoff_s = min_backoff_s
        self.max_backoff_s = max_backoff_s
        self._clock = clock
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._retry_at = 0.0
        self._backoff = min_backoff_s
        self.errors = 0
        self.outages = 0

    @property
    def down(self) -> bool:
        return self._down_since is not None

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one Redis call; connection trouble becomes ``StoreUnavailable``, other errors ``StoreError``."""
        import redis

        self._check()
        try:
            result = fn(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            self._failed()
            raise StoreUnavailable(f"Redis at {self.where} is unreachable ({type(exc).__name__})") from exc
        except redis.RedisError as exc:
            # Not an outage (a script or type error): report it, do not back off.
            raise StoreError(f"Redis at {self.where} refused a command ({type(exc).__name__}: {exc})") from exc
        self._succeeded()
        return result

    def _check(self) -> None:
        with self._lock:
            if self._down_since is None or self._clock() >= self._retry_at:
                return  # up, or time for one more attempt
            self.errors += 1
        raise StoreUnavailable(f"Redis at {self.where} is unreachable (retrying shortly)")

    def _failed(self) -> None:
        with self._lock:
            self.errors += 1
            now = self._clock()
            if self._down_since is None:
                self._down_since = now
                self._backoff = self.min_backoff_s
                self.outages += 1
                log.warning("Redis at %s is unreachable; answering without it and retrying", self.where)
            else:
                self._backoff = min(self.max_backoff_s, self._backoff * 2)
            self._retry_at = now + self._backoff

    def _succeeded(self) -> None:
        if self._down_since is None:
            return
        with self._lock:
            if self._down_since is not None:
                log.warning("Redis at %s is back after %.1f s", self.where, self._clock() - self._down_since)
                self._down_since = None
