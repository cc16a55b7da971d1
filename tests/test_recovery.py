"""An instance that failed once comes back: one incident is one trip, failures decay, the
half-open instance gets its probe, and health checks bring it back too (issue 12, item 1).

The breaker and balancer run on an injected clock; the fleet scenarios use real HTTP to
``FakeFleet`` instances with the pool's clock injected, so cooldowns pass by ``advance``.
"""

from __future__ import annotations

import random

import pytest

from semroute.backends.balancer import Ask, Balancer
from semroute.backends.health import CircuitBreaker
from semroute.backends.limiter import LocalLimiter
from semroute.backends.ollama import OllamaBackend
from semroute.backends.pool import Instance, Pool
from semroute.settings import BreakerSettings, PoolSettings, Timeout
from semroute.backends.strategy import LatencyAware
from semroute.errors import BackendUnavailable, ConfigError
from load_kit import closed_loop
from semroute.testing import FakeFleet, Timing, ManualClock
from semroute.types import Message

pytestmark = pytest.mark.reliability

MODEL = "llama3.2:3b"
ASK = [Message("user", "What is the speed limit in a city?")]


# ----------------------------------------------------------------------- the breaker alone


def test_concurrent_in_flight_failures_are_one_trip() -> None:
    clock = ManualClock()
    b = CircuitBreaker(BreakerSettings(failure_threshold=3, cooldown_s=1.0, max_cooldown_s=30.0), clock=clock)
    sent = [b.on_dispatch() for _ in range(8)]  # eight requests in flight when the instance dies
    clock.advance(0.01)
    for at in sent:
        b.record_failure(dispatched_at=at)
    assert b.state == "open" and b.reopens_in() == pytest.approx(1.0)


def test_failures_while_open_do_not_lengthen_the_cooldown_without_dispatch_times() -> None:
    clock = ManualClock()
    b = CircuitBreaker(BreakerSettings(failure_threshold=3, cooldown_s=1.0, max_cooldown_s=30.0), clock=clock)
    for _ in range(8):
        b.record_failure()
    assert b.reopens_in() == pytest.approx(1.0)


def test_a_failed_probe_still_escalates() -> None:
    clock = ManualClock()
    b = CircuitBreaker(BreakerSettings(failure_threshold=1, cooldown_s=1.0, max_cooldown_s=30.0), clock=clock)
    b.record_failure(dispatched_at=b.on_dispatch())
    clock.advance(1.0)
    stale = clock() - 5.0  # a request sent long before the trip, failing now
    probe = b.on_dispatch()
    b.record_failure(dispatched_at=stale)
    assert b.state == "half_open" and not b.available(), "a stale failure is not the probe's"
    b.record_failure(dispatched_at=probe)
    assert b.reopens_in() == pytest.approx(2.0)


def test_recent_failures_decay_with_time() -> None:
    clock = ManualClock()
    b = CircuitBreaker(BreakerSettings(failure_threshold=3, failure_window_s=5.0), clock=clock)
    b.record_failure()
    b.record_failure()
    assert b.failures == 2
    clock.advance(5.1)
    assert b.failures == 0
    b.record_failure()
    assert b.state == "closed" and b.failures == 1


def test_failure_window_must_be_positive() -> None:
    with pytest.raises(ConfigError):
        BreakerSettings(failure_window_s=0)


# ----------------------------------------------------------------------- admission


class Named:
    def __init__(self, name: str) -> None:
        self.name = name


def three(clock: ManualClock) -> Balancer:
    specs = [Instance(Named(n), limit=8, models=("m",)) for n in ("a", "b", "c")]  # type: ignore[arg-type]
    return Balancer(specs, strategy=LatencyAware(), settings=PoolSettings(), limiter=LocalLimiter(),
                    clock=clock, rng=random.Random(0))


def test_eight_failures_in_flight_on_one_instance_open_it_once() -> None:
    clock = ManualClock()
    core = three(clock)
    asks = []
    for _ in range(24):
        ask = Ask("m")
        idx = core.enter(ask, in_loop=False)
        asks.append((idx, ask))
    on_b = [(i, a) for i, a in asks if i == 1]
    assert len(on_b) == 8
    clock.advance(0.01)
    for i, ask in on_b:
        core.failed(i, ask, BackendUnavailable("refused", instance="b"), attempt=2)
    state = core.states("m")[1]
    assert state.breaker == "open" and state.reopens_in_s == pytest.approx(1.0)


