"""Pools: circuit breaker, limiter and queue as pure parts, then whole pools over real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections.abc import Iterator

import pytest

from semroute.backends.balancer import Ask, Balancer
from semroute.backends.health import CircuitBreaker, HealthThread
from semroute.backends.limiter import LocalLimiter, WaitQueue
from semroute.backends.ollama import OllamaBackend
from semroute.backends.pool import Instance, Pool
from semroute.backends.strategy import LatencyAware, LeastOutstanding
from semroute.errors import (
    BackendUnavailable,
    BackendError,
    ConfigError,
    InvalidRequest,
    NoInstanceAvailable,
    Overloaded,
)
from semroute.metrics import Metrics
from semroute.testing import Capacity, FakeOllama, Timing, answer_text, ManualClock
from semroute.types import Message
from semroute.settings import BreakerSettings, PoolSettings, QueueSettings, RetrySettings, Timeout


# --------------------------------------------------------------------- circuit breaker


def test_breaker_opens_after_consecutive_failures_and_probes_half_open() -> None:
    clock = ManualClock()
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
    clock = ManualClock()
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
    b = CircuitBreaker(BreakerSettings(failure_threshold=2), clock=ManualClock())
    for _ in range(5):
        b.record_failure()
        b.record_success()
    assert b.state == "closed" and b.available()


def test_breaker_honours_retry_after_even_below_threshold() -> None:
    clock = ManualClock()
    b = CircuitBreaker(BreakerSettings(failure_threshold=5), clock=clock)
    b.record_failure(retry_after=3.0)
    assert not b.available()
    clock.advance(3.0)
    assert b.available() and b.state == "closed"


def test_trip_opens_at_once_and_half_open_now_ends_the_cooldown() -> None:
    clock = ManualClock()
    b = CircuitBreaker(BreakerSettings(failure_threshold=5, cooldown_s=10.0, max_cooldown_s=20.0), clock=clock)
    b.trip()
    assert b.state == "open" and b.reopens_in() == pytest.approx(10.0)
    b.half_open_now()
    assert b.state == "half_open" and b.available()
    b.on_dispatch()
    b.record_failure()  # the probe failed: open again, longer
    assert b.reopens_in() == pytest.approx(20.0)


def test_abandoned_probe_frees_the_half_open_slot() -> None:
    clock = ManualClock()
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


def test_queue_is_fifo_and_bounded() -> None:
    clock = ManualClock()
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
    clock = ManualClock()
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


# --------------------------------------------------------------------- balancer admission


class Named:
    """Only a name: the balancer never calls its backends."""

    def __init__(self, name: str) -> None:
        self.name = name


def fast_and_slow(clock: ManualClock, strategy: object, timeout_s: float = 2.0) -> Balancer:
    """A 0.1 s and a 1 s instance, one slot each, both measured; nothing in flight."""
    specs = [Instance(Named(n), limit=1, models=("m",)) for n in ("fast", "slow")]  # type: ignore[arg-type]
    core = Balancer(specs, strategy=strategy, settings=PoolSettings(queue=QueueSettings(max_length=8, timeout_s=timeout_s)),  # type: ignore[arg-type]
                    limiter=LocalLimiter(), clock=clock, rng=random.Random(0))
    held = [core.enter(Ask("m"), in_loop=False) for _ in range(2)]
    assert sorted(held) == [0, 1]  # type: ignore[type-var]
    for idx in (0, 1):
        core.succeeded(idx, "m", (0.1, 1.0)[idx], None)
    return core


def test_a_request_waits_for_the_busy_fast_slot_rather_than_the_free_slow_one() -> None:
    clock = ManualClock()
    core = fast_and_slow(clock, LatencyAware())
    assert core.enter(Ask("m"), in_loop=False) == 0  # the fast instance is free: it takes it
    waiter = core.enter(Ask("m"), in_loop=False)
    assert not isinstance(waiter, int) and core.queue_length == 1  # the slow slot stays free
    clock.advance(0.05)
    assert core.after_wait(waiter) is None  # polling re-decides: still worth waiting
    core.succeeded(0, "m", 0.1, None)  # the fast slot frees and goes to the waiter
    assert core.after_wait(waiter) == 0 and core.queue_length == 0
    assert [s.in_flight for s in core.states("m")] == [1, 0]


def test_a_waiter_at_its_deadline_takes_the_free_slow_slot_instead_of_overloaded() -> None:
    clock = ManualClock()
    core = fast_and_slow(clock, LatencyAware(), timeout_s=0.5)
    assert core.enter(Ask("m"), in_loop=False) == 0
    waiter = core.enter(Ask("m"), in_loop=False)
    assert not isinstance(waiter, int)
    clock.advance(0.5)
    assert core.after_wait(waiter) == 1
    assert [s.in_flight for s in core.states("m")] == [1, 1]


def test_queued_requests_far_back_take_the_slow_slot() -> None:
    clock = ManualClock()
    core = fast_and_slow(clock, LatencyAware())
    assert core.enter(Ask("m"), in_loop=False) == 0
    # One fast slot frees every 0.1 s: the 3rd in line expects 0.3 s + 0.1 s, and 3 x 0.4 s > 1 s.
    waiters = [core.enter(Ask("m"), in_loop=False) for _ in range(3)]
    assert [w.value for w in waiters] == [None, None, 1]  # type: ignore[union-attr]
    assert core.queue_length == 2


def test_strategies_without_admit_never_hold_back_a_free_slot() -> None:
    core = fast_and_slow(ManualClock(), LeastOutstanding())
    assert sorted([core.enter(Ask("m"), in_loop=False), core.enter(Ask("m"), in_loop=False)]) == [0, 1]  # type: ignore[type-var]


# --------------------------------------------------------------------- pools over real HTTP

MODEL = "llama3.2:3b"
ASK = [Message("user", "What is the speed limit in a city?")]
FAST = Timing(latency_ms=5.0, ttft_ms=2.0, token_delay_ms=1.0)


@contextlib.contextmanager
def fakes(*models: tuple[str, ...], timing: Timing = FAST, capacity: Capacity = Capacity()) -> Iterator[list[FakeOllama]]:
    """Start one FakeOllama per models tuple on loopback; stop them all afterwards."""
    started: list[FakeOllama] = []
    try:
        for names in models:
            started.append(FakeOllama(list(names), timing=timing, capacity=capacity).start())
        yield started
    finally:
        for fake in started:
            fake.stop()


def make_pool(fleet: list[FakeOllama], *, limit: int = 4, timeout: Timeout = Timeout(connect=1.0, read=5.0), **kwargs) -> Pool:
    settings = kwargs.pop(
        "settings", PoolSettings(retry=RetrySettings(attempts=3, backoff_s=0.01, max_backoff_s=0.5), queue=QueueSettings(timeout_s=5.0))
    )
    instances = [Instance(OllamaBackend(f.url, timeout=timeout), limit=limit) for f in fleet]
    return Pool(instances, settings=settings, rng=random.Random(3), **kwargs)


def served(fake: FakeOllama, expect: int = 0) -> int:
    """Answers the fake finished; waits briefly for ``expect`` (it counts just after sending)."""
    with contextlib.suppress(TimeoutError):
        fake.wait_until(lambda s: s.count("chat", completed=True) >= expect, timeout=2.0)
    return fake.stats().count("chat", completed=True)


def total_served(fleet: list[FakeOllama], expect: int) -> int:
    deadline = time.monotonic() + 2.0
    while (total := sum(f.stats().count("chat", completed=True) for f in fleet)) < expect and time.monotonic() < deadline:
        time.sleep(0.005)
    return total


def test_chat_and_stream_answer_over_http_sync() -> None:
    with fakes((MODEL,), (MODEL,)) as fleet, make_pool(fleet) as pool:
        completion = pool.chat(MODEL, ASK)
        assert completion.text == answer_text(MODEL, ASK[-1].content)
        assert completion.instance in {p.name for p in pool.states()}
        chunks = list(pool.stream(MODEL, ASK))
        assert chunks[-1].done and "".join(c.text for c in chunks) == completion.text
        states = pool.states(MODEL)
        assert all(s.in_flight == 0 for s in states)
        assert any(s.ewma_ttft_s is not None for s in states) and any(s.ewma_latency_s for s in states)


async def test_chat_and_stream_answer_over_http_async() -> None:
    with fakes((MODEL,), (MODEL,)) as fleet:
        async with make_pool(fleet, limit=2) as pool:
            answers = await asyncio.gather(*(pool.achat(MODEL, ASK) for _ in range(12)))
            assert {a.text for a in answers} == {answer_text(MODEL, ASK[-1].content)}
            text = "".join([c.text async for c in pool.astream(MODEL, ASK)])
            assert text == answers[0].text
        assert all(f.stats().max_concurrency <= 2 for f in fleet)  # the pool's limit, not the fake's
        assert total_served(fleet, 13) == 13 and min(map(served, fleet)) >= 3


def test_only_instances_with_the_model_are_candidates() -> None:
    with fakes(("small:1b",), ("small:1b", "big:8b")) as (only_small, both), make_pool([only_small, both]) as pool:
        for _ in range(8):
            assert pool.chat("big:8b", ASK).instance == pool.states()[1].name
        assert only_small.stats().count("chat") == 0 and served(both, 8) == 8
        with pytest.raises(NoInstanceAvailable) as info:
            pool.chat("missing:7b", ASK)
        message = str(info.value)
        assert "missing:7b" in message and all(s.name in message for s in pool.states())
        assert only_small.stats().count("chat") == 0 and both.stats().count("chat") == 8


def test_untagged_model_name_means_latest() -> None:
    with fakes(("phi3",),) as fleet, make_pool(fleet) as pool:
        assert pool.chat("phi3:latest", ASK).text
        assert pool.states("phi3")[0].has_model


def test_warm_instance_preferred_when_load_is_equal() -> None:
    with fakes((MODEL,), (MODEL,), (MODEL,)) as fleet, make_pool(fleet, strategy="least_outstanding") as pool:
        with OllamaBackend(fleet[2].url) as direct:
            direct.chat(MODEL, ASK)  # loads the model on the third instance only
        pool.check_health()  # learns /api/ps
        assert [s.model_loaded for s in pool.states(MODEL)] == [False, False, True]
        for _ in range(6):
            pool.chat(MODEL, ASK)
        assert [served(f, n) for f, n in zip(fleet, (0, 0, 7))] == [0, 0, 7]


def test_requests_fail_over_when_an_instance_is_killed_mid_run() -> None:
    slow = Timing(latency_ms=30.0, ttft_ms=5.0, token_delay_ms=2.0)
    with fakes((MODEL,), (MODEL,), (MODEL,), timing=slow) as fleet, make_pool(fleet, limit=2) as pool:
        errors: list[BaseException] = []
        texts: list[str] = []

        def client(n: int) -> None:
            for k in range(10):
                try:
                    if (n + k) % 2:
                        texts.append(pool.chat(MODEL, ASK).text)
                    else:
                        texts.append("".join(c.text for c in pool.stream(MODEL, ASK)))
                except BaseException as exc:  # noqa: BLE001 - collected and asserted below
                    errors.append(exc)

        threads = [threading.Thread(target=client, args=(n,)) for n in range(6)]
        for t in threads:
            t.start()
        fleet[0].wait_until(lambda s: s.count("chat", completed=True) >= 3 and s.active > 0, timeout=10)
        fleet[0].stop()  # killed with requests in flight on it
        for t in threads:
            t.join(timeout=60)
        # A stream cut after its first chunk must surface (never repeat); any other request fails over.
        cut = [e for e in errors if isinstance(e, BackendError)]
        assert len(errors) == len(cut) and len(cut) <= 2, errors
        assert len(texts) + len(errors) == 60
        assert set(texts) == {answer_text(MODEL, ASK[-1].content)}
        assert total_served(fleet[1:], len(texts) - served(fleet[0])) >= len(texts) - served(fleet[0])


@pytest.mark.parametrize("strategy", ["least_outstanding", "round_robin", "power_of_two", "latency_aware"])
def test_a_fast_503_instance_does_not_attract_traffic(strategy: str) -> None:
    settings = PoolSettings(breaker=BreakerSettings(failure_threshold=2, cooldown_s=30.0, max_cooldown_s=60.0))
    with fakes((MODEL,), (MODEL,), (MODEL,)) as fleet:
        fleet[0].set_fault("busy")  # answers 503 at once, forever
        with make_pool(fleet, strategy=strategy, settings=settings) as pool:
            for _ in range(30):
                assert pool.chat(MODEL, ASK).text
            # At most the breaker threshold: its failures count as load, then it cools down.
            tried = fleet[0].stats().count("chat")
            assert tried <= 2
            if strategy == "round_robin":  # visits it every round until the breaker opens
                assert tried == 2 and pool.states(MODEL)[0].recent_failures == 2
            assert total_served(fleet[1:], 30) == 30


def test_retry_after_is_honoured_for_a_lone_busy_instance() -> None:
    with fakes((MODEL,), capacity=Capacity(retry_after_s=0.3)) as fleet:
        fleet[0].set_fault("busy", count=1)
        settings = PoolSettings(retry=RetrySettings(attempts=2, backoff_s=0.01, max_backoff_s=2.0))
        with make_pool(fleet, settings=settings) as pool:
            assert pool.chat(MODEL, ASK).text  # the second try, after the wait, is answered
            assert fleet[0].stats().count("chat") == 2


def test_the_wait_before_retrying_a_lone_busy_instance_is_its_retry_after() -> None:
    clock = ManualClock()
    settings = PoolSettings(retry=RetrySettings(attempts=3, backoff_s=0.01, max_backoff_s=2.0))
    core = Balancer([Instance(Named("only"), limit=1, models=("m",))], strategy=LeastOutstanding(),  # type: ignore[arg-type]
                    settings=settings, limiter=LocalLimiter(), clock=clock, rng=random.Random(0))
    ask = Ask("m")
    idx = core.enter(ask, in_loop=False)
    busy = BackendUnavailable("503 busy", instance="only", retry_after=0.3)
    assert core.failed(idx, ask, busy, attempt=0) == pytest.approx(0.3)  # not the 0.01 s backoff
    clock.advance(0.3)
    assert core.enter(ask, in_loop=False) == 0  # and after it the instance is tried again


def test_no_duplicate_text_after_a_mid_stream_failure() -> None:
    with fakes((MODEL,), (MODEL,)) as fleet:
        for fake in fleet:
            fake.set_fault("drop", after_chunks=2)
        with make_pool(fleet) as pool:
            received: list[str] = []
            with pytest.raises(BackendError):
                for chunk in pool.stream(MODEL, ASK):
                    received.append(chunk.text)
            assert len(received) == 2
            assert answer_text(MODEL, ASK[-1].content).startswith("".join(received))
            assert sum(f.stats().count("chat") for f in fleet) == 1  # no retry after the first chunk
            assert all(s.in_flight == 0 for s in pool.states())


async def test_no_duplicate_text_after_a_mid_stream_failure_async() -> None:
    with fakes((MODEL,), (MODEL,)) as fleet:
        for fake in fleet:
            fake.set_fault("drop", after_chunks=1)
        async with make_pool(fleet) as pool:
            received: list[str] = []
            with pytest.raises(BackendError):
                async for chunk in pool.astream(MODEL, ASK):
                    received.append(chunk.text)
            assert len(received) == 1 and sum(f.stats().count("chat") for f in fleet) == 1


async def test_async_stream_fails_over_before_the_first_byte() -> None:
    with fakes((MODEL,), (MODEL,)) as fleet:
        fleet[0].set_fault("error", status=500)
        async with make_pool(fleet, strategy="round_robin") as pool:
            for _ in range(4):
                text = "".join([c.text async for c in pool.astream(MODEL, ASK)])
                assert text == answer_text(MODEL, ASK[-1].content)
        assert served(fleet[1], 4) == 4


def test_queue_deadline_gives_overloaded() -> None:
    settings = PoolSettings(queue=QueueSettings(max_length=4, timeout_s=0.2))
    metrics = Metrics()
    clock = ManualClock()  # the queue's deadline runs on the pool's clock: no wall-clock waiting
    with fakes((MODEL,)) as fleet, make_pool(fleet, limit=1, settings=settings, metrics=metrics, clock=clock) as pool:
        fleet[0].pause()  # the first request holds the only slot
        holder = threading.Thread(target=pool.chat, args=(MODEL, ASK))
        holder.start()
        fleet[0].wait_until(lambda s: s.active == 1)
        outcome: list[BaseException] = []
        waiter = threading.Thread(target=lambda: outcome.append(_raised(pool.chat, MODEL, ASK)))
        waiter.start()
        deadline = time.monotonic() + 20  # bounded wait for the request to queue (not a timed sleep)
        while pool.queue_length == 0:
            assert time.monotonic() < deadline, "the second request never queued"
            time.sleep(0.001)
        clock.advance(0.25)  # past the queue deadline
        waiter.join(timeout=20)
        (error,) = outcome
        assert isinstance(error, Overloaded)
        assert error.waited_s == pytest.approx(0.25) and error.queue_length == 0
        assert fleet[0].stats().count("chat") == 1  # the queued request never reached the instance
        assert (metrics.count("pool.queued"), metrics.count("pool.overloaded")) == (1, 1)
        fleet[0].resume()
        holder.join(timeout=10)


def _raised(fn, *args) -> BaseException | None:
    try:
        fn(*args)
    except BaseException as exc:  # noqa: BLE001 - handed to the test thread
        return exc
    return None


def test_limit_bounds_concurrency_per_instance() -> None:
    with fakes((MODEL,), capacity=Capacity(max_parallel=8)) as fleet, make_pool(fleet, limit=2) as pool:
        threads = [threading.Thread(target=pool.chat, args=(MODEL, ASK)) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert served(fleet[0], 8) == 8 and fleet[0].stats().max_concurrency <= 2


def _rounds(fake: FakeOllama, n: int) -> None:
    """Wait until ``fake`` has seen ``n`` more health rounds (``/api/tags``), via its own stats.

    A round probes the pool's instances in order, so once the last instance saw a round's
    request, the earlier instances' results of that round are applied.
    """
    seen = fake.stats().count("tags")
    fake.wait_until(lambda s: s.count("tags") >= seen + n, timeout=20)


def test_health_checks_mark_instances_down_and_up() -> None:
    settings = PoolSettings(health_interval_s=0.02)
    with fakes((MODEL,), (MODEL,)) as fleet, make_pool(fleet, settings=settings) as pool:
        pool.start_health_checks()
        fleet[0].set_fault("refuse")
        _rounds(fleet[1], 2)  # a whole round ran after the fault was set
        assert not pool.states(MODEL)[0].healthy
        for _ in range(4):  # the down instance is not even tried
            pool.chat(MODEL, ASK)
        assert fleet[0].stats().count("chat") == 0
        fleet[0].clear_fault()
        _rounds(fleet[1], 2)
        assert pool.states(MODEL)[0].healthy
        pool.stop_health_checks()


async def test_async_health_checks_learn_models_and_stop() -> None:
    settings = PoolSettings(health_interval_s=0.02)
    with fakes((MODEL, "other:1b"),) as fleet:
        async with make_pool(fleet, settings=settings) as pool:
            await pool.astart_health_checks()
            await asyncio.to_thread(_rounds, fleet[0], 2)  # the first round's result is applied by now
            assert pool.states("other:1b")[0].has_model
            await pool.astop_health_checks()
            # stopped means stopped: the checking task has ended, nothing is left to run another round
            assert [t for t in asyncio.all_tasks() if t.get_name() == "semroute-health"] == []


def test_every_instance_down_is_no_instance_available_naming_them() -> None:
    with fakes((MODEL,), (MODEL,)) as fleet, make_pool(fleet) as pool:
        assert pool.chat(MODEL, ASK).text
        for fake in fleet:
            fake.set_fault("error", status=500)
        with pytest.raises(NoInstanceAvailable) as info:
            pool.chat(MODEL, ASK)
        assert len(info.value.attempts) == 3
        assert {name for name, _ in info.value.attempts} == {s.name for s in pool.states()}


def test_client_errors_are_not_retried() -> None:
    with fakes((MODEL,), (MODEL,)) as fleet:
        for fake in fleet:
            fake.set_fault("error", status=400)
        with make_pool(fleet) as pool, pytest.raises(BackendError):
            pool.chat(MODEL, ASK)
        assert sum(f.stats().count("chat") for f in fleet) == 1


@pytest.mark.parametrize("model, messages", [("", ASK), (MODEL, []), (MODEL, "hi"), (MODEL, [{"role": "user", "content": "x"}])])
def test_bad_requests_are_rejected_before_any_io(model: object, messages: object) -> None:
    with fakes((MODEL,)) as fleet, make_pool(fleet) as pool:
        with pytest.raises(InvalidRequest):
            pool.chat(model, messages)  # type: ignore[arg-type]
        with pytest.raises(InvalidRequest):
            pool.stream(model, messages)  # type: ignore[arg-type]
        assert fleet[0].stats().count() == 0


def test_bad_pool_configuration() -> None:
    backend = OllamaBackend("http://127.0.0.1:9")
    with pytest.raises(ConfigError):
        Pool([])
    with pytest.raises(ConfigError):
        Pool([backend, OllamaBackend("http://127.0.0.1:9")])
    with pytest.raises(ConfigError):
        Pool([backend], strategy="fastest")
    with pytest.raises(ConfigError):
        Instance(backend, limit=0)


def test_an_instance_down_from_the_start_is_skipped() -> None:
    with fakes((MODEL,), (MODEL,)) as fleet:
        down_url = fleet[0].url
        fleet[0].stop()
        pool = Pool([OllamaBackend(down_url, timeout=Timeout(connect=1.0)), OllamaBackend(fleet[1].url)])
        with pool:
            for _ in range(3):
                assert pool.chat(MODEL, ASK).instance == pool.states()[1].name
            down = pool.states(MODEL)[0]
            assert not down.healthy and not down.has_model


def test_stopping_a_stream_early_gives_the_slot_back() -> None:
    with fakes((MODEL,)) as fleet, make_pool(fleet, limit=1) as pool:
        chunks = pool.stream(MODEL, ASK)
        first = next(chunks)
        assert first.text and pool.states()[0].in_flight == 1
        chunks.close()  # type: ignore[attr-defined]
        assert pool.states()[0].in_flight == 0
        assert pool.chat(MODEL, ASK).text  # the only slot is free again


async def test_a_thread_releasing_a_slot_wakes_a_queued_task() -> None:
    with fakes((MODEL,)) as fleet:
        async with make_pool(fleet, limit=1) as pool:
            fleet[0].pause()
            holder = asyncio.create_task(asyncio.to_thread(pool.chat, MODEL, ASK))  # a sync caller's thread
            await asyncio.to_thread(fleet[0].wait_until, lambda s: s.active == 1)
            queued = asyncio.create_task(pool.achat(MODEL, ASK))
            while pool.queue_length < 1:
                await asyncio.sleep(0.005)
            fleet[0].resume()
            first, second = await asyncio.wait_for(asyncio.gather(holder, queued), 10)
            assert first.text == second.text == answer_text(MODEL, ASK[-1].content)
            assert pool.queue_length == 0 and pool.states()[0].in_flight == 0
