"""Lookups on the event loop: with a batching embedder, ``Router.aask`` reads the exact and the
semantic tier on the loop itself only when nothing can make it wait, else in a worker thread.

Real parts throughout: a MemoryStore journaling to disk, a FaissIndex, a BatchingEmbedder, FakeOllama.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time

import pytest

from gateway_kit import WordEmbedder, tiers_at
from semroute import BatchingEmbedder, FixedTier, Router, ThresholdVerifier
from semroute.cache import FaissIndex, MemoryStore
from semroute.settings import CacheSettings, RouterSettings
from semroute.cache.replica import Replica
from semroute.types import Candidate, Verdict


class ThreadNotingStore(MemoryStore):
    """A MemoryStore that notes which thread read it by exact key (every ``exact`` step does)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.readers: list[int] = []

    def get_by_key(self, key, *, now=None):
        self.readers.append(threading.get_ident())
        return super().get_by_key(key, now=now)


class ThreadNotingVerifier:
    """A caller's own verifier (it might do I/O): it notes the thread that asked it."""

    def __init__(self) -> None:
        self.inner = ThresholdVerifier(0.9)
        self.threads: list[int] = []

    def accept(self, query: str, candidate: Candidate) -> Verdict:
        self.threads.append(threading.get_ident())
        return self.inner.accept(query, candidate)


def _router(tmp_path, fake, *, store=None, verifier=None, batch=True) -> Router:
    embedder = BatchingEmbedder(WordEmbedder()) if batch else WordEmbedder()
    return Router(tiers=tiers_at(fake.url), embedder=embedder, store=store, data_dir=tmp_path,
                  verifier=verifier or ThresholdVerifier(0.9), classifier=FixedTier("small"))


def _on_loop(router: Router, body):
    """(the loop's thread id, ``await body()``) on a fresh event loop, the router's store and
    model loaded first and the router closed after."""
    async def main():
        router.pipeline.prepare()
        return threading.get_ident(), await body()

    try:
        return asyncio.run(main())
    finally:
        router.close()


def test_with_a_batching_embedder_lookups_run_on_the_loop_and_answers_are_the_same(tmp_path, fake_ollama):
    store = ThreadNotingStore(tmp_path / "store")
    router = _router(tmp_path, fake_ollama, store=store)

    async def asks():
        assert router.pipeline.looks_up_in_place
        first = await router.aask("how do I renew my driving licence")
        router.pipeline.behind.flush()
        again = await router.aask("how do I renew my driving licence")
        paraphrase = await router.aask("how do I renew my driving licence please")
        return first, again, paraphrase

    loop_thread, (first, again, paraphrase) = _on_loop(router, asks)
    assert first.source == "small" and again.source == "exact" and paraphrase.source == "semantic"
    assert again.text == first.text == paraphrase.text
    assert set(store.readers) == {loop_thread}  # every exact read ran on the loop: no thread hop
    assert {"embed", "semantic"} <= set(paraphrase.timings_ms)


def test_a_store_busy_in_another_thread_sends_the_lookup_to_a_worker_and_the_loop_keeps_running(tmp_path, fake_ollama):
    store = ThreadNotingStore(tmp_path / "store")
    router = _router(tmp_path, fake_ollama, store=store)
    router.pipeline.prepare()
    held, release = threading.Event(), threading.Event()

    def writer() -> None:  # stands for a journal commit holding the store's lock
        assert store.try_hold()
        held.set()
        release.wait(10)
        store.release_hold()

    async def main():
        loop_thread = threading.get_ident()
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.005)

        tick_task = asyncio.create_task(ticker())
        ask = asyncio.create_task(router.aask("where do I pay a parking fine"))
        await asyncio.sleep(0.3)
        ticks_while_held, done_while_held = ticks, ask.done()
        release.set()
        answer = await ask
        tick_task.cancel()
        return loop_thread, ticks_while_held, done_while_held, answer

    thread = threading.Thread(target=writer)
    thread.start()
    held.wait(10)
    try:
        loop_thread, ticks, done_early, answer = asyncio.run(main())
    finally:
        release.set()
        thread.join(10)
        router.close()
    assert not done_early  # it waited for the store, but in a worker thread ...
    assert ticks >= 20  # ... while the loop went on (a blocked loop would have ticked once)
    assert answer.source == "small"
    assert store.readers and loop_thread not in store.readers