def test_the_half_open_instance_gets_the_probe_despite_its_failures() -> None:
    clock = ManualClock()
    core = three(clock)
    for idx in range(3):  # all measured equally fast
        ask = Ask("m")
        core.enter(ask, in_loop=False)
    for idx in range(3):
        core.succeeded(idx, "m", 0.1, None)
    for _ in range(3):  # b fails three times (each request fails over elsewhere)
        ask = Ask("m")
        ask.tried = {0, 2}
        idx = core.enter(ask, in_loop=False)
        assert idx == 1
        core.failed(idx, ask, BackendUnavailable("refused", instance="b"), attempt=2)
    assert core.states("m")[1].breaker == "open"
    clock.advance(1.0)
    assert core.states("m")[1].recent_failures == 3  # still counted: the score alone would starve it
    probe = Ask("m")
    assert core.enter(probe, in_loop=False) == 1
    core.succeeded(1, "m", 0.1, None)
    state = core.states("m")[1]
    assert state.breaker == "closed" and state.recent_failures == 0


# ----------------------------------------------------------------------- a fleet over HTTP

FAST = Timing(latency_ms=4.0, ttft_ms=1.0, token_delay_ms=0.5)


def fleet_pool(fleet: FakeFleet, clock: ManualClock) -> Pool:
    instances = [Instance(OllamaBackend(url, timeout=Timeout(connect=1.0, read=5.0)), limit=4) for url in fleet.urls]
    return Pool(instances, clock=clock, rng=random.Random(7))  # default settings and strategy


def load(pool: Pool, clients: int, each: int) -> list[BaseException]:
    """``clients`` threads each asking ``each`` times in a row; returns the errors."""
    return closed_loop(lambda: pool.chat(MODEL, ASK), clients, each)[1]


def served(fleet: FakeFleet) -> list[int]:
    return [s.count("chat", completed=True) for s in fleet.stats()]


def test_an_instance_that_refused_briefly_takes_its_share_again() -> None:
    clock = ManualClock()
    with FakeFleet(3, models=(MODEL,), timing=FAST) as fleet, fleet_pool(fleet, clock) as pool:
        assert not load(pool, 12, 3)  # warm: every instance measured
        fleet[1].set_fault("refuse")
        assert not load(pool, 12, 4)  # its failures fail over
        state = pool.states(MODEL)[1]
        assert state.breaker == "open" and state.reopens_in_s <= 1.0, state  # one incident, one trip
        fleet[1].clear_fault()
        clock.advance(1.0)
        for fake in fleet:
            fake.reset_stats()
        assert not load(pool, 12, 20)  # 12 clients on 3 x 4 slots: a fair share is 1/3
        total = sum(served(fleet))
        assert served(fleet)[1] >= 0.8 * total / 3, served(fleet)
        assert pool.states(MODEL)[1].breaker == "closed"


def test_health_checks_bring_a_recovered_instance_back() -> None:
    clock = ManualClock()
    with FakeFleet(3, models=(MODEL,), timing=FAST) as fleet, fleet_pool(fleet, clock) as pool:
        assert not load(pool, 12, 2)
        fleet[1].set_fault("refuse")
        for _ in range(3):  # several failed rounds while it is down
            pool.check_health()
            clock.advance(0.5)
        assert not pool.states(MODEL)[1].healthy
        assert not load(pool, 12, 2)
        fleet[1].clear_fault()
        pool.check_health()  # it answers: half-open at once, the next request is its probe
        assert pool.states(MODEL)[1].healthy and pool.states(MODEL)[1].breaker == "half_open"
        for fake in fleet:
            fake.reset_stats()
        assert not load(pool, 12, 20)
        total = sum(served(fleet))
        assert served(fleet)[1] >= 0.8 * total / 3, served(fleet)


class CountingAdmit(LatencyAware):
    """Latency-aware, counting how often the balancer asks it about a queued request."""

    def __init__(self) -> None:
        super().__init__()
        self.admits = 0

    def admit(self, states, ahead, budget_s, rng):
        self.admits += 1
        return super().admit(states, ahead, budget_s, rng)


def test_an_open_instances_idle_slots_do_not_make_every_poll_walk_the_queue() -> None:
    clock = ManualClock()
    strategy = CountingAdmit()
    specs = [Instance(Named(n), limit=1, models=("m",)) for n in ("a", "b", "c")]  # type: ignore[arg-type]
    core = Balancer(specs, strategy=strategy, settings=PoolSettings(), limiter=LocalLimiter(), clock=clock,
                    rng=random.Random(0))
    held = [Ask("m") for _ in range(3)]
    assert sorted(core.enter(a, in_loop=False) for a in held) == [0, 1, 2]  # type: ignore[type-var]
    for _ in range(3):  # b fails and opens; its slot is free but unusable
        core.failed(1, held[1], BackendUnavailable("refused", instance="b"), attempt=2)
        if core.states("m")[1].breaker == "open":
            break
        held[1] = Ask("m")
        held[1].tried = {0, 2}
        assert core.enter(held[1], in_loop=False) == 1
    assert core.states("m")[1].breaker == "open"
    waiters = [core.enter(Ask("m"), in_loop=False) for _ in range(30)]
    strategy.admits = 0
    for waiter in waiters:  # every waiter polls once: nothing can be granted
        assert core.after_wait(waiter) is None  # type: ignore[arg-type]
    assert strategy.admits == 0
