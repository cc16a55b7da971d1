"""Single-flight: concurrent identical misses wait for one LLM call instead of making N.

Keyed by the exact-tier key. For a complete answer the first caller (the leader) starts the
call and every caller with the same key gets its result or its error; for a streamed answer
one producer reads the model's stream into a ``Broadcast`` and every caller, however late it
joins, receives the whole stream from its first chunk. This is an in-process coalescer
(threads and asyncio tasks); a cross-process one would sit behind the same shape.

In asyncio the call runs in its own task, so a cancelled caller (the leader included) only
stops waiting: the others still get the answer. The call is cancelled when nobody waits.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Generator, Iterator
from concurrent.futures import Future
from typing import Generic, TypeVar

__all__ = ["SingleFlight", "AsyncSingleFlight", "Broadcast", "StreamFlight", "AsyncStreamFlight"]

T = TypeVar("T")


class SingleFlight(Generic[T]):
    """Thread-based coalescing of calls with the same key."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[str, Future[T]] = {}

    def do(self, key: str, fn: Callable[[], T], *, wait_s: float | None = None,
           on_join: Callable[[], None] | None = None) -> tuple[T, bool]:
        """Run ``fn`` once per key at a time; returns (result, shared) where shared means a follower.

        A follower waits at most ``wait_s`` seconds for the leader (``TimeoutError`` after).
        ``on_join`` is called when a follower starts waiting (before the call ends).
        """
        with self._lock:
            future = self._calls.get(key)
            leader = future is None
            if leader:
                future = self._calls[key] = Future()
        assert future is not None
        if not leader:
            if on_join is not None:
                on_join()
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


class _Call(Generic[T]):
    __slots__ = ("task", "waiters")

    def __init__(self, task: asyncio.Task[T]) -> None:
        self.task = task
        self.waiters = 0


def _retrieve(task: asyncio.Future[object]) -> None:
    # Every waiter may have left before the call failed: mark its error seen, not "never retrieved".
    if not task.cancelled():
        task.exception()


class AsyncSingleFlight(Generic[T]):
    """asyncio coalescing of calls with the same key; safe across several event loops.

    The call runs in a task of its own: a caller that is cancelled stops waiting without
    failing the others, and the call itself is cancelled only when no caller waits any more.
    """

    def __init__(self) -> None:
        self._calls: dict[tuple[int, str], _Call[T]] = {}

    async def do(
        self, key: str, fn: Callable[[], Awaitable[T]], *, wait_s: float | None = None,
        on_join: Callable[[], None] | None = None,
    ) -> tuple[T, bool]:
        """Run ``fn`` once per key at a time; (result, shared); ``wait_s`` and ``on_join`` as for ``SingleFlight``."""
        loop = asyncio.get_running_loop()
        slot = (id(loop), key)
        call = self._calls.get(slot)
        shared = call is not None
        if shared and on_join is not None:
            on_join()
        if call is None:
            call = self._calls[slot] = _Call(loop.create_task(_awaited(fn)))
            call.task.add_done_callback(_retrieve)
            call.task.add_done_callback(lambda _task, c=call: self._forget(slot, c))
        call.waiters += 1
        try:
            return await asyncio.wait_for(asyncio.shield(call.task), wait_s), shared
        finally:
            call.waiters -= 1
            if not call.waiters and not call.task.done():
                call.task.cancel()  # nobody wants the answer any more

    @property
    def in_flight(self) -> int:
        """Calls running now, across event loops."""
        return len(self._calls)

    def waiting(self, key: str) -> int:
        """Callers of the running loop waiting for ``key``'s call (0 when none runs)."""
        call = self._calls.get((id(asyncio.get_running_loop()), key))
        return 0 if call is None else call.waiters

    def _forget(self, slot: tuple[int, str], call: _Call[T]) -> None:
        if self._calls.get(slot) is call:
            del self._calls[slot]


async def _awaited(fn: Callable[[], Awaitable[T]]) -> T:
    return await fn()


