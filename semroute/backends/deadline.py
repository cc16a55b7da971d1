"""A caller's per-request deadline: how long one request may take in all, wherever it waits.

``Deadline`` is an absolute time on the pool's clock, made from ``deadline_s`` (seconds from
now; ``None``: no deadline). The pool consults it while the request is queued, before each
attempt, in backoff sleeps, around each backend call and between streamed chunks, and raises
``DeadlineExceeded`` (a ``BackendTimeout``) once it has passed. ``call_before`` runs one
blocking backend call in a helper thread so that a sync caller gets its answer or the error
at the deadline even while an instance hangs; the call itself runs on (its slot stays taken,
because the instance is still working on it) and ``settle`` records its outcome when it ends;
``await_before`` is the same bound for one await on the event loop.

This module does not choose instances, retry or count slots: that is the pool.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from ..errors import DeadlineExceeded, InvalidRequest

__all__ = ["Deadline", "TimeoutAt", "await_before", "call_before", "check_deadline_s", "timeout_at"]

T = TypeVar("T")


def check_deadline_s(deadline_s: object) -> float | None:
    """``deadline_s`` as given by a caller: None, or a positive finite number of seconds."""
    if deadline_s is None:
        return None
    if isinstance(deadline_s, bool) or not isinstance(deadline_s, (int, float)) or not 0 < deadline_s < math.inf:
        raise InvalidRequest(f"deadline_s must be a positive number of seconds or None, got {deadline_s!r}")
    return float(deadline_s)


class Deadline:
    """``seconds`` from now on ``clock`` (None: never). Cheap to make and to ask."""

    __slots__ = ("_clock", "until", "seconds")

    def __init__(self, seconds: float | None, clock: Callable[[], float]) -> None:
        self.seconds = check_deadline_s(seconds)
        self._clock = clock
        self.until = None if self.seconds is None else clock() + self.seconds

    def remaining(self) -> float:
        return math.inf if self.until is None else self.until - self._clock()

    def bound(self, wait_s: float) -> float:
        """``wait_s`` shortened to the time left (never below zero)."""
        return max(0.0, min(wait_s, self.remaining()))

    def check(self, where: str) -> None:
        if self.until is not None and self._clock() >= self.until:
            raise self.error(where)

    def error(self, where: str) -> DeadlineExceeded:
        return DeadlineExceeded(f"the request's deadline passed {where}")


class _Result(Generic[T]):
    """One helper-thread call's outcome, claimed once: by the waiting caller or by the late call."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.value: T | None = None
        self.error: BaseException | None = None
        self.abandoned = False


def call_before(
    fn: Callable[[], T], deadline: Deadline, *, where: str, settle: Callable[[T | None, BaseException | None], None]
) -> T:
    """``fn()`` if it returns (or raises) before ``deadline``; else ``DeadlineExceeded``.

    Without a deadline ``fn`` runs inline. Past the deadline the caller gets the error at once
    and ``settle(value, error)`` is called from the helper thread when ``fn`` finally ends, so
    the pool can release the slot and learn the instance's outcome then.
    """
    if deadline.until is None:
        return fn()
    box: _Result[T] = _Result()

    def run() -> None:
        value: T | None = None
        error: BaseException | None = None
        try:
            value = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller or to settle
            error = exc
        with box.lock:
            box.value, box.error = value, error
            box.done.set()
            late = box.abandoned
        if late:
            settle(value, error)

    threading.Thread(target=run, name="semroute-deadline-call", daemon=True).start()
    box.done.wait(max(0.0, deadline.remaining()))
    with box.lock:
        if not box.done.is_set():
            box.abandoned = True
            raise deadline.error(where)
    if box.error is not None:
        raise box.error
    return box.value  # type: ignore[return-value]


class TimeoutAt:
    """``asyncio.timeout_at`` for Python 3.10: cancel the task at ``when``, raise TimeoutError."""

    def __init__(self, when: float | None) -> None:
        self._when, self._handle, self._fired = when, None, False

    async def __aenter__(self) -> None:
        if self._when is not None:
            task = asyncio.current_task()
            assert task is not None
            self._handle = asyncio.get_running_loop().call_at(self._when, self._fire, task)

    def expired(self) -> bool:
        return self._fired

    def _fire(self, task: asyncio.Task[object]) -> None:
        self._fired = True
        task.cancel()

    async def __aexit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if self._handle is not None:
            self._handle.cancel()
        if self._fired and exc_type is asyncio.CancelledError:
            raise TimeoutError from exc


timeout_at = getattr(asyncio, "timeout_at", TimeoutAt)


async def await_before(awaitable: Awaitable[T], deadline: Deadline, *, where: str = "while an instance answered") -> T:
    """Await ``awaitable``, cancelled with ``DeadlineExceeded`` when the deadline passes.

    A timeout context, not ``wait_for``: on Python 3.11 ``wait_for`` wraps every await in a task
    of its own, and a stream with a deadline awaits once per upstream read (measured: 14.5
    against 7.2 µs per read). A ``TimeoutError`` raised inside ``awaitable`` (not by this
    deadline) passes through unchanged.
    """
    if deadline.until is None:
        return await awaitable
    bound = timeout_at(asyncio.get_running_loop().time() + max(0.0, deadline.remaining()))
    try:
        async with bound:
            return await awaitable
    except TimeoutError:
        if bound.expired():
            raise deadline.error(where) from None
        raise
