"""Backpressure: per-instance concurrency slots and a bounded FIFO wait queue with a deadline.

``Limiter`` is the seam that grants and returns slots on an instance (Ollama serves
``OLLAMA_NUM_PARALLEL`` requests at a time; beyond that it queues internally or says 503).
``LocalLimiter`` counts slots in this process; a Redis-backed one shares the counts across
processes behind the same methods. Slot calls never block: waiting is the queue's job.

``WaitQueue`` holds requests that found every slot taken, first in first out, at most
``max_length`` of them, each for at most ``timeout_s``; a full queue or a passed deadline is
``Overloaded(queue_length=, waited_s=)``. A ``Waiter`` can be granted from any thread and
waited on from a thread (``wait``) or an event loop (``await_grant``).

This module does not choose instances (``strategy``) or decide health (``health``).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Generic, Protocol, TypeVar, runtime_checkable

from ..errors import Overloaded
from ..settings import QueueSettings

__all__ = ["Limiter", "LocalLimiter", "Waiter", "WaitQueue"]

T = TypeVar("T")


@runtime_checkable
class Limiter(Protocol):
    """Grants and returns concurrency slots on named instances. Never blocks."""

    def try_acquire(self, instance: str, limit: int) -> bool:
        """Take a slot on ``instance`` if fewer than ``limit`` are taken."""
        ...

    def release(self, instance: str) -> None: ...

    def in_flight(self, instance: str) -> int: ...

    def queued(self, since: float | None) -> None:
        """This pool's oldest queued request has waited since wall time ``since`` (None: none waits).

        A shared limiter grants slots to older waiters of other processes first; a local one
        has nothing to share and ignores it.
        """
        ...


class LocalLimiter:
    """Slot counts in this process's memory; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._taken: dict[str, int] = {}

    def try_acquire(self, instance: str, limit: int) -> bool:
        with self._lock:
            taken = self._taken.get(instance, 0)
            if taken >= limit:
                return False
            self._taken[instance] = taken + 1
            return True

    def release(self, instance: str) -> None:
        with self._lock:
            taken = self._taken.get(instance, 0)
            if taken <= 0:
                # A double release would hand out a slot that does not exist.
                raise RuntimeError(f"release of {instance!r} without a slot taken")
            self._taken[instance] = taken - 1

    def in_flight(self, instance: str) -> int:
        with self._lock:
            return self._taken.get(instance, 0)

    def queued(self, since: float | None) -> None:
        """Nothing to do: this process's own FIFO is the only queue."""


class Waiter(Generic[T]):
    """One queued request. Its owner grants it a value or an error once, under the owner's lock."""

    __slots__ = ("request", "enqueued_at", "deadline", "value", "error", "_event", "_loop")

    def __init__(self, request: T, *, enqueued_at: float, deadline: float, in_loop: bool) -> None:
        self.request = request
        self.enqueued_at = enqueued_at
        self.deadline = deadline
        self.value: int | None = None
        self.error: BaseException | None = None
        self._loop = asyncio.get_running_loop() if in_loop else None
        self._event: threading.Event | asyncio.Event = asyncio.Event() if in_loop else threading.Event()

    @property
    def done(self) -> bool:
        return self.value is not None or self.error is not None

    def grant(self, value: int) -> None:
        self.value = value
        self._wake()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self._wake()

    def _wake(self) -> None:
        if self._loop is None:
            self._event.set()
        elif not self._loop.is_closed():
            # Granted from whatever thread released a slot; the event belongs to the loop.
            self._loop.call_soon_threadsafe(self._event.set)

    def wait(self, timeout: float) -> bool:
        """Block this thread until granted or ``timeout`` seconds pass."""
        assert isinstance(self._event, threading.Event)
        return self._event.wait(max(0.0, timeout))

    async def await_grant(self, timeout: float) -> bool:
        """Suspend this task until granted or ``timeout`` seconds pass."""
        assert isinstance(self._event, asyncio.Event)
        try:
            await asyncio.wait_for(self._event.wait(), max(0.0, timeout))
        except asyncio.TimeoutError:
            return False
        return True


class WaitQueue(Generic[T]):
    """A bounded FIFO of ``Waiter``s. Not thread-safe on its own: the owner holds its lock."""

    def __init__(
        self,
        settings: QueueSettings = QueueSettings(),
        *,
        clock: Callable[[], float] = time.monotonic,
        on_head: Callable[[float | None], None] | None = None,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._waiters: deque[Waiter[T]] = deque()
        # Told when the oldest waiter changes (its enqueue time, or None when empty), so a
        # shared limiter can order this queue against other processes' queues.
        self._on_head = on_head

    def __len__(self) -> int:
        return len(self._waiters)

    def __iter__(self) -> Iterator[Waiter[T]]:
        return iter(list(self._waiters))  # a copy: callers remove while iterating

    def enter(self, request: T, *, in_loop: bool = False) -> Waiter[T]:
        """Queue ``request``, or raise ``Overloaded`` at once when the queue is full."""
        if len(self._waiters) >= self.settings.max_length:
            raise Overloaded(
                f"all instances busy and {len(self._waiters)} requests already waiting (max_length)",
                queue_length=len(self._waiters),
                waited_s=0.0,
            )
        now = self._clock()
        waiter = Waiter(request, enqueued_at=now, deadline=now + self.settings.timeout_s, in_loop=in_loop)
        self._waiters.append(waiter)
        if len(self._waiters) == 1 and self._on_head is not None:
            self._on_head(waiter.enqueued_at)
        return waiter

    def leave(self, waiter: Waiter[T]) -> None:
        head = self._waiters[0] if self._waiters else None
        try:
            self._waiters.remove(waiter)
        except ValueError:
            return  # already granted and removed
        if head is waiter and self._on_head is not None:
            self._on_head(self._waiters[0].enqueued_at if self._waiters else None)

    def remaining(self, waiter: Waiter[T]) -> float:
        return waiter.deadline - self._clock()

    def expire(self, waiter: Waiter[T]) -> Overloaded:
        """Remove a waiter whose deadline passed; return the error to raise."""
        self.leave(waiter)
        waited = self._clock() - waiter.enqueued_at
        return Overloaded(
            f"no instance slot freed within {self.settings.timeout_s:g}s ({len(self._waiters)} still waiting)",
            queue_length=len(self._waiters),
            waited_s=waited,
        )
