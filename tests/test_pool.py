"""Pools: circuit breaker, limiter and queue as pure parts, then whole pools over real HTTP."""

from __future__ import annotations

import threading

import pytest

from semroute.backends.health import BreakerSettings, CircuitBreaker, HealthThread
from semroute.backends.limiter import LocalLimiter, QueueSettings, WaitQueue
from semroute.errors import ConfigError, Overloaded


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# --------------------------------------------------------------------- circuit breaker


def test_breaker_opens_after_consecutive_failures_and_probes_half_open() -> None:
    clock = FakeClock()
    b = CircuitBreaker(BreakerSettings(failure_threshold=3, cooldown_s=1.0, max_cooldown_s=8.0), clock=clock)
    for _ in range(2):
        b.record_failure()
        assert b.available() and b.state == "closed"
    b.record_failure()
    assert b.state == "open" and not b.available()
    clock.advance(0.99)
    assert not b.available()
    clock.advance(0.02)
    assert b.state == "half_open" and b.available()
    b.on_dispatch()  # the probe
    assert not b.available(), "only one probe at a time"
    b.record_success()
    assert b.state == "closed" and b.available() and b.failures == 0


def test_breaker_cooldown_doubles_on_failed_probes_and_is_capped() -> None:
    clock = FakeClock()
    b = CircuitBreaker(BreakerSettings(failure_threshold=1, cooldown_s=1.0, max_cooldown_s=5.0), clock=clock)
    b.record_failure()
    cooldowns = []
    for _ in range(5):
        cooldowns.append(round(b.reopens_in(), 6))
        clock.advance(b.reopens_in())
        b.on_dispatch()
        b.record_failure()
    assert cooldowns == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_breaker_success_between_failures_resets_the_count() -> None:
    b = CircuitBreaker(BreakerSettings(failure_threshold=2), clock=FakeClock())
    for _ in range(5):
        b.record_failure()
        b.record_success()
    assert b.state == "closed" and b.available()


def test_breaker_honours_retry_after_even_below_threshold() -> None:
    clock = FakeClock()
    b = CircuitBreaker(BreakerSettings(failure_threshold=5), clock=clock)
    b.record_failure(retry_after=3.0)
    assert not b.available()
    clock.advance(3.0)
    assert b.available() and b.state == "closed"


def test_abandoned_probe_frees_the_half_open_slot() -> None:
    clock = FakeClock()
    b = CircuitBreaker(BreakerSettings(failure_threshold=1, cooldown_s=1.0), clock=clock)
    b.record_failure()
    clock.advance(1.0)
    b.on_dispatch()
    assert not b.available()
    b.record_release()
    assert b.available()


@pytest.mark.parametrize(
    "kwargs", [{"failure_threshold": 0}, {"cooldown_s": 0}, {"cooldown_s": 5, "max_cooldown_s": 1}, {"backoff_factor": 0.5}]
)
def test_bad_breaker_settings(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        BreakerSettings(**kwargs)


def test_health_thread_runs_until_stopped() -> None:
    calls = threading.Semaphore(0)
    thread = HealthThread(calls.release, interval_s=0.01).start()
    for _ in range(3):
        assert calls.acquire(timeout=2)
    thread.stop()
    assert not thread.running


# --------------------------------------------------------------------- limiter and queue


def test_local_limiter_counts_slots() -> None:
    lim = LocalLimiter()
    assert lim.try_acquire("a", 2) and lim.try_acquire("a", 2)
    assert not lim.try_acquire("a", 2)
    assert lim.try_acquire("b", 1)
    assert lim.in_flight("a") == 2
    lim.release("a")
    assert lim.try_acquire("a", 2)
    lim.release("b")
    with pytest.raises(RuntimeError):
        lim.release("b")


async def test_local_limiter_async_twins() -> None:
    lim = LocalLimiter()
    assert await lim.atry_acquire("a", 1)
    assert not await lim.atry_acquire("a", 1)
    await lim.arelease("a")
    assert lim.in_flight("a") == 0


def test_queue_is_fifo_and_bounded() -> None:
    clock = FakeClock()
    q: WaitQueue[str] = WaitQueue(QueueSettings(max_length=2, timeout_s=5.0), clock=clock)
    first, second = q.enter("a"), q.enter("b")
    assert [w.request for w in q] == ["a", "b"]
    with pytest.raises(Overloaded) as info:
        q.enter("c")
    assert info.value.queue_length == 2 and info.value.waited_s == 0.0
    q.leave(first)
    assert [w.request for w in q] == ["b"] and len(q) == 1
    assert second.deadline == 1005.0


def test_queue_deadline_gives_overloaded_with_wait_and_length() -> None:
    clock = FakeClock()
    q: WaitQueue[str] = WaitQueue(QueueSettings(max_length=4, timeout_s=2.0), clock=clock)
    waiter = q.enter("a")
    q.enter("b")
    clock.advance(2.5)
    assert q.remaining(waiter) < 0
    err = q.expire(waiter)
    assert isinstance(err, Overloaded)
    assert err.waited_s == pytest.approx(2.5) and err.queue_length == 1
    assert len(q) == 1


def test_waiter_granted_from_another_thread_wakes_a_thread() -> None:
    q: WaitQueue[str] = WaitQueue()
    waiter = q.enter("a")
    threading.Timer(0.02, waiter.grant, args=(3,)).start()
    assert waiter.wait(5.0) and waiter.value == 3


async def test_waiter_granted_from_another_thread_wakes_a_task() -> None:
    q: WaitQueue[str] = WaitQueue()
    waiter = q.enter("a", in_loop=True)
    threading.Timer(0.02, waiter.grant, args=(1,)).start()
    assert await waiter.await_grant(5.0) and waiter.value == 1
    late = q.enter("b", in_loop=True)
    assert not await late.await_grant(0.01)


@pytest.mark.parametrize("kwargs", [{"max_length": -1}, {"timeout_s": -1}])
def test_bad_queue_settings(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        QueueSettings(**kwargs)