class Broadcast(Generic[T]):
    """One producer's items, replayed to every reader from the first item, however late it joins.

    Thread-safe. Readers iterate ``read()`` (threads) or ``aread()`` (the producer's event loop);
    a producer error is raised in every reader after the items before it. ``wanted`` turns
    false once every reader has left, so the producer can stop early.
    """

    def __init__(self) -> None:
        self._items: list[T] = []
        self._done = False
        self._error: BaseException | None = None
        self._cond = threading.Condition()
        self._readers = 0
        self._events: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    # -- producer side ------------------------------------------------------------------

    def publish(self, item: T) -> None:
        with self._cond:
            self._items.append(item)
            self._wake_locked()

    def finish(self, error: BaseException | None = None) -> None:
        with self._cond:
            self._done, self._error = True, error
            self._wake_locked()

    @property
    def wanted(self) -> bool:
        with self._cond:
            return self._readers > 0

    def _wake_locked(self) -> None:
        self._cond.notify_all()
        for loop, event in self._events:
            loop.call_soon_threadsafe(event.set)

    # -- reader side --------------------------------------------------------------------

    def join(self) -> None:
        """Count a reader in before it starts reading (so the producer keeps going)."""
        with self._cond:
            self._readers += 1

    def leave(self) -> None:
        with self._cond:
            self._readers -= 1

    def _next(self, i: int) -> tuple[bool, T | None]:
        """(True, item i) when it exists; (False, None) at the end; raises the producer's error."""
        if i < len(self._items):
            return True, self._items[i]
        if self._error is not None:
            raise self._error
        return False, None

    def read(self) -> Generator[T, None, None]:
        """Every item from the first, blocking for new ones; call ``join`` first. Leaves when closed."""
        i = 0
        try:
            while True:
                with self._cond:
                    self._cond.wait_for(lambda: i < len(self._items) or self._done)
                    more, item = self._next(i)
                if not more:
                    return
                yield item  # type: ignore[misc]
                i += 1
        finally:
            self.leave()

    async def aread(self) -> AsyncGenerator[T, None]:
        """``read`` for the event loop: waits without blocking it; call ``join`` first."""
        event = asyncio.Event()
        entry = (asyncio.get_running_loop(), event)
        with self._cond:
            self._events.append(entry)
        i = 0
        try:
            while True:
                with self._cond:
                    ready = i < len(self._items) or self._done
                    if ready:
                        more, item = self._next(i)
                    else:
                        event.clear()  # cleared under the lock: a publish after this sets it again
                if not ready:
                    await event.wait()
                    continue
                if not more:
                    return
                yield item  # type: ignore[misc]
                i += 1
        finally:
            with self._cond:
                self._events.remove(entry)
            self.leave()


class StreamFlight(Generic[T]):
    """Coalescing of identical streams across threads: one producer thread, every caller reads all.

    The producer runs in its own thread so that a caller who stops reading early (the first
    one included) never starves the others; it stops when every reader has left.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[str, Broadcast[T]] = {}

    def join(self, key: str, produce: Callable[[], Iterator[T]]) -> tuple[Generator[T, None, None], bool]:
        """The stream for ``key`` (started with ``produce`` if none runs) and whether it was shared."""
        with self._lock:
            broadcast = self._flights.get(key)
            shared = broadcast is not None
            if broadcast is None:
                broadcast = self._flights[key] = Broadcast()
            broadcast.join()
        if not shared:
            thread = threading.Thread(target=self._pump, args=(key, broadcast, produce), daemon=True,
                                      name="semroute-stream")
            thread.start()
        return broadcast.read(), shared

    def _pump(self, key: str, broadcast: Broadcast[T], produce: Callable[[], Iterator[T]]) -> None:
        items = produce()
        error: BaseException | None = None
        try:
            for item in items:
                broadcast.publish(item)
                if not broadcast.wanted:
                    break  # every reader left
        except BaseException as exc:  # noqa: BLE001 - handed to every reader
            error = exc
        finally:
            if isinstance(items, Generator):
                items.close()  # gives back the pool slot at once
            with self._lock:
                if self._flights.get(key) is broadcast:
                    del self._flights[key]
            broadcast.finish(error)


class AsyncStreamFlight(Generic[T]):
    """Coalescing of identical streams in event loops: one producer task, every caller reads all."""

    def __init__(self) -> None:
        self._flights: dict[tuple[int, str], tuple[Broadcast[T], asyncio.Task[None]]] = {}

    def join(self, key: str, produce: Callable[[], AsyncIterator[T]]) -> tuple[AsyncGenerator[T, None], bool]:
        """The stream for ``key`` (started with ``produce`` if none runs) and whether it was shared."""
        loop = asyncio.get_running_loop()
        slot = (id(loop), key)
        flight = self._flights.get(slot)
        shared = flight is not None
        if flight is None:
            broadcast: Broadcast[T] = Broadcast()
            task = loop.create_task(self._pump(slot, broadcast, produce))
            flight = self._flights[slot] = (broadcast, task)
        flight[0].join()
        return self._read(*flight), shared

    async def _read(self, broadcast: Broadcast[T], task: asyncio.Task[None]) -> AsyncGenerator[T, None]:
        reader = broadcast.aread()
        try:
            async for item in reader:
                yield item
        finally:
            await reader.aclose()  # leaves now (``async for`` would leave it to the garbage collector)
            if not broadcast.wanted and not task.done():
                task.cancel()  # the last reader left: stop the model call

    async def _pump(self, slot: tuple[int, str], broadcast: Broadcast[T], produce: Callable[[], AsyncIterator[T]]) -> None:
        items = produce()
        error: BaseException | None = None
        try:
            async for item in items:
                broadcast.publish(item)
        except BaseException as exc:  # noqa: BLE001 - handed to every reader (cancellation too)
            error = exc
        if isinstance(items, AsyncGenerator):
            await items.aclose()  # gives back the pool slot at once
        if self._flights.get(slot, (None,))[0] is broadcast:
            del self._flights[slot]
        broadcast.finish(error)
        if isinstance(error, asyncio.CancelledError):
            raise error
