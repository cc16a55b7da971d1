"""RedisStore against a real redis-server: Store protocol, feed, TTL, eviction, invalidation, outages."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from semroute.cache import FaissIndex, Replica
from semroute.cache.redis import RedisStore
from semroute.errors import ConfigError, InvalidRequest, StoreUnavailable
from semroute.redis_conn import connect, redact_url
from semroute.types import CacheEntry
from semroute.testing import ManualClock

DIM = 8


def entry(i: int, *, ns: str = "default", ttl: float | None = None, tags=(), key: str | None = None,
          created: float = 1_000.0) -> CacheEntry:
    rng = np.random.default_rng(i)
    return CacheEntry(
        id=f"id{i}", key=key or f"{ns}/k{i}", scope=f"{ns}/scope", namespace=ns, question=f"question {i} ü",
        answer=f"answer {i}", vector=rng.standard_normal(DIM).astype(np.float32), created_at=created,
        expires_at=None if ttl is None else created + ttl, model="m", tier="small", embedder="e", tags=tuple(tags),
    )


@pytest.fixture
def store(redis_url):
    clock = ManualClock()
    with RedisStore.from_url(redis_url, prefix="t", clock=clock, max_entries=50, max_changes=1000) as s:
        s.test_clock = clock
        yield s


def test_round_trip_keeps_every_field_and_the_vector(store):
    e = entry(1, tags=[("topic", "speed-limits")])
    store.put_many([e])
    got = store.get("id1", now=1_000.0)
    assert got is not None and got == e and got.tags == (("topic", "speed-limits"),)
    np.testing.assert_allclose(got.vector, e.vector / np.linalg.norm(e.vector), rtol=1e-6)
    assert store.get_by_key("default/k1", now=1_000.0).id == "id1"
    assert store.get("missing", now=1_000.0) is None and len(store) == 1


def test_float16_vectors_are_half_the_bytes_and_close(redis_url):
    import redis

    with RedisStore.from_url(redis_url, prefix="h", vector_dtype="float16") as s:
        e = entry(2)
        s.put_many([e])
        raw = redis.Redis.from_url(redis_url).hget("{h}:e:id2", "v")
        assert len(raw) == DIM * 2
        unit = e.vector / np.linalg.norm(e.vector)
        assert float(s.get("id2", now=1_000.0).vector @ unit) > 0.999


def test_same_key_replaces_and_the_feed_says_so(store):
    store.put_many([entry(1, key="same")])
    store.put_many([entry(2, key="same")])
    assert store.get("id1", now=1_000.0) is None and store.get_by_key("same", now=1_000.0).id == "id2"
    newest, changes = store.changes(0)
    assert newest == 3 and [(c.seq, c.op, c.entry_id) for c in changes] == [
        (1, "put", "id1"), (2, "delete", "id1"), (3, "put", "id2")]
    assert store.changes(3) == (3, []) and store.changes(2**62) == (3, [])


def test_ttl_does_not_slide_on_reads_and_expiry_reaches_the_feed(store):
    store.sync_interval_s = 0  # a read vouches for the feed head for that long: here the wall clock jumps instead
    store.put_many([entry(1, ttl=10.0), entry(2)])
    for now in (1_001.0, 1_005.0, 1_009.9):  # frequent reads do not keep it alive
        assert store.get("id1", now=now) is not None
    store.test_clock.now = 1_010.0
    newest, changes = store.changes(2)  # whoever syncs sweeps the due deadline
    assert [(c.op, c.entry_id) for c in changes] == [("delete", "id1")] and newest == 3
    assert store.get("id1", now=1_000.0) is None and [e.id for e in store.entries()] == ["id2"]


def test_max_entries_evicts_least_recently_used(redis_url):
    clock = ManualClock()
    with RedisStore.from_url(redis_url, prefix="lru", max_entries=3, clock=clock) as s:
        for i in range(3):
            clock.now = 1_000.0 + i
            s.put_many([entry(i)])
        s.get("id0", now=1_010.0)  # used: now the most recent
        clock.now = 1_011.0
        s.put_many([entry(3)])
        assert sorted(e.id for e in s.entries()) == ["id0", "id2", "id3"] and len(s) == 3


def test_invalidate_by_namespace_and_tags_only_touches_matches(store):
    store.put_many([entry(1, ns="a", tags=[("topic", "speed-limits")]), entry(2, ns="a", tags=[("topic", "parking")]),
                    entry(3, ns="b", tags=[("topic", "speed-limits")]), entry(4, ns="b")])
    assert store.invalidate(where={"topic": "speed-limits"}, namespace="a") == 1
    assert store.invalidate(where={"topic": "speed-limits"}) == 1
    assert sorted(e.id for e in store.entries()) == ["id2", "id4"]
    assert store.invalidate(namespace="b") == 1 and [e.id for e in store.entries()] == ["id2"]
    with pytest.raises(InvalidRequest):
        store.invalidate()
    with pytest.raises(InvalidRequest):
        store.invalidate(where={"bad name": "x"})
    _, changes = store.changes(4)
    assert sorted(c.entry_id for c in changes if c.op == "delete") == ["id1", "id3", "id4"]


def test_namespaces_and_prefixes_are_isolated(redis_url):
    with RedisStore.from_url(redis_url, prefix="one") as a, RedisStore.from_url(redis_url, prefix="two") as b:
        a.put_many([entry(1, ns="tenant-a")])
        b.put_many([entry(1, ns="tenant-b")])
        assert a.get("id1", now=1_000.0).namespace == "tenant-a"
        assert b.get("id1", now=1_000.0).namespace == "tenant-b"
        a.invalidate(namespace="tenant-b")
        assert len(a) == 1 and len(b) == 1
        index = FaissIndex(DIM)
        replica = Replica(a, index)
        replica.sync()
        vec = entry(1, ns="tenant-a").vector
        assert replica.nearest(vec, "tenant-b/scope", 4, 1_000.0) == []
        assert [c.entry.id for c in replica.nearest(vec, "tenant-a/scope", 4, 1_000.0)] == ["id1"]


def test_trimmed_feed_makes_a_follower_rebuild(redis_url):
    with RedisStore.from_url(redis_url, prefix="trim", max_changes=5) as s:
        replica = Replica(s, FaissIndex(DIM))
        replica.sync()
        for i in range(400):  # MAXLEN ~ trims whole stream nodes (100 records each by default)
            s.put_many([entry(i)])
        assert s.changes(0) is None
        replica.sync()
        assert replica.rebuilds == 2 and len(replica.index) == 400


def test_two_replicas_follow_one_store(redis_url):
    with RedisStore.from_url(redis_url, prefix="f", sync_interval_s=0) as s1, \
            RedisStore.from_url(redis_url, prefix="f", sync_interval_s=0) as s2:
        r1, r2 = Replica(s1, FaissIndex(DIM)), Replica(s2, FaissIndex(DIM))
        r1.sync(), r2.sync()
        r1.insert([entry(7)])
        found = r2.nearest(entry(7).vector, "default/scope", 1, 1_000.0)
        assert [c.entry.id for c in found] == ["id7"]
        r1.delete(["id7"])
        r2.sync()
        assert "id7" not in r2.index


def test_bad_input_changes_nothing(store):
    with pytest.raises(InvalidRequest):
        store.put_many([entry(1), "not an entry"])  # type: ignore[list-item]
    with pytest.raises(InvalidRequest):
        store.put_many([entry(2, tags=[("topic", "a\nb")])])
    assert len(store) == 0 and store.changes(0) == (0, [])


def test_unreachable_redis_is_store_unavailable_and_logged_once(redis_server, caplog):
    from semroute.testing.redis_server import RedisServer

    dead = RedisServer()  # never started: its port refuses connections
    s = RedisStore.from_url(dead.url, prefix="x")
    with caplog.at_level(logging.WARNING, logger="semroute"):
        for _ in range(3):
            with pytest.raises(StoreUnavailable):
                s.get("id", now=0.0)
    assert sum("unreachable" in r.getMessage() for r in caplog.records) == 1
    s.close()
    dead.close()


def test_urls_are_parsed_and_never_show_secrets():
    client = connect("rediss://user:s3cret@cache.example:6380/3")
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"], kwargs["password"], kwargs["username"]) == (
        "cache.example", 6380, 3, "s3cret", "user")
    assert "SSL" in client.connection_pool.connection_class.__name__
    store = RedisStore.from_url("redis://:hunter2@localhost:6379/1?password=hunter3")
    assert "hunter" not in repr(store) and "hunter" not in redact_url("redis://u:hunter2@h:1/0?password=hunter3")
    with pytest.raises(ConfigError) as info:
        connect("http://:hunter2@localhost")
    assert "hunter2" not in str(info.value)
    with pytest.raises(ConfigError):
        RedisStore(connect("redis://localhost"), prefix="{bad}")


def test_password_protected_server(tmp_path):
    from semroute.testing.redis_server import RedisServer, redis_server_binary

    if redis_server_binary() is None:
        pytest.skip("redis-server is not installed")
    with RedisServer(password="pw-123", appendfsync="no") as server:
        with RedisStore.from_url(server.url, prefix="pw") as s:
            s.put_many([entry(1)])
            assert len(s) == 1
        wrong = server.url.replace("pw-123", "nope")
        with RedisStore.from_url(wrong, prefix="pw") as s, pytest.raises(Exception) as info:
            len(s)
        assert "pw-123" not in str(info.value) and "nope" not in str(info.value)
