"""``RedisParts``: what one router shares with every other process through one Redis.

Given ``redis_url`` (``Router(redis_url=...)``, ``[redis] url`` in TOML, ``--redis-url``), a
router builds its parts over one Redis client (one connection pool): the store
(``RedisStore``), one limiter per tier pool (``RedisLimiter``, slots and queue order shared)
and the cross-process single-flight (``RedisSingleFlight``). Each part fails open on its own
when Redis is down. This module only builds and closes them; it decides nothing and does no
I/O until a part is used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from .redis_conn import Outage, connect, redact_url

if TYPE_CHECKING:
    from .backends.redis_limiter import RedisLimiter
    from .cache.redis import RedisStore
    from .redis_flight import RedisSingleFlight

__all__ = ["RedisParts"]


class RedisParts:
    """Builds a router's Redis-backed store, limiters and flight over one client."""

    def __init__(self, url: str) -> None:
        self._url = url
        self.where = redact_url(url)  # how logs and errors may name it
        # One circuit for all parts: one log line per outage, and once the store has seen Redis
        # down the limiters and the flight fail fast too.
        self.outage = Outage(self.where)
        self._client: Any = None
        self._limiters: list[RedisLimiter] = []
        self._flight: RedisSingleFlight | None = None

    def client(self) -> Any:
        """The one client (connects on its first command)."""
        if self._client is None:
            self._client = connect(self._url)
        return self._client

    def store(self, *, max_entries: int, clock: Callable[[], float],
              vector_dtype: Literal["float32", "float16"]) -> RedisStore:
        from .cache.redis import RedisStore

        return RedisStore(self.client(), max_entries=max_entries, clock=clock, vector_dtype=vector_dtype,
                          outage=self.outage)

    def limiter(self, queue: str) -> RedisLimiter:
        """A limiter for one pool; ``queue`` names the pool's cross-process queue (its tier)."""
        from .backends.redis_limiter import RedisLimiter

        limiter = RedisLimiter(self.client(), queue=queue, outage=self.outage)
        self._limiters.append(limiter)
        return limiter

    def flight(self) -> RedisSingleFlight:
        if self._flight is None:
            from .redis_flight import RedisSingleFlight

            self._flight = RedisSingleFlight(self.client(), outage=self.outage)
        return self._flight

    def close(self) -> None:
        """Give back every lease this process holds, stop renewing, close the client."""
        if self._flight is not None:
            self._flight.close()
        for limiter in self._limiters:
            limiter.close()
        if self._client is not None:
            self._client.close()

    def __repr__(self) -> str:
        return f"RedisParts({self.where!r})"
