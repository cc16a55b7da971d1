"""A router saves its index with the feed position on close and loads it on restart (embedded store and Redis)."""

from __future__ import annotations

import numpy as np
import pytest

from redis_child import WordEmbedder
from semroute import FixedTier, Router, RouterSettings, ThresholdVerifier, Tier
from semroute.cache import FaissIndex, MemoryStore
from semroute.settings import CacheSettings
from semroute.types import CacheEntry


def make(tmp_path, fake_ollama) -> Router:
    return Router(tiers={"small": Tier("llama3.2:3b", (fake_ollama.url,))}, classifier=FixedTier("small"),
                  verifier=ThresholdVerifier(0.8), embedder=WordEmbedder(), data_dir=tmp_path,
                  settings=RouterSettings(cache=CacheSettings(consensus=False, index="hnsw")))


def test_restart_loads_the_saved_index_instead_of_rebuilding(tmp_path, fake_ollama):
    with make(tmp_path, fake_ollama) as router:
        router.warm([(f"alpha{i} beta{i} gamma{i}", f"answer {i}") for i in range(50)])
    with make(tmp_path, fake_ollama) as router:
        hit = router.ask("alpha7 beta7 gamma7 please")
        assert hit.source == "semantic" and hit.text == "answer 7"
        assert router.pipeline.cache.rebuilds == 0 and len(router.pipeline.cache.index) == 50
        router.warm([("a later question", "later")])
    with make(tmp_path, fake_ollama) as router:  # the snapshot saved on close includes the later write
        assert router.ask("a later question please").text == "later"
        assert router.pipeline.cache.rebuilds == 0 and fake_ollama.stats().count("chat") == 0


def test_a_snapshot_behind_the_journal_is_rebuilt(tmp_path, fake_ollama):
    with make(tmp_path, fake_ollama) as router:
        router.warm([("first question here", "first")])
        scope = router.pipeline.plan("x", namespace=None, system=None, tier=None).scope
    vector = WordEmbedder().embed(["written behind its back"])[0]
    with MemoryStore(tmp_path) as store:  # another writer; the saved index does not know this entry
        store.put_many([CacheEntry(id="other", key="k-other", scope=scope, namespace="default",
                                   question="written behind its back", answer="other", vector=vector,
                                   created_at=0.0, embedder="test-words")])
    with make(tmp_path, fake_ollama) as router:
        assert router.ask("written behind its back please").text == "other"
        assert router.pipeline.cache.rebuilds == 1


def test_index_save_load_round_trip_and_mismatch(tmp_path):
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((300, 16)).astype(np.float32)
    entries = [CacheEntry(id=f"e{i}", key=f"k{i}", scope="s" if i % 2 else "t", namespace="n", question="q",
                          answer="a", vector=v, created_at=0.0) for i, v in enumerate(vectors)]
    index = FaissIndex(16, kind="hnsw")
    index.add(entries)
    index.remove(["e1", "e2"])
    index.save(tmp_path / "snap")
    loaded = FaissIndex(16, kind="hnsw")
    assert loaded.load(tmp_path / "snap") and len(loaded) == 298 and "e1" not in loaded
    for v in vectors[:20]:
        assert loaded.search(v, scope="s", k=3) == index.search(v, scope="s", k=3)
    assert not FaissIndex(8, kind="hnsw").load(tmp_path / "snap")
    assert not FaissIndex(16, kind="flat").load(tmp_path / "snap")
    assert not FaissIndex(16).load(tmp_path / "missing")
    with pytest.raises(Exception):
        loaded.add([CacheEntry(id="x", key="k", scope="s", namespace="n", question="q", answer="a",
                               vector=np.ones(8, np.float32), created_at=0.0)])


def test_float16_vectors_in_store_and_index_still_find_each_entry(tmp_path, fake_ollama):
    settings = RouterSettings(cache=CacheSettings(consensus=False, index="hnsw", vectors="float16"))
    kwargs = dict(tiers={"small": Tier("llama3.2:3b", (fake_ollama.url,))}, classifier=FixedTier("small"),
                  verifier=ThresholdVerifier(0.8), embedder=WordEmbedder(), data_dir=tmp_path, settings=settings)
    with Router(**kwargs) as router:
        router.warm([(f"alpha{i} beta{i} gamma{i}", f"answer {i}") for i in range(40)])
        entry = next(iter(router.pipeline.cache.store.entries()))
        assert entry.vector.dtype == np.float16 and router.pipeline.cache.index.storage == "float16"
    with Router(**kwargs) as router:  # reloaded from the float32 journal and the fp16 snapshot
        hit = router.ask("alpha9 beta9 gamma9 please")
        assert (hit.source, hit.text, router.pipeline.cache.rebuilds) == ("semantic", "answer 9", 0)
        assert abs(hit.similarity - 3 / np.sqrt(12)) < 5e-3


def make_redis(tmp_path, fake_ollama, redis_url, **kwargs) -> Router:
    return Router(tiers={"small": Tier("llama3.2:3b", (fake_ollama.url,))}, classifier=FixedTier("small"),
                  verifier=ThresholdVerifier(0.8), embedder=WordEmbedder(), data_dir=tmp_path, redis_url=redis_url,
                  settings=RouterSettings(cache=CacheSettings(consensus=False, index="hnsw")), **kwargs)


def test_a_router_following_redis_restarts_from_its_saved_index(tmp_path, fake_ollama, redis_url):
    with make_redis(tmp_path, fake_ollama, redis_url) as router:
        router.warm([(f"alpha{i} beta{i} gamma{i}", f"answer {i}") for i in range(50)])
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("index-")]  # saved with its feed position
    with make_redis(tmp_path, fake_ollama, redis_url) as router:
        hit = router.ask("alpha7 beta7 gamma7 please")
        assert hit.source == "semantic" and hit.text == "answer 7"
        assert router.pipeline.cache.rebuilds == 0 and len(router.pipeline.cache.index) == 50
    assert fake_ollama.stats().count("chat") == 0


def test_a_saved_redis_index_catches_up_with_writes_and_deletes_of_other_processes(tmp_path, fake_ollama, redis_url):
    with make_redis(tmp_path, fake_ollama, redis_url) as router:
        router.warm([("first question here", "first"), ("second question here", "second")])
    with make_redis(tmp_path / "elsewhere", fake_ollama, redis_url) as other:  # another process, its own data dir
        other.warm([("written behind its back", "other")])
        gone = other.pipeline.store.get_by_key(other.pipeline.plan("first question here", namespace=None, system=None,
                                                                   tier=None).key, now=0.0)
        other.pipeline.store.delete([gone.id])
    with make_redis(tmp_path, fake_ollama, redis_url) as router:
        assert router.ask("written behind its back please").text == "other"  # from the feed since the snapshot
        assert router.pipeline.cache.rebuilds == 0 and len(router.pipeline.cache.index) == 2
        assert gone.id not in router.pipeline.cache.index


def test_a_redis_index_snapshot_is_not_taken_for_another_servers(tmp_path, fake_ollama, redis_url):
    import redis as client_lib

    with make_redis(tmp_path, fake_ollama, redis_url) as router:
        router.warm([("first question here", "first")])
    other_db = redis_url.rsplit("/", 1)[0] + "/1"  # another database: another feed, another snapshot
    client_lib.Redis.from_url(other_db).flushdb()
    with make_redis(tmp_path, fake_ollama, other_db) as router:
        router.pipeline.cache.sync()
        assert len(router.pipeline.cache.index) == 0
        assert router.ask("first question here please").source != "semantic"
    assert len([p for p in tmp_path.iterdir() if p.name.startswith("index-")]) == 2
