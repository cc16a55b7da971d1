"""Instance health: a circuit breaker per instance and background health checks.

``CircuitBreaker`` is an I/O-free state machine driven by request outcomes and a clock::

    closed --N failures within failure_window_s--> open --cooldown elapsed--> half-open
       ^                                             ^                            |
       +------------------ probe succeeds -----------|------ probe fails ---------+
                                                     (cooldown doubles, capped)

An incident is one trip: failures of requests that were already in flight when the breaker
opened (or that arrive while it is open) are part of the same incident and neither re-open it
nor lengthen the cooldown; only a failed half-open probe (or a failed health check after the
cooldown) escalates. Failures are forgotten ``failure_window_s`` after they happened, so an
instance that failed once and then received no traffic does not carry that failure forever.

Fast 503s and connection errors are failures like any other, so an instance that fails
quickly cannot look idle and attract traffic. A ``Retry-After`` from the instance holds the
breaker open for at least that long.

``probe`` asks one backend for health, models (``/api/tags``) and loaded models (``/api/ps``);
``HealthThread`` and ``AsyncHealthTask`` run a check function periodically until stopped.
This module does not choose instances (that is ``strategy``) or count slots (``limiter``).
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from ..errors import ConfigError
from ..settings import BreakerSettings
from .base import Backend

__all__ = ["CircuitBreaker", "Probe", "probe", "HealthThread", "AsyncHealthTask"]

BreakerState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Failures within a window open the circuit for a cooldown that grows with each failed probe.

    Not thread-safe on its own: the pool calls it under its lock. ``clock`` returns seconds.
    Callers that know when a request was sent pass ``dispatched_at`` (the value ``on_dispatch``
    returned) to the outcome methods, so the outcome of a request sent before the breaker
    opened is told apart from the outcome of the half-open probe.
    """

    def __init__(self, settings: BreakerSettings = BreakerSettings(), *, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._clock = clock
        self._failures: deque[float] = deque()  # times of failures since the last success
        self._trips = 0  # openings since the last success; sets the cooldown
        self._open_until = 0.0
        self._tripped_at = -math.inf
        self._probe_at: float | None = None  # when the half-open probe in flight was sent

    @property
    def failures(self) -> int:
        """Failures since the last success, within the last ``failure_window_s`` seconds."""
        self._forget(self._clock())
        return len(self._failures)

    def _forget(self, now: float) -> None:
        horizon = now - self.settings.failure_window_s
        while self._failures and self._failures[0] <= horizon:
            self._failures.popleft()

    @property
    def state(self) -> BreakerState:
        if self._clock() < self._open_until:
            return "open"
        return "half_open" if self._trips else "closed"

    def available(self) -> bool:
        """May a request be sent now? (A half-open breaker admits one probe at a time.)"""
        if self._clock() < self._open_until:
            return False
        return not (self._trips and self._probe_at is not None)

    def on_dispatch(self) -> float:
        """A request was sent; in half-open state it is the probe. Returns its dispatch time."""
        now = self._clock()
        if self._trips and now >= self._open_until:
            self._probe_at = now
        return now

    def _is_probe(self, dispatched_at: float | None) -> bool:
        return self._probe_at is not None and (dispatched_at is None or dispatched_at >= self._probe_at)

    def record_success(self) -> None:
        self._failures.clear()
        self._trips = 0
        self._probe_at = None
        self._open_until = 0.0
        self._tripped_at = -math.inf

    def record_failure(self, *, retry_after: float | None = None, dispatched_at: float | None = None) -> None:
        now = self._clock()
        if retry_after is not None and retry_after > 0:
            # The instance said when to come back; never earlier than that.
            self._open_until = max(self._open_until, now + retry_after)
        if dispatched_at is not None and dispatched_at < self._tripped_at:
            return  # sent before this incident was declared: part of it, not a new one
        was_probe = self._is_probe(dispatched_at)
        if was_probe:
            self._probe_at = None
        self._forget(now)
        self._failures.append(now)
        if not was_probe and now < self._open_until:
            return  # already open: the same incident
        if was_probe or self._trips or len(self._failures) >= self.settings.failure_threshold:
            self._open(now)

    def _open(self, now: float) -> None:
        s = self.settings
        cooldown = min(s.max_cooldown_s, s.cooldown_s * s.backoff_factor**self._trips)
        self._trips += 1
        self._tripped_at = now
        self._probe_at = None
        self._open_until = max(self._open_until, now + cooldown)

    def trip(self) -> None:
        """Open now, whatever the count (a failed health check: the instance is unreachable).

        While already open this is the same incident: the cooldown is not lengthened.
        """
        now = self._clock()
        if now < self._open_until:
            return
        self._forget(now)
        self._failures.append(now)
        self._open(now)

    def half_open_now(self) -> None:
        """End an open period early (a health check saw the instance come back)."""
        if self._trips:
            self._open_until = min(self._open_until, self._clock())
            self._probe_at = None

    def record_release(self, *, dispatched_at: float | None = None) -> None:
        """A request ended with neither success nor failure (the caller stopped reading)."""
        if self._is_probe(dispatched_at):
            self._probe_at = None

    def reopens_in(self) -> float:
        return max(0.0, self._open_until - self._clock())


@dataclass(frozen=True, slots=True)
class Probe:
    """One health check's result: reachable or not, and the models it has and has loaded."""

    healthy: bool
    models: tuple[str, ...] | None = None
    loaded: tuple[str, ...] | None = None


def probe(backend: Backend) -> Probe:
    """Ask one instance for health, ``/api/tags`` and ``/api/ps``. Never raises."""
    try:
        if not backend.health():
            return Probe(False)
        models = tuple(backend.models())
        try:
            loaded: tuple[str, ...] | None = tuple(backend.loaded_models())
        except Exception:  # noqa: BLE001 - /api/ps is an optimisation; its failure is not ill health
            loaded = None
        return Probe(True, models, loaded)
    except Exception:  # noqa: BLE001 - a probe reports, it never raises
        return Probe(False)


class HealthThread:
    """Calls ``check()`` every ``interval_s`` seconds in a daemon thread until ``stop()``."""

    def __init__(self, check: Callable[[], None], *, interval_s: float, name: str = "semroute-health") -> None:
        if interval_s <= 0:
            raise ConfigError("health check interval_s must be > 0")
        self._check = check
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> HealthThread:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._check()
            except Exception:  # noqa: BLE001 - a failed round must not kill the checker
                pass
            self._stop.wait(self._interval)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()


class AsyncHealthTask:
    """Awaits ``check()`` every ``interval_s`` seconds in an asyncio task until ``stop()``."""

    def __init__(self, check: Callable[[], Awaitable[None]], *, interval_s: float) -> None:
        if interval_s <= 0:
            raise ConfigError("health check interval_s must be > 0")
        self._check = check
        self._interval = interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> AsyncHealthTask:
        """Start in the running event loop."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="semroute-health")
        return self

    async def _run(self) -> None:
        while True:
            try:
                await self._check()
            except Exception:  # noqa: BLE001 - a failed round must not kill the checker
                pass
            await asyncio.sleep(self._interval)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()
