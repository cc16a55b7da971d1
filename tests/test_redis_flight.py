"""RedisSingleFlight against a real redis-server: one call per key across flights, streams, dead leaders."""

from __future__ import annotations

import asyncio
import threading

import pytest

from semroute.errors import BackendUnavailable
from semroute.redis_flight import RedisSingleFlight
from semroute.testing.redis_server import RedisServer
from semroute.types import Answer, Chunk, Verdict


@pytest.fixture
def flights(redis_url):
    made: list[RedisSingleFlight] = []

    def make(**kwargs) -> RedisSingleFlight:
        flight = RedisSingleFlight.from_url(redis_url, **kwargs)
        made.append(flight)
        return flight

    yield make
    for flight in made:
        flight.close()


def blocked_followers(redis_url: str, n: int, timeout: float = 10.0) -> bool:
    """Poll Redis until ``n`` clients block on a result stream (an observable state, not a sleep)."""
    import time

    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if int(client.info("clients")["blocked_clients"]) >= n:
                return True
            time.sleep(0.005)
        return False
    finally:
        client.close()


def answer(text: str) -> Answer:
    return Answer(text=text, source="small", latency_ms=1.0, verdict=Verdict(True, 0.9, "ok"), timings_ms=(("llm", 1.0),))


def test_followers_in_other_flights_get_the_leaders_answer(flights, redis_url):
    leader, follower = flights(), flights()
    started, release = threading.Event(), threading.Event()
    calls: list[str] = []

    def slow() -> Answer:
        calls.append("leader")
        started.set()
        release.wait(10)
        return answer("forty")

    results: list[tuple[Answer, bool]] = []
    lead = threading.Thread(target=lambda: results.append(leader.do("k", slow)))
    lead.start()
    started.wait(10)
    follow = threading.Thread(target=lambda: results.append(follower.do("k", lambda: answer("never"))))
    follow.start()
    assert blocked_followers(redis_url, 1)
    release.set()
    lead.join(10), follow.join(10)
    assert calls == ["leader"] and sorted(shared for _, shared in results) == [False, True]
    assert {a.text for a, _ in results} == {"forty"} and all(a.verdict.score == 0.9 for a, _ in results)


def test_a_late_caller_gets_the_lingering_result(flights):
    first, late = flights(), flights()
    assert first.do("k", lambda: answer("one")) == (answer("one"), False)
    assert late.do("k", lambda: answer("two"))[0].text == "one"


def test_an_error_reaches_followers_and_does_not_linger(flights, redis_url):
    leader, follower = flights(), flights()
    started, release = threading.Event(), threading.Event()

    def failing() -> Answer:
        started.set()
        release.wait(10)
        raise BackendUnavailable("down", instance="gpu1")

    errors: list[BaseException] = []

    def run(flight, fn) -> None:
        try:
            flight.do("k", fn)
        except BackendUnavailable as exc:
            errors.append(exc)

    lead = threading.Thread(target=run, args=(leader, failing))
    lead.start()
    started.wait(10)
    follow = threading.Thread(target=run, args=(follower, lambda: answer("x")))
    follow.start()
    assert blocked_followers(redis_url, 1)
    release.set()
    lead.join(10), follow.join(10)
    assert len(errors) == 2
    assert follower.do("k", lambda: answer("retried")) == (answer("retried"), False)


def test_a_dead_leader_hands_over_after_its_lease(flights):
    dead, follower = flights(lease_s=0.3), flights(lease_s=0.3)
    dead._stop.set()  # crashed: never renews
    dead._claim("k")  # took the lease, will never publish
    calls: list[int] = []
    got, shared = follower.do("k", lambda: calls.append(1) or answer("took over"))
    assert got.text == "took over" and not shared and calls == [1]


def test_streams_are_coalesced_chunk_by_chunk(flights, redis_url):
    leader, follower = flights(), flights()
    gate = threading.Event()
    generated: list[int] = []

    def chunks():
        generated.append(1)
        yield Chunk("Hello ")
        gate.wait(10)
        yield Chunk("world", done=True, model="m")

    leading = leader.stream("k", chunks)
    assert next(leading).text == "Hello "
    received: list[Chunk] = []
    follow = threading.Thread(target=lambda: received.extend(follower.stream("k", chunks)))
    follow.start()
    assert blocked_followers(redis_url, 1)
    gate.set()
    rest = list(leading)
    follow.join(10)
    assert generated == [1] and [c.text for c in rest] == ["world"]
    assert [c.text for c in received] == ["Hello ", "world"] and received[-1].done and received[-1].model == "m"


async def test_async_callers_share_one_call(flights, redis_url):
    a, b = flights(), flights()
    release = asyncio.Event()
    calls: list[int] = []

    async def slow() -> Answer:
        calls.append(1)
        await release.wait()
        return answer("async")

    lead = asyncio.create_task(a.ado("k", slow))
    while not calls:
        await asyncio.sleep(0)
    follow = asyncio.create_task(b.ado("k", slow))
    assert await asyncio.to_thread(blocked_followers, redis_url, 1)
    release.set()
    results = await asyncio.gather(lead, follow)
    assert calls == [1] and [r[0].text for r in results] == ["async", "async"]


def test_redis_down_falls_back_to_the_in_process_flight():
    dead = RedisServer()  # never started
    flight = RedisSingleFlight.from_url(dead.url)
    try:
        assert flight.do("k", lambda: answer("local")) == (answer("local"), False)
        assert [c.text for c in flight.stream("k", lambda: iter([Chunk("x", done=True)]))] == ["x"]
    finally:
        flight.close()
        dead.close()


@pytest.mark.reliability
def test_a_follower_gives_up_at_its_own_wait_while_the_leader_still_works(flights, redis_url):
    leader, follower = flights(), flights()
    started, release = threading.Event(), threading.Event()

    def slow() -> Answer:
        started.set()
        release.wait(10)
        return answer("forty")

    results: list[tuple[Answer, bool]] = []
    lead = threading.Thread(target=lambda: results.append(leader.do("k", slow)))
    lead.start()
    assert started.wait(10)
    try:
        with pytest.raises(TimeoutError):  # the router turns this into the request's DeadlineExceeded
            follower.do("k", lambda: answer("never"), wait_s=0.2)
        with pytest.raises(TimeoutError):
            asyncio.run(follower.ado("k", _never, wait_s=0.2))
    finally:
        release.set()
        lead.join(10)
    assert [(a.text, shared) for a, shared in results] == [("forty", False)]
    assert follower.do("k", lambda: answer("never"), wait_s=5.0)[0].text == "forty"  # lingering result


async def _never() -> Answer:
    raise AssertionError("a follower must not generate while the leader holds the key")
