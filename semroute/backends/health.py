"""Instance health: a circuit breaker per instance and background health checks.

``CircuitBreaker`` is an I/O-free state machine driven by request outcomes and a clock::

    closed --N consecutive failures--> open --cooldown elapsed--> half-open
       ^                                 ^                            |
       +------------ probe succeeds -----|------ probe fails ---------+
                                         (cooldown doubles, capped)

Fast 503s and connection errors are failures like any other, so an instance that fails
quickly cannot look idle and attract traffic. A ``Retry-After`` from the instance holds the
breaker open for at least that long.

``probe`` asks one backend for health, models (``/api/tags``) and loaded models (``/api/ps``);
``HealthThread`` and ``AsyncHealthTask`` run a check function periodically until stopped.
This module does not choose instances (that is ``strategy``) or count slots (``limiter``).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from ..errors import ConfigError
from ..settings import BreakerSettings
from .base import Backend

__all__ = ["CircuitBreaker", "Probe", "probe", "HealthThread", "AsyncHealthTask"]

BreakerState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Consecutive failures open the circuit for a cooldown that grows with each re-opening.

    Not thread-safe on its own: the pool calls it under its lock. ``clock`` returns seconds.
    """

    def __init__(self, settings: BreakerSettings = BreakerSettings(), *, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._clock = clock
        self.failures = 0  # consecutive
        self._trips = 0  # consecutive openings; sets the cooldown
        self._open_until = 0.0
        self._probing = False

    @property
    def state(self) -> BreakerState:
        if self._clock() < self._open_until:
            return "open"
        return "half_open" if self._trips else "closed"

    def available(self) -> bool:
        """May a request be sent now? (A half-open breaker admits one probe at a time.)"""
        if self._clock() < self._open_until:
            return False
        return not (self._trips and self._probing)

    def on_dispatch(self) -> None:
        """A request was sent; in half-open state it is the probe."""
        if self._trips and self._clock() >= self._open_until:
            self._probing = True

    def record_success(self) -> None:
        self.failures = 0
        self._trips = 0
        self._probing = False
        self._open_until = 0.0

    def record_failure(self, *, retry_after: float | None = None) -> None:
        self.failures += 1
        was_probe = self._probing
        self._probing = False
        if was_probe or self.failures >= self.settings.failure_threshold:
            s = self.settings
            cooldown = min(s.max_cooldown_s, s.cooldown_s * s.backoff_factor**self._trips)
            self._trips += 1
            self._open_until = max(self._open_until, self._clock() + cooldown)
        if retry_after is not None and retry_after > 0:
            # The instance said when to come back; never earlier than that.
            self._open_until = max(self._open_until, self._clock() + retry_after)

    def trip(self) -> None:
        """Open now, whatever the count (a failed health check: the instance is unreachable)."""
        self.failures = max(self.failures, self.settings.failure_threshold - 1)
        self.record_failure()

    def half_open_now(self) -> None:
        """End an open period early (a health check saw the instance come back)."""
        if self._trips:
            self._open_until = min(self._open_until, self._clock())
            self._probing = False

    def record_release(self) -> None:
        """A request ended with neither success nor failure (the caller stopped reading)."""
        self._probing = False

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
