"""RedisLimiter against a real redis-server: shared slots, leases, queue tickets, local fallback."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from semroute.backends import Instance, Pool
from semroute.settings import PoolSettings, QueueSettings
from semroute.backends.ollama import OllamaBackend
from semroute.backends.redis_limiter import RedisLimiter
from semroute.errors import Overloaded
from semroute.testing import FakeOllama, ManualClock
from semroute.testing.redis_server import RedisServer
from semroute.types import Message


@pytest.fixture
def limiters(redis_url):
    made: list[RedisLimiter] = []

    def make(**kwargs) -> RedisLimiter:
        limiter = RedisLimiter.from_url(redis_url, **kwargs)
        made.append(limiter)
        return limiter

    yield make
    for limiter in made:
        limiter.close()


def test_slots_are_shared_between_limiters(limiters):
    a, b = limiters(), limiters()
    assert a.try_acquire("gpu1", 2) and b.try_acquire("gpu1", 2)
    assert not a.try_acquire("gpu1", 2) and not b.try_acquire("gpu1", 2)
    assert a.in_flight("gpu1") == b.in_flight("gpu1") == 2 and a.in_flight("gpu2") == 0
    a.release("gpu1")
    assert b.try_acquire("gpu1", 2)
    with pytest.raises(RuntimeError):
        limiters().release("gpu1")  # a limiter holding nothing cannot release


def test_a_crashed_holder_frees_its_slot_after_the_lease(redis_url, limiters):
    code = ("import os, sys; from semroute.backends.redis_limiter import RedisLimiter;"
            "l = RedisLimiter.from_url(sys.argv[1], lease_s=30); assert l.try_acquire('gpu1', 1); os._exit(0)")
    subprocess.run([sys.executable, "-c", code, redis_url], check=True, timeout=60)
    clock = ManualClock(time.time())
    survivor = limiters(lease_s=30, clock=clock)
    assert not survivor.try_acquire("gpu1", 1)  # the dead process's lease still counts
    clock.now += 31
    assert survivor.try_acquire("gpu1", 1)


def test_renewal_keeps_a_long_call_slot(limiters):
    clock = ManualClock(time.time())
    holder, other = limiters(lease_s=30, clock=clock), limiters(lease_s=30, clock=clock)
    assert holder.try_acquire("gpu1", 1)
    clock.now += 20
    holder.renew()  # what its background thread does every lease_s / 3
    clock.now += 20  # 40 s after taking it, 20 s after the renewal
    assert not other.try_acquire("gpu1", 1)


def test_older_waiters_of_other_processes_go_first(limiters):
    clock = ManualClock(time.time())
    patient, fresh = limiters(clock=clock), limiters(clock=clock)
    patient.queued(clock.now - 5.0)  # its pool has had a request waiting for 5 s
    assert not fresh.try_acquire("gpu1", 1)  # a new request elsewhere may not overtake it
    assert patient.try_acquire("gpu1", 1)
    patient.queued(None)
    patient.release("gpu1")
    assert fresh.try_acquire("gpu1", 1)


def test_a_dead_process_ticket_stops_counting_after_the_lease(limiters):
    clock = ManualClock(time.time())
    dead, alive = limiters(lease_s=30, clock=clock), limiters(lease_s=30, clock=clock)
    dead.queued(clock.now)
    dead._stop.set()  # crashed: no more renewals
    assert not alive.try_acquire("gpu1", 1)
    clock.now += 31
    assert alive.try_acquire("gpu1", 1)


def test_redis_down_falls_back_to_local_slots():
    dead = RedisServer()  # never started
    limiter = RedisLimiter.from_url(dead.url)
    try:
        assert limiter.try_acquire("gpu1", 1) and not limiter.try_acquire("gpu1", 1)
        limiter.release("gpu1")
        assert limiter.try_acquire("gpu1", 1) and limiter.fallbacks >= 1
    finally:
        limiter.close()
        dead.close()


def test_pools_in_two_processes_share_an_instance_limit(redis_url):
    with FakeOllama(("m",)) as fake:
        settings = PoolSettings(queue=QueueSettings(max_length=4, timeout_s=0.2))
        limiters = [RedisLimiter.from_url(redis_url, queue="small") for _ in range(2)]
        pools = [Pool([Instance(OllamaBackend(fake.url), limit=1)], limiter=limiter, settings=settings)
                 for limiter in limiters]
        fake.pause()
        done = threading.Event()
        first = threading.Thread(target=lambda: (pools[0].chat("m", [Message("user", "hi")]), done.set()))
        first.start()
        fake.wait_until(lambda s: s.count("chat") >= 1)
        with pytest.raises(Overloaded):
            pools[1].chat("m", [Message("user", "hi")])  # the only slot is held by the other pool
        fake.resume()
        first.join(timeout=30)
        assert done.is_set() and fake.stats().count("chat") == 1
        for pool, limiter in zip(pools, limiters):
            pool.close()
            limiter.close()