def test_a_callers_own_verifier_is_never_asked_on_the_loop(tmp_path, fake_ollama):
    verifier = ThreadNotingVerifier()
    router = _router(tmp_path, fake_ollama, verifier=verifier)

    async def asks():
        await router.aask("what is the speed limit in the city")
        router.pipeline.behind.flush()
        return await router.aask("what is the speed limit in the city please")

    loop_thread, hit = _on_loop(router, asks)
    assert hit.source == "semantic"
    assert verifier.threads and loop_thread not in verifier.threads


def test_without_a_batching_embedder_aask_keeps_one_worker_trip(tmp_path, fake_ollama):
    store = ThreadNotingStore(tmp_path / "store")
    router = _router(tmp_path, fake_ollama, store=store, batch=False)
    loop_thread, answer = _on_loop(router, lambda: router.aask("how long is a learner permit valid"))
    assert answer.source == "small"
    assert store.readers and loop_thread not in store.readers


def test_try_hold_takes_all_or_nothing(tmp_path):
    store = MemoryStore(tmp_path / "store")
    replica = Replica(store, FaissIndex(WordEmbedder.dim))
    replica.sync()
    assert replica.try_hold()
    assert replica.try_hold()  # re-entrant in the holding thread
    assert not replica.release_hold()
    assert not replica.release_hold()
    taken = []
    other = threading.Thread(target=lambda: taken.append(replica.try_hold()))

    assert store.try_hold()  # a writer of the store in this thread: another thread gets nothing
    other.start()
    other.join(10)
    store.release_hold()
    assert taken == [False]
    check = threading.Thread(target=lambda: taken.append(store.try_hold() and (store.release_hold() or True)))
    check.start()
    check.join(10)
    assert taken == [False, True]  # the failed attempt left no lock behind


def test_try_hold_refuses_an_index_far_behind_its_store(tmp_path, embedder_free_entries):
    store = MemoryStore(tmp_path / "store")
    replica = Replica(store, FaissIndex(WordEmbedder.dim))
    replica.sync()
    store.put_many(embedder_free_entries(70))  # a warm-up's batch the index has not applied yet
    assert not replica.try_hold(max_behind=64)
    assert replica.try_hold(max_behind=100)
    replica.release_hold()
    replica.sync()
    assert replica.try_hold(max_behind=0)
    replica.release_hold()


def test_stores_that_read_over_a_network_never_hold(redis_url):
    import redis

    from semroute.cache import RedisStore

    client = redis.Redis.from_url(redis_url)
    replica = Replica(RedisStore(client), FaissIndex(WordEmbedder.dim))
    try:
        replica.sync()
        assert not replica.try_hold()
        other = threading.Thread(target=replica.sync)  # and it left no lock behind
        other.start()
        other.join(10)
        assert not other.is_alive()
    finally:
        client.close()


@pytest.fixture
def embedder_free_entries():
    import numpy as np

    from semroute.types import CacheEntry

    def make(n: int) -> list[CacheEntry]:
        vectors = WordEmbedder().embed([f"question number {i}" for i in range(n)])
        return [CacheEntry(id=f"{i:032x}", key=f"{i:032x}", scope="s", namespace="s", question=f"question number {i}",
                           answer="a", vector=np.asarray(v), created_at=time.time()) for i, v in enumerate(vectors)]

    return make



