"""``ManualClock``: a clock a test moves by hand.

semroute's time-dependent parts (TTLs, circuit breakers, rate limits, queues) take a
``clock: Callable[[], float]``; passing a ``ManualClock`` makes expiry and cool-downs happen
exactly when the test says, with no sleeps and no flakiness on a loaded machine.
"""

from __future__ import annotations

__all__ = ["ManualClock"]


class ManualClock:
    """A callable returning ``now`` (seconds); ``advance`` moves it forward."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = float(now)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"a clock only moves forward, got {seconds}")
        self.now += seconds
