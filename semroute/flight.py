"""Single-flight: concurrent identical misses wait for one LLM call instead of making N.

Keyed by the exact-tier key. The first caller (the leader) runs the call; followers wait for
its result or its error. This is an in-process coalescer (threads and asyncio tasks); the
Redis issue adds a cross-process one behind the same shape.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Generic, TypeVar

__all__ = ["SingleFlight", "AsyncSingleFlight"]

T = TypeVar("T")


class SingleFlight(Generic[T]):
    """Thread-based coalescing of calls with the same key."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[str, Future[T]] = {}

    def do(self, key: str, fn: Callable[[], T], *, wait_s: float | None = None) -> tuple[T, bool]:
        """Run ``fn`` once per key at a time; returns (result, shared) where shared means a follower.

        A follower waits at most ``wait_s`` seconds for the leader (``TimeoutError`` after).
        """
        with self._lock:
            future = self._calls.get(key)
            leader = future is None
            if leader:
                future = self._calls[key] = Future()
        assert future is not None
        if not leader:
            return future.result(timeout=wait_s), True
        try:
            result = fn()
        except BaseException as exc:
            future.set_exception(exc)
            raise
        else:
            future.set_result(result)
            return result, False
        finally:
            with self._lock:
                self._calls.pop(key, None)


class AsyncSingleFlight(Generic[T]):
    """asyncio coalescing of calls with the same key; safe across several event loops."""

    def __init__(self) -> None:
        self._calls: dict[tuple[int, str], asyncio.Future[T]] = {}

    async def do(self, key: str, fn: Callable[[], Awaitable[T]], *, wait_s: float | None = None) -> tuple[T, bool]:
        loop = asyncio.get_running_loop()
        slot = (id(loop), key)
        future = self._calls.get(slot)
        if future is not None:
            return await asyncio.wait_for(asyncio.shield(future), wait_s), True
        future = self._calls[slot] = loop.create_future()
        try:
            result = await fn()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: there may be no followers
            raise
        else:
            future.set_result(result)
            return result, False
        finally:
            self._calls.pop(slot, None)
