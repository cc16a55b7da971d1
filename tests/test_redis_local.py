"""RedisStore's local view against a real redis-server: reads without round trips that never serve the dead.

Another OS process deletes and invalidates; this one must stop serving those entries once
its view has caught up with the feed (at most ``sync_interval_s``, driven here by an injected
monotonic clock). Expired entries are refused locally by their absolute expiry, before Redis
has swept them. Local reads still count for Redis's LRU eviction.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from semroute.cache import FaissIndex, Replica
from semroute.cache.redis import RedisStore
from semroute.errors import ConfigError
from semroute.types import CacheEntry

DIM = 8


class Ticker:
    """An injected clock: time moves only when a test says so."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def entry(i: int, *, ttl: float | None = None, tags=()) -> CacheEntry:
    vector = np.random.default_rng(i).standard_normal(DIM).astype(np.float32)
    return CacheEntry(id=f"id{i}", key=f"default/k{i}", scope="default/scope", namespace="default",
                      question=f"question {i}", answer=f"answer {i}", vector=vector, created_at=1_000.0,
                      expires_at=None if ttl is None else 1_000.0 + ttl, tags=tuple(tags))


def other_process(redis_url: str, prefix: str, code: str, options: str = "") -> str:
    """Run ``code`` with ``s`` = a RedisStore over the same cache (``options``: more arguments), in another OS process."""
    script = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); from semroute.cache.redis import RedisStore\n"
              f"s = RedisStore.from_url(sys.argv[1], prefix={prefix!r}, {options})\nprint({code})\ns.close()")
    return subprocess.run([sys.executable, "-c", script, redis_url], capture_output=True, text=True, check=True,
                          timeout=60).stdout.strip()


def commands(client) -> int:
    return int(client.info("stats")["total_commands_processed"])


@pytest.fixture
def local(redis_url):
    mono = Ticker(0.0)
    with RedisStore.from_url(redis_url, prefix="loc", clock=Ticker(), monotonic=mono, sync_interval_s=1.0) as s:
        s.test_mono = mono
        yield s


def test_a_local_hit_sends_no_command_to_redis(local, redis_url):
    import redis

    local.put_many([entry(1)])
    assert local.get_by_key("default/k1", now=1_000.0).id == "id1"  # catches up: now held locally
    client = redis.Redis.from_url(redis_url)
    idle = -commands(client) + commands(client)  # what the two INFO calls cost by themselves
    before = commands(client)
    assert local.get_by_key("default/k1", now=1_001.0).id == "id1"
    assert local.get_many(["id1"], now=1_001.0)[0].answer == "answer 1"
    assert local.get_by_key("default/never-stored", now=1_001.0) is None  # the key map is complete
    assert commands(client) - before == idle
    client.close()


def test_another_process_delete_and_invalidation_are_honoured(local, redis_url):
    local.put_many([entry(1), entry(2, tags=[("topic", "speed-limits")]), entry(3)])
    for i in (1, 2, 3):
        assert local.get_by_key(f"default/k{i}", now=1_000.0).id == f"id{i}"
    assert other_process(redis_url, "loc", "s.delete(['id1'])") == "1"
    assert other_process(redis_url, "loc", "s.invalidate(where={'topic': 'speed-limits'})") == "1"
    local.test_mono.now += 1.0  # the staleness bound has passed: the next read catches up
    assert local.get_by_key("default/k1", now=1_000.0) is None
    assert local.get_many(["id1", "id2", "id3"], now=1_000.0) == [None, None, local.get("id3", now=1_000.0)]
    assert local.get_by_key("default/k2", now=1_000.0) is None and local.get("id3", now=1_000.0).id == "id3"


def test_with_no_interval_a_delete_elsewhere_is_seen_by_the_very_next_read(redis_url):
    with RedisStore.from_url(redis_url, prefix="now", sync_interval_s=0) as s:
        s.put_many([entry(4)])
        assert s.get("id4", now=1_000.0) is not None
        other_process(redis_url, "now", "s.delete(['id4'])")
        assert s.get("id4", now=1_000.0) is None and s.get_by_key("default/k4", now=1_000.0) is None


def test_an_expired_entry_is_not_served_before_redis_sweeps_it(local, redis_url):
    local.put_many([entry(5, ttl=10.0)])
    assert local.get_by_key("default/k5", now=1_009.0).id == "id5"
    # Redis has not swept it (the store's clock still says 1000): the local copy is refused by its expiry
    assert local.get_by_key("default/k5", now=1_010.0) is None
    assert local.get_many(["id5"], now=1_010.0) == [None] and local.get("id5", now=1_011.0) is None
    assert other_process(redis_url, "loc", "len(s)") == "1"


def test_a_replica_never_returns_a_candidate_deleted_elsewhere(local, redis_url):
    replica = Replica(local, FaissIndex(DIM))
    local.put_many([entry(6), entry(7)])
    replica.sync()
    query = entry(6).vector
    assert [c.entry.id for c in replica.nearest(query, "default/scope", 2, 1_000.0)] == ["id6", "id7"]
    other_process(redis_url, "loc", "s.delete(['id6'])")
    local.test_mono.now += 1.0
    assert [c.entry.id for c in replica.nearest(query, "default/scope", 2, 1_000.0)] == ["id7"]


def test_local_reads_still_count_for_lru_eviction(redis_url):
    clock = Ticker()
    with RedisStore.from_url(redis_url, prefix="llru", max_entries=3, clock=clock, sync_interval_s=60) as s:
        for i in range(3):
            clock.now = 1_000.0 + i
            s.put_many([entry(i)])
        assert s.get("id0", now=1_005.0) is not None  # fetched once: held locally from now on
        assert s.get("id0", now=1_010.0) is not None  # a local read: its use reaches Redis before the next write
        clock.now = 1_011.0
        s.put_many([entry(3)])
        assert sorted(e.id for e in s.entries()) == ["id0", "id2", "id3"]


def test_local_reads_reach_the_lru_with_the_next_catch_up(redis_url):
    clock, mono = Ticker(), Ticker(0.0)
    with RedisStore.from_url(redis_url, prefix="tlru", max_entries=3, clock=clock, monotonic=mono,
                             sync_interval_s=1.0) as s:
        for i in range(3):
            clock.now = 1_000.0 + i
            s.put_many([entry(i)])
        assert s.get("id0", now=1_000.5) is not None  # fetched (its LRU score is now 1000.5): held locally
        assert s.get("id0", now=1_010.0) is not None  # local: no command sent
        mono.now += 1.0
        assert s.get("id2", now=1_011.0) is not None  # this read's catch-up carries id0's use along
        # another process writes: eviction must see id0 as recently used (id1 is the oldest)
        other_process(redis_url, "tlru", "s.put_many([__import__('test_redis_local').entry(3)]) or len(s)",
                      "max_entries=3")
        assert sorted(e.id for e in s.entries()) == ["id0", "id2", "id3"]


def test_the_view_is_bounded_and_optional(redis_url):
    with RedisStore.from_url(redis_url, prefix="bound", local_entries=2, sync_interval_s=60) as s:
        s.put_many([entry(i) for i in range(5)])
        assert [e.id for e in s.get_many([f"id{i}" for i in range(5)], now=1_000.0)] == [f"id{i}" for i in range(5)]
        assert len(s._local.entries) == 2
    with RedisStore.from_url(redis_url, prefix="bound", local_entries=0) as s:
        assert s.get("id1", now=1_000.0).id == "id1" and s._local is None
    with pytest.raises(ConfigError):
        RedisStore.from_url(redis_url, local_entries=-1)
