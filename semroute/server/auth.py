"""Tenants: who is calling (bearer key -> namespace) and whether they may call now.

``Tenants.identify`` maps an ``Authorization: Bearer KEY`` header to a ``Tenant`` by the key's
SHA-256 (the key is hashed on arrival and never stored, logged or echoed). With no keys
configured every request is the anonymous tenant in the router's default namespace.
``Tenants.admit`` applies the key's limits: a token bucket for its rate and a count of its
requests in flight. Both raise typed errors the API modules turn into their own shapes:
``Unauthorized`` (401) and ``RateLimited`` (429 with ``Retry-After``).

Limits are kept in this process (with ``--workers N`` each worker enforces them separately).
Not here: what a namespace may see (the router isolates namespaces by construction).
"""

from __future__ import annotations

import contextlib
import hmac
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..errors import Overloaded, SemrouteError
from .settings import ApiKey, key_digest

__all__ = ["Tenant", "Tenants", "Unauthorized", "RateLimited"]


class Unauthorized(SemrouteError):
    """The request has no API key, or one the server does not know."""


class RateLimited(Overloaded):
    """The key's rate or concurrency limit is reached. ``retry_after_s``: when to try again."""

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class Tenant:
    """Who a request is from: a key's name and namespace, or the anonymous tenant (``key=None``)."""

    name: str
    namespace: str | None
    key: ApiKey | None = None


ANONYMOUS = Tenant("anonymous", None)


class _Bucket:
    """A token bucket: ``rate`` tokens per second, at most ``burst``."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.at = float(burst), now

    def take(self, now: float) -> float:
        """0 when a token was taken, else the seconds until one is there."""
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class Tenants:
    """The configured keys and their live limits. Thread-safe."""

    def __init__(self, keys: tuple[ApiKey, ...], *, clock: Callable[[], float] = time.monotonic) -> None:
        self._by_digest = {k.sha256: k for k in keys}
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, _Bucket] = {}
        self._in_flight: dict[str, int] = {}

    @property
    def open(self) -> bool:
        """True when no keys are configured (every request is anonymous)."""
        return not self._by_digest

    def identify(self, authorization: str | None) -> Tenant:
        if self.open:
            return ANONYMOUS
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
        digest = key_digest(token.strip())
        for known, key in self._by_digest.items():  # compare digests in constant time
            if hmac.compare_digest(known, digest):
                return Tenant(key.name, key.namespace, key)
        raise Unauthorized("invalid API key")

    @contextlib.contextmanager
    def admit(self, tenant: Tenant) -> Iterator[None]:
        """Hold one of the key's concurrency slots for the block; raise ``RateLimited`` if none."""
        key = tenant.key
        if key is None:
            yield
            return
        with self._lock:
            self._check_rate(key)
            running = self._in_flight.get(key.sha256, 0)
            if key.concurrency is not None and running >= key.concurrency:
                raise RateLimited(f"key {key.name!r} already has {running} requests in flight", retry_after_s=1.0)
            self._in_flight[key.sha256] = running + 1
        try:
            yield
        finally:
            with self._lock:
                self._in_flight[key.sha256] -= 1

    def in_flight(self, key: ApiKey) -> int:
        with self._lock:
            return self._in_flight.get(key.sha256, 0)

    def _check_rate(self, key: ApiKey) -> None:
        if key.rate_per_s is None:
            return
        now = self._clock()
        bucket = self._buckets.get(key.sha256)
        if bucket is None:
            burst = key.burst if key.burst is not None else max(1, int(key.rate_per_s))
            bucket = self._buckets[key.sha256] = _Bucket(key.rate_per_s, burst, now)
        wait = bucket.take(now)
        if wait > 0:
            raise RateLimited(f"key {key.name!r} is over its rate of {key.rate_per_s:g}/s", retry_after_s=wait)
