"""The follower's side of RedisStore's change feed: one round trip per lookup, and the feed's epoch.

A fetch of candidates (``GET_MANY``) also brings the feed's newest sequence number, so a follower
busy with lookups does not poll the feed on top of them, yet still sees other processes' writes
within ``sync_interval_s``. The feed has an identity (``feed_epoch``): an index saved at a position
of one feed is not trusted against another (Redis restarted without persistence), even when the
new feed's numbers have grown past the saved position. Real redis-server; clocks injected.
"""

from __future__ import annotations

import numpy as np
import pytest
import redis

from semroute.cache import FaissIndex, Replica
from semroute.cache.redis import RedisStore
from semroute.testing import ManualClock
from semroute.types import CacheEntry

DIM = 8


def entry(i: int, *, ttl: float | None = None, tag: str = "a") -> CacheEntry:
    vector = np.random.default_rng(i).standard_normal(DIM).astype(np.float32)
    return CacheEntry(id=f"{tag}{i}", key=f"default/{tag}{i}", scope="default/scope", namespace="default",
                      question=f"question {i}", answer=f"answer {tag}{i}", vector=vector / np.linalg.norm(vector),
                      created_at=1_000.0, expires_at=None if ttl is None else 1_000.0 + ttl)


def script_calls(client) -> int:
    return int(client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))


@pytest.fixture
def client(redis_url):
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


def test_steady_lookups_take_one_round_trip_each(redis_url, client):
    with RedisStore.from_url(redis_url, prefix="rt") as writer:
        writer.put_many([entry(i) for i in range(40)])
    mono = ManualClock(0.0)
    # local_entries=0: every lookup fetches its candidates, as uniform traffic over a large cache does
    with RedisStore.from_url(redis_url, prefix="rt", monotonic=mono, sync_interval_s=0.025, local_entries=0) as s:
        replica = Replica(s, FaissIndex(DIM))
        replica.sync()
        replica.nearest(entry(0).vector, "default/scope", 2, 1_000.0)  # loads the scripts, polls once
        before = script_calls(client)
        for i in range(20):
            mono.advance(0.02)  # each lookup later than the last one's poll would be trusted for
            found = replica.nearest(entry(i).vector, "default/scope", 2, 1_000.0)
            assert found[0].entry.id == f"a{i}"
        # the old path polled the feed before every other lookup (30 scripts); each fetch now vouches
        # for the feed head, so the next sync needs no poll of its own
        assert script_calls(client) - before == 20


def test_a_write_elsewhere_is_still_seen_within_the_interval(redis_url):
    mono = ManualClock(0.0)
    with RedisStore.from_url(redis_url, prefix="seen", monotonic=mono, sync_interval_s=0.025, local_entries=0) as s, \
            RedisStore.from_url(redis_url, prefix="seen") as writer:
        writer.put_many([entry(i) for i in range(10)])
        replica = Replica(s, FaissIndex(DIM))
        replica.sync()
        replica.nearest(entry(0).vector, "default/scope", 2, 1_000.0)  # a fetch: the head is vouched for
        writer.put_many([entry(99, tag="new")])
        for _ in range(3):  # lookups keep fetching; the fetch now sees a head it has not applied
            mono.advance(0.02)
            replica.nearest(entry(1).vector, "default/scope", 2, 1_000.0)
        assert "new99" in replica.index


def test_a_fetch_sweeps_due_expiries_onto_the_feed(redis_url):
    clock = ManualClock(1_000.0)
    with RedisStore.from_url(redis_url, prefix="sw", clock=clock, local_entries=0) as s, \
            RedisStore.from_url(redis_url, prefix="sw", clock=ManualClock(1_000.0), sync_interval_s=0) as other:
        s.put_many([entry(1, ttl=10.0), entry(2)])
        newest, _ = other.changes(0)
        assert s.get_many(["a2"], now=1_011.0)[0].id == "a2"  # only a fetch, no poll: a1 is due by then
        _, changes = other.changes(newest)
        assert [(c.op, c.entry_id) for c in changes] == [("delete", "a1")]


def test_a_saved_index_of_a_lost_feed_is_rebuilt(redis_url, client, tmp_path):
    with RedisStore.from_url(redis_url, prefix="ep", sync_interval_s=0) as s:
        replica = Replica(s, FaissIndex(DIM))
        replica.insert([entry(i, tag="old") for i in range(5)])
        assert replica.save(tmp_path / "index")
        saved_epoch = s.feed_epoch
    client.flushall()  # Redis restarted without persistence: the feed starts again at 1
    with RedisStore.from_url(redis_url, prefix="ep") as writer:
        for i in range(8):  # the new feed grows past the saved position (5)
            writer.put_many([entry(i, tag="new")])
    with RedisStore.from_url(redis_url, prefix="ep", sync_interval_s=0) as s:
        replica = Replica(s, FaissIndex(DIM))
        assert replica.load(tmp_path / "index")
        replica.sync()
        assert s.feed_epoch != saved_epoch
        assert sorted(replica.index.ids()) == sorted(f"new{i}" for i in range(8))
        assert replica.rebuilds == 1


def test_a_saved_index_of_the_same_feed_is_only_caught_up(redis_url, tmp_path):
    with RedisStore.from_url(redis_url, prefix="same", sync_interval_s=0) as s:
        replica = Replica(s, FaissIndex(DIM))
        replica.insert([entry(i) for i in range(5)])
        assert replica.save(tmp_path / "index")
        s.put_many([entry(9)])
    with RedisStore.from_url(redis_url, prefix="same", sync_interval_s=0) as s:
        replica = Replica(s, FaissIndex(DIM))
        assert replica.load(tmp_path / "index")
        replica.sync()
        assert replica.rebuilds == 0 and sorted(replica.index.ids()) == sorted(f"a{i}" for i in (0, 1, 2, 3, 4, 9))


def test_a_running_follower_notices_a_new_feed(redis_url, client):
    with RedisStore.from_url(redis_url, prefix="run", sync_interval_s=0) as s, \
            RedisStore.from_url(redis_url, prefix="run") as writer:
        replica = Replica(s, FaissIndex(DIM))
        writer.put_many([entry(i, tag="old") for i in range(3)])
        replica.sync()
        client.flushall()
        for i in range(6):  # past the follower's cursor (3) before it looks again
            writer.put_many([entry(i, tag="new")])
        replica.sync()
        assert sorted(replica.index.ids()) == sorted(f"new{i}" for i in range(6))


def test_local_reads_reach_the_lru_order_with_the_next_fetch(redis_url, client):
    with RedisStore.from_url(redis_url, prefix="touch") as writer:
        writer.put_many([entry(i) for i in range(4)])
    mono = ManualClock(0.0)
    with RedisStore.from_url(redis_url, prefix="touch", monotonic=mono, sync_interval_s=60, local_entries=2) as s:
        assert s.get_many(["a0"], now=1_500.0)[0].id == "a0"  # fetched, now held locally
        assert s.get_many(["a0"], now=2_000.0)[0].id == "a0"  # answered here: no round trip
        assert client.zscore("{touch}:lru", "a0") == 1_500.0
        assert s.get_many(["a1"], now=2_100.0)[0].id == "a1"  # the fetch carries the local read along
        assert client.zscore("{touch}:lru", "a0") == 2_000.0