def test_a_held_read_commits_nothing_and_leaves_the_expired_entry_to_a_purge(tmp_path, embedder_free_entries):
    store = MemoryStore(tmp_path / "store")
    [entry] = embedder_free_entries(1)
    entry = dataclasses.replace(entry, expires_at=entry.created_at + 1)
    store.put_many([entry])
    head, _ = store.changes(0)
    assert store.try_hold()
    assert store.get_by_key(entry.key, now=entry.created_at + 5) is None  # never served ...
    assert store.release_hold()  # ... and left for a purge,
    assert store.changes(head) == (head, [])  # not journaled on the holder's thread
    assert store.try_hold() and not store.release_hold()  # asked for once
    assert store.purge_expired(entry.created_at + 5) == 1
    assert [change.op for change in store.changes(head)[1]] == ["delete"]


def test_an_expired_entry_met_on_the_loop_is_purged_in_the_store_thread(tmp_path, fake_ollama):
    now = [1_000_000.0]
    store = MemoryStore(tmp_path / "store", clock=lambda: now[0])
    router = Router(tiers=tiers_at(fake_ollama.url), embedder=BatchingEmbedder(WordEmbedder()), store=store,
                    data_dir=tmp_path, verifier=ThresholdVerifier(0.9), classifier=FixedTier("small"),
                    settings=RouterSettings(cache=CacheSettings(ttl_s=60)), clock=lambda: now[0])

    async def ask():
        return await router.aask("how many points make a licence suspension")

    try:
        router.pipeline.prepare()
        first = asyncio.run(ask())
        router.pipeline.behind.flush()
        assert asyncio.run(ask()).source == "exact"
        now[0] += 120  # past its TTL
        again = asyncio.run(ask())
        router.pipeline.behind.flush()
        purged = router.metrics.count("cache.expired_purged")
    finally:
        router.close()
    assert first.source == "small" and again.source == "small"
    assert purged == 1


def test_over_a_redis_store_the_whole_lookup_stays_in_one_worker_trip(tmp_path, fake_ollama, redis_url):
    router = Router(tiers=tiers_at(fake_ollama.url), embedder=BatchingEmbedder(WordEmbedder()), redis_url=redis_url,
                    data_dir=tmp_path, verifier=ThresholdVerifier(0.9), classifier=FixedTier("small"))

    async def main():
        first = await router.aask("can I drive on a foreign licence")
        router.pipeline.behind.flush()
        return first, await router.aask("can I drive on a foreign licence")

    try:
        router.pipeline.prepare()
        assert not router.pipeline.looks_up_in_place
        first, again = asyncio.run(main())
    finally:
        router.close()
    assert first.source == "small" and again.source == "exact"


class LoopEmbedder(WordEmbedder):
    """A caller's own ``AsyncEmbedder`` (not semroute's batcher): notes which path each call took,
    and each read of ``dim`` (a real model's ``dim`` loads it: building a router must not)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    @property
    def dim(self):
        self.calls.append("dim")
        return WordEmbedder.dim

    def embed(self, texts):
        self.calls.append("embed")
        return super().embed(texts)

    async def aembed(self, texts):
        self.calls.append("aembed")
        return super().embed(texts)


def test_any_async_embedder_is_awaited_on_the_loop_and_a_plain_one_is_not(tmp_path, fake_ollama):
    from semroute import AsyncEmbedder

    own = LoopEmbedder()
    assert isinstance(own, AsyncEmbedder) and not isinstance(WordEmbedder(), AsyncEmbedder)
    assert own.calls == []  # the check read no property
    router = Router(tiers=tiers_at(fake_ollama.url), embedder=own, data_dir=tmp_path / "own",
                    verifier=ThresholdVerifier(0.9), classifier=FixedTier("small"))
    assert router.pipeline.embeds_async and own.calls == []  # decided without loading anything

    async def asks():
        assert router.pipeline.embeds_async and router.pipeline.looks_up_in_place
        return await router.aask("is a helmet required on an electric scooter")

    _loop, answer = _on_loop(router, asks)
    assert answer.source == "small" and "aembed" in own.calls and "embed" not in own.calls

    plain = _router(tmp_path / "plain", fake_ollama, batch=False)

    async def plain_asks():
        assert not plain.pipeline.embeds_async and not plain.pipeline.looks_up_in_place
        return await plain.aask("is a helmet required on an electric scooter")

    assert _on_loop(plain, plain_asks)[1].source == "small"
