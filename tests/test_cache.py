"""The cache: MemoryStore (truth), FaissIndex (replica) and SemanticCache (the tiers).

No embedding model: vectors are deterministic random unit vectors; keys and scopes come from
``semroute.request`` exactly as the router builds them.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from semroute.cache import Change, FaissIndex, Index, MemoryStore, Store
from semroute.hits import SemanticCache
from semroute.errors import ConfigError, DimensionMismatch, InvalidRequest, StoreError, StoreUnavailable
from semroute.request import exact_key, normalise, policy_fingerprint, scope_of
from semroute.types import CacheEntry, Candidate, Verdict
from semroute.hits.verify import ThresholdVerifier
from semroute.testing import ManualClock

DIM = 16
REPO = Path(__file__).resolve().parents[1]
POLICY = policy_fingerprint(models={"small": "s", "large": "l"}, system=None, embedder="test")


def unit_vectors(n: int, seed: int = 0, dim: int = DIM) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def near(vector: np.ndarray, amount: float, seed: int = 1) -> np.ndarray:
    """A unit vector at a small angle from ``vector``."""
    noise = np.random.default_rng(seed).standard_normal(vector.shape).astype(np.float32)
    out = vector + amount * noise / np.linalg.norm(noise)
    return out / np.linalg.norm(out)


def entry(question: str, vector: np.ndarray, *, namespace: str = "tenant-a", entry_id: str | None = None,
          expires_at: float | None = None, answer: str | None = None) -> CacheEntry:
    scope = scope_of(namespace, POLICY)
    return CacheEntry(
        id=entry_id or f"{namespace}/{question}", key=exact_key(scope, normalise(question)), scope=scope,
        namespace=namespace, question=question, answer=answer or f"answer to {question}",
        vector=vector, created_at=0.0, expires_at=expires_at, model="s", tier="small", embedder="test",
    )


def make_cache(store: MemoryStore | None = None, *, verifier=None, top_k: int = 4, clock=None) -> SemanticCache:
    clock = clock or ManualClock()
    return SemanticCache(store if store is not None else MemoryStore(clock=clock), FaissIndex(DIM),
                         verifier or ThresholdVerifier(0.9), top_k=top_k, clock=clock)


SCOPE_A = scope_of("tenant-a", POLICY)


# -- exact and semantic tiers ------------------------------------------------------------------

def test_exact_hit_by_key_and_miss_for_other_key():
    cache = make_cache()
    e = entry("What is the capital of France?", unit_vectors(1)[0])
    cache.insert([e])
    hit = cache.exact(exact_key(SCOPE_A, normalise("what is the capital of france")), now=1000.0)
    assert hit is not None and hit.entry.id == e.id and hit.source == "exact" and hit.similarity == 1.0
    assert cache.exact(exact_key(SCOPE_A, normalise("What is the capital of Spain?")), now=1000.0) is None
    assert cache.exact(exact_key(scope_of("tenant-b", POLICY), normalise(e.question)), now=1000.0) is None


def test_semantic_finds_nearest_within_top_k_sorted():
    vectors = unit_vectors(60)
    cache = make_cache(top_k=3)
    cache.insert([entry(f"q{i}", v) for i, v in enumerate(vectors)])
    hit, judged = cache.semantic("q17 reworded", near(vectors[17], 0.2), SCOPE_A, now=1000.0)
    assert hit is not None and hit.entry.id == "tenant-a/q17" and hit.source == "semantic"
    assert hit.verdict is not None and hit.verdict.accepted and hit.similarity > 0.95
    # The nearest candidate was accepted and the cosine gate ranks by cosine: judging stopped there.
    assert [(c.entry.id, v.accepted) for c, v in judged] == [("tenant-a/q17", True)]


def test_semantic_miss_when_verifier_rejects_all_still_reports_candidates():
    vectors = unit_vectors(5)
    cache = make_cache()
    cache.insert([entry(f"q{i}", v) for i, v in enumerate(vectors)])
    hit, judged = cache.semantic("unrelated", unit_vectors(1, seed=99)[0], SCOPE_A, now=1000.0)
    assert hit is None
    assert len(judged) == 4 and not any(verdict.accepted for _, verdict in judged)


class RejectIds:
    """Test double of the verifier seam: rejects given entry ids, accepts the rest."""

    def __init__(self, rejected: set[str]) -> None:
        self.rejected = rejected
        self.asked: list[str] = []

    def accept(self, query: str, candidate: Candidate) -> Verdict:
        self.asked.append(candidate.entry.id)
        ok = candidate.entry.id not in self.rejected
        return Verdict(accepted=ok, score=0.9 if ok else 0.1, reason="listed" if not ok else "ok")


class PreferAnswer:
    """Test double: accepts all, but scores the candidate whose answer contains ``word`` highest."""

    def __init__(self, word: str) -> None:
        self.word = word

    def accept(self, query: str, candidate: Candidate) -> Verdict:
        return Verdict(accepted=True, score=1.0 if self.word in candidate.entry.answer else 0.5, reason="t")


def test_verifier_rejecting_the_nearest_lets_the_second_win():
    base = unit_vectors(1)[0]
    nearest, second = near(base, 0.05, seed=2), near(base, 0.3, seed=3)
    verifier = RejectIds({"tenant-a/highway"})
    cache = make_cache(verifier=verifier)
    cache.insert([entry("highway", nearest), entry("city", second), entry("far", unit_vectors(1, seed=7)[0])])
    hit, judged = cache.semantic("speed limit in town", base, SCOPE_A, now=1000.0)
    assert judged[0][0].entry.id == "tenant-a/highway"  # it really was the nearest
    assert hit is not None and hit.entry.id == "tenant-a/city"
    assert set(verifier.asked) == {"tenant-a/highway", "tenant-a/city", "tenant-a/far"}


def test_best_verdict_score_wins_over_similarity():
    base = unit_vectors(1)[0]
    cache = make_cache(verifier=PreferAnswer("right"))
    cache.insert([entry("close", near(base, 0.05), answer="wrong"),
                  entry("less close", near(base, 0.4, seed=5), answer="right")])
    hit, judged = cache.semantic("q", base, SCOPE_A, now=1000.0)
    assert judged[0][0].entry.answer == "wrong"
    assert hit is not None and hit.entry.answer == "right"


def test_scope_isolation_even_with_identical_vectors():
    v = unit_vectors(1)[0]
    cache = make_cache(verifier=ThresholdVerifier(-1.0))  # accepts anything: only the scope filters
    cache.insert([entry("secret", v, namespace="tenant-b")])
    hit, judged = cache.semantic("secret", v, SCOPE_A, now=1000.0)
    assert hit is None and judged == []
    cache.insert([entry("mine", unit_vectors(1, seed=4)[0])])
    hit, judged = cache.semantic("secret", v, SCOPE_A, now=1000.0)
    assert hit is not None and hit.entry.namespace == "tenant-a" and len(judged) == 1
    other_policy = scope_of("tenant-a", policy_fingerprint(models={"small": "x"}, system="be brief", embedder="test"))
    assert cache.semantic("secret", v, other_policy, now=1000.0) == (None, [])


# -- TTL, LRU and replacement -----------------------------------------------------------------

def test_ttl_expiry_with_injected_clock():
    clock = ManualClock(1000.0)
    store = MemoryStore(clock=clock)
    cache = make_cache(store, clock=clock)
    v = unit_vectors(1)[0]
    e = entry("q", v, expires_at=1100.0)
    cache.insert([e])
    clock.now = 1099.9
    assert cache.exact(e.key) is not None
    assert cache.semantic("q", v, SCOPE_A)[0] is not None
    clock.now = 1100.0
    assert cache.exact(e.key) is None
    assert len(store) == 0
    newest, changes = store.changes(0)
    assert changes[-1] == Change(newest, "delete", e.id)
    assert cache.semantic("q", v, SCOPE_A) == (None, [])
    assert len(cache.index) == 0  # the delete travelled to the index through the feed


def test_expired_neighbours_do_not_crowd_out_a_live_candidate():
    clock = ManualClock(0.0)
    cache = make_cache(MemoryStore(clock=clock), verifier=ThresholdVerifier(0.5), top_k=2, clock=clock)
    base = unit_vectors(1)[0]
    cache.insert([entry("old1", near(base, 0.05, seed=2), expires_at=10.0),
                  entry("old2", near(base, 0.06, seed=3), expires_at=10.0),
                  entry("live", near(base, 0.5, seed=4))])
    clock.now = 10.0
    hit, judged = cache.semantic("q", base, SCOPE_A)
    assert hit is not None and hit.entry.question == "live"
    assert [c.entry.question for c, _ in judged] == ["live"] and len(cache.index) == 1


def test_writes_drop_expired_entries_and_publish_deletes():
    clock = ManualClock(0.0)
    store = MemoryStore(clock=clock)
    vs = unit_vectors(3)
    store.put_many([entry("a", vs[0], expires_at=5.0), entry("b", vs[1], expires_at=50.0)])
    clock.now = 6.0
    store.put_many([entry("c", vs[2])])
    assert "tenant-a/a" not in store and "tenant-a/b" in store
    _, changes = store.changes(2)
    assert [(c.op, c.entry_id) for c in changes] == [("delete", "tenant-a/a"), ("put", "tenant-a/c")]


def test_purge_expired_and_entries_skip_expired():
    clock = ManualClock(0.0)
    store = MemoryStore(clock=clock)
    vs = unit_vectors(3)
    store.put_many([entry("a", vs[0], expires_at=10.0), entry("b", vs[1], expires_at=20.0), entry("c", vs[2])])
    clock.now = 15.0
    assert {e.question for e in store.entries()} == {"b", "c"}
    assert store.purge_expired(15.0) == 1 and len(store) == 2


def test_lru_eviction_at_max_entries_reads_refresh_recency():
    store = MemoryStore(max_entries=3)
    cache = make_cache(store)
    vs = unit_vectors(4)
    cache.insert([entry("a", vs[0]), entry("b", vs[1]), entry("c", vs[2])])
    assert cache.exact(entry("a", vs[0]).key, now=1.0) is not None  # a is now most recent
    cache.insert([entry("d", vs[3])])
    assert len(store) == 3 and "tenant-a/b" not in store
    assert {"tenant-a/a", "tenant-a/c", "tenant-a/d"} <= {e.id for e in store.entries()}
    _, changes = store.changes(0)
    assert Change(changes[-1].seq, "delete", "tenant-a/b") == changes[-1]
    assert "tenant-a/b" not in cache.index and len(cache.index) == 3
    store.get("tenant-a/c", now=1.0)  # get by id also counts as use
    cache.insert([entry("e", unit_vectors(1, seed=9)[0])])
    assert "tenant-a/a" not in store and "tenant-a/c" in store


def test_same_key_replaces_older_entry():
    cache = make_cache()
    v1, v2 = unit_vectors(2)
    old = entry("Capital of France?", v1, entry_id="old", answer="Paris?")
    new = entry("capital of  france", v2, entry_id="new", answer="Paris")
    assert old.key == new.key
    cache.insert([old])
    _, before = cache.store.changes(0)
    cache.insert([new])
    assert cache.exact(new.key, now=1.0).entry.id == "new"
    assert len(cache) == 1 and "old" not in cache.index and "new" in cache.index
    _, after = cache.store.changes(before[-1].seq)
    assert [(c.op, c.entry_id) for c in after] == [("delete", "old"), ("put", "new")]
    assert cache.semantic("x", v1, SCOPE_A, now=1.0)[0] is None  # the old vector is gone too


def test_same_id_replaces_vector_in_index():
    index = FaissIndex(DIM)
    v1, v2 = unit_vectors(2)
    index.add([entry("q", v1)])
    index.add([entry("q", v2)])
    assert len(index) == 1
    assert index.search(v2, scope=SCOPE_A, k=5) == [("tenant-a/q", pytest.approx(1.0, abs=1e-5))]


# -- validation ----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "vector, error",
    [
        (np.full(DIM, np.nan, dtype=np.float32), InvalidRequest),
        (np.r_[np.ones(DIM - 1), np.inf], InvalidRequest),
        (np.zeros(DIM), InvalidRequest),
        (np.ones((2, DIM)), DimensionMismatch),
        (np.array([]), DimensionMismatch),
        (["a"] * DIM, InvalidRequest),
        (np.full(DIM, 1e300), InvalidRequest),  # overflows float32
    ],
)
def test_bad_vectors_rejected_and_nothing_stored(vector, error):
    store = MemoryStore()
    good = entry("good", unit_vectors(1)[0])
    with pytest.raises(error):
        store.put_many([good, entry("bad", vector)])
    assert len(store) == 0 and store.changes(0) == (0, [])


def test_wrong_dimension_rejected_by_scope_index_and_cache():
    store = MemoryStore()
    store.put_many([entry("a", unit_vectors(1)[0])])
    with pytest.raises(DimensionMismatch):
        store.put_many([entry("b", unit_vectors(1, dim=8)[0])])  # the scope already holds DIM
    store.put_many([entry("c", unit_vectors(1, dim=8)[0], namespace="other")])  # another scope may differ
    cache = make_cache()
    with pytest.raises(DimensionMismatch):
        cache.insert([entry("d", unit_vectors(1, dim=8)[0])])
    assert len(cache) == 0
    with pytest.raises(DimensionMismatch):
        cache.semantic("q", unit_vectors(1, dim=8)[0], SCOPE_A)
    with pytest.raises(DimensionMismatch):
        FaissIndex(DIM).add([entry("e", unit_vectors(1, dim=8)[0])])


def test_bad_arguments_are_typed_errors():
    store = MemoryStore()
    with pytest.raises(InvalidRequest):
        store.put_many(entry("a", unit_vectors(1)[0]))  # a single entry, not a sequence
    with pytest.raises(InvalidRequest):
        store.put_many([{"id": "x"}])
    with pytest.raises(InvalidRequest):
        store.put_many([dataclasses.replace(entry("a", unit_vectors(1)[0]), id="")])
    with pytest.raises(InvalidRequest):
        store.delete("abc")
    with pytest.raises(InvalidRequest):
        FaissIndex(DIM).search(unit_vectors(1)[0], scope=SCOPE_A, k=0)
    for bad in ({"dim": 0}, {"dim": DIM, "kind": "ivf"}):
        with pytest.raises(ConfigError):
            FaissIndex(**bad)
    with pytest.raises(ConfigError):
        MemoryStore(max_entries=0)
    with pytest.raises(ConfigError):
        make_cache(top_k=0)
    assert len(store) == 0


# -- change feed ---------------------------------------------------------------------------------

def test_two_caches_sharing_a_store_follow_the_feed():
    store = MemoryStore()
    a, b = make_cache(store), make_cache(store)
    vs = unit_vectors(3)
    a.insert([entry(f"q{i}", v) for i, v in enumerate(vs)])
    hit, _ = b.semantic("q1", vs[1], SCOPE_A, now=1.0)
    assert hit is not None and hit.entry.id == "tenant-a/q1"
    assert b.delete(["tenant-a/q1"]) == 1
    assert a.semantic("q1", vs[1], SCOPE_A, now=1.0)[0] is None
    assert "tenant-a/q1" not in a.index and len(a.index) == 2
    assert a.sync() == 0  # nothing new: cheap


def test_feed_semantics_and_truncation():
    store = MemoryStore(max_changes=4)
    vs = unit_vectors(6)
    assert store.changes(0) == (0, [])
    store.put_many([entry("q0", vs[0]), entry("q1", vs[1])])
    newest, changes = store.changes(0)
    assert newest == 2 and [c.seq for c in changes] == [1, 2] and changes[0].entry.question == "q0"
    assert store.changes(2) == (2, []) and store.changes(10**9) == (2, [])
    store.put_many([entry(f"q{i}", vs[i]) for i in range(2, 6)])
    assert store.changes(1) is None  # the log holds seqs 3..6 only
    assert [c.seq for c in store.changes(2)[1]] == [3, 4, 5, 6]


def test_follower_rebuilds_when_the_feed_was_truncated():
    store = MemoryStore(max_changes=4)
    writer, follower = make_cache(store), make_cache(store)
    vs = unit_vectors(12)
    writer.insert([entry("gone", vs[0])])
    follower.sync()
    assert "tenant-a/gone" in follower.index and follower.rebuilds == 1
    writer.insert([entry("moved", vs[1])])
    follower.sync()
    writer.delete(["tenant-a/gone"])
    writer.insert([entry("moved", vs[0])])  # same id, new vector
    for i in range(2, 12):
        writer.insert([entry(f"q{i}", vs[i])])
    assert store.changes(2) is None
    hit, _ = follower.semantic("q5", vs[5], SCOPE_A, now=1.0)
    assert follower.rebuilds == 2
    assert hit is not None and hit.entry.id == "tenant-a/q5"
    assert "tenant-a/gone" not in follower.index and len(follower.index) == 11
    assert follower.index.search(vs[0], scope=SCOPE_A, k=1)[0] == ("tenant-a/moved", pytest.approx(1.0, abs=1e-5))
    assert follower.index.search(vs[1], scope=SCOPE_A, k=1)[0][1] < 0.9  # the old vector is gone


# -- persistence ---------------------------------------------------------------------------------

def test_persistence_reopen_sees_every_live_entry_and_rebuilds_index(tmp_path):
    clock = ManualClock(1000.0)
    vs = unit_vectors(20)
    store = MemoryStore(tmp_path / "cache", clock=clock)
    cache = make_cache(store, clock=clock)
    cache.insert([entry(f"q{i}", v) for i, v in enumerate(vs[:10])])
    cache.insert([entry("short-lived", vs[10], expires_at=1500.0)])
    cache.delete(["tenant-a/q3"])
    cache.insert([entry("q4", vs[11], entry_id="q4-new", answer="newer")])  # same key as q4
    before = {e.id: e for e in store.entries()}
    store.close()
    assert (tmp_path / "cache" / "semroute-cache.sqlite3").exists()

    reopened = MemoryStore(tmp_path / "cache", clock=clock)
    after = {e.id: e for e in reopened.entries()}
    assert after.keys() == before.keys() and "tenant-a/q3" not in after and "tenant-a/q4" not in after
    for entry_id, e in before.items():
        assert after[entry_id] == e and np.array_equal(after[entry_id].vector, e.vector)
    assert after["q4-new"].answer == "newer"
    assert reopened.get_by_key(entry("q4", vs[4]).key, now=1000.0).id == "q4-new"
    cache2 = make_cache(reopened, clock=clock)
    hit, _ = cache2.semantic("q7", vs[7], SCOPE_A)
    assert hit is not None and hit.entry.id == "tenant-a/q7" and len(cache2.index) == 10
    reopened.close()

    clock.now = 2000.0  # expired while closed: dropped on open, from disk too
    third = MemoryStore(tmp_path / "cache", clock=clock)
    assert len(third) == 9 and "tenant-a/short-lived" not in third
    third.close()
    with sqlite3.connect(tmp_path / "cache" / "semroute-cache.sqlite3") as db:
        assert db.execute("SELECT COUNT(*) FROM entries").fetchone()[0] == 9
    db.close()


def test_reload_lru_order_is_write_order_and_respects_max_entries(tmp_path):
    vs = unit_vectors(4)
    with MemoryStore(tmp_path) as store:
        for i in range(4):
            store.put_many([entry(f"q{i}", vs[i])])
    with MemoryStore(tmp_path, max_entries=2) as smaller:  # a smaller bound evicts the oldest writes
        assert {e.question for e in smaller.entries()} == {"q2", "q3"}
    with MemoryStore(tmp_path) as again:
        assert len(again) == 2


def test_directory_is_locked_while_open(tmp_path):
    store = MemoryStore(tmp_path)
    with pytest.raises(StoreUnavailable, match="already open"):
        MemoryStore(tmp_path)
    store.close()
    MemoryStore(tmp_path).close()
    with pytest.raises(StoreError):
        store.put_many([entry("late", unit_vectors(1)[0])])


def test_unreadable_journal_or_path_is_a_store_error_and_releases_the_lock(tmp_path):
    (tmp_path / "semroute-cache.sqlite3").write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="cannot open the cache journal"):
        MemoryStore(tmp_path)
    (tmp_path / "semroute-cache.sqlite3").unlink()
    MemoryStore(tmp_path).close()  # the failed open released the directory lock
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreUnavailable, match="cannot create the cache directory"):
        MemoryStore(tmp_path / "file")


def test_reload_heals_two_rows_with_one_key(tmp_path):
    vs = unit_vectors(2)
    with MemoryStore(tmp_path) as store:
        store.put_many([entry("q", vs[0], entry_id="first")])
    with sqlite3.connect(tmp_path / "semroute-cache.sqlite3") as db:  # a hand-edited file
        db.execute("INSERT INTO entries SELECT 'second', key, scope, namespace, question, 'later', vector,"
                   " created_at, expires_at, model, tier, embedder, stamp + 1, tags FROM entries")
    db.close()
    with MemoryStore(tmp_path) as store:
        assert [e.id for e in store.entries()] == ["second"]
        assert store.get_by_key(entry("q", vs[0]).key, now=0.0).answer == "later"


def test_journal_failure_leaves_memory_unchanged(tmp_path):
    store = MemoryStore(tmp_path, max_entries=2)
    vs = unit_vectors(3)
    store.put_many([entry("a", vs[0]), entry("b", vs[1])])
    blocker = sqlite3.connect(tmp_path / "semroute-cache.sqlite3", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the database: our write must fail
    try:
        with pytest.raises(StoreError):
            store.put_many([entry("c", vs[2])])  # would also evict "a"
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert [e.question for e in store.entries()] == ["a", "b"] and store.changes(0)[0] == 2
    store.put_many([entry("c", vs[2])])
    assert [e.question for e in store.entries()] == ["b", "c"]
    store.close()


CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    from semroute.cache import MemoryStore
    from semroute.types import CacheEntry

    store = MemoryStore(sys.argv[1])
    rng = np.random.default_rng(0)
    batch = 0
    while True:
        vectors = rng.standard_normal((50, 384)).astype(np.float32)
        store.put_many([
            CacheEntry(id=f"b{batch}-{i}", key=f"b{batch}-{i}", scope="s", namespace="n", question="q" * 500,
                       answer="a" * 2000, vector=vectors[i], created_at=0.0)
            for i in range(50)
        ])
        print(batch, flush=True)
        batch += 1
    """
)


def test_crash_mid_write_keeps_every_committed_batch_and_no_partial_batch(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        last = -1
        while last < 30:
            line = child.stdout.readline()
            assert line, "the writer died before being killed"
            last = int(line)
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    with MemoryStore(tmp_path) as store:
        batches: dict[int, int] = {}
        for e in store.entries():
            batch = int(e.id.split("-")[0][1:])
            batches[batch] = batches.get(batch, 0) + 1
            assert e.answer == "a" * 2000 and e.vector.shape == (384,)
    assert set(batches.values()) == {50}  # no partial batch
    assert sorted(batches) == list(range(len(batches)))  # a prefix of the batches
    assert len(batches) >= last + 1  # every batch acknowledged before the kill
    with sqlite3.connect(tmp_path / "semroute-cache.sqlite3") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()


# -- index ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_index_search_remove_and_compaction(kind):
    index = FaissIndex(DIM, kind=kind)
    vs = unit_vectors(300)
    index.add([entry(f"q{i}", v) for i, v in enumerate(vs)])
    index.remove([f"tenant-a/q{i}" for i in range(250)] + ["unknown"])
    assert len(index) == 50
    for i in (250, 275, 299):
        results = index.search(vs[i], scope=SCOPE_A, k=5)
        assert results[0][0] == f"tenant-a/q{i}" and results[0][1] == pytest.approx(1.0, abs=1e-5)
        assert all(int(r[0].split("q")[-1]) >= 250 for r in results)
        assert [s for _, s in results] == sorted((s for _, s in results), reverse=True)
    assert index.search(vs[10], scope=SCOPE_A, k=100).__len__() == 50
    index.remove([f"tenant-a/q{i}" for i in range(250, 300)])
    assert len(index) == 0 and index.search(vs[0], scope=SCOPE_A, k=3) == []


def test_auto_index_turns_a_large_scope_into_hnsw_and_keeps_finding_entries():
    from semroute.cache.index import AUTO_HNSW_ROWS

    auto, flat = FaissIndex(DIM, kind="auto"), FaissIndex(DIM, kind="flat")
    vs = unit_vectors(AUTO_HNSW_ROWS + 10)
    small = [entry(f"q{i}", v) for i, v in enumerate(vs[:100])]
    auto.add(small)
    flat.add(small)
    assert auto._scopes[SCOPE_A].kind == "flat"
    rest = [entry(f"q{i}", v) for i, v in enumerate(vs[100:], start=100)]
    auto.add(rest)
    flat.add(rest)
    assert auto._scopes[SCOPE_A].kind == "hnsw" and len(auto) == len(vs)
    for i in (0, 99, 100, 2000, len(vs) - 1):
        assert auto.search(vs[i], scope=SCOPE_A, k=1) == flat.search(vs[i], scope=SCOPE_A, k=1)
        assert auto.search(vs[i], scope=SCOPE_A, k=1)[0][0] == f"tenant-a/q{i}"
    auto.remove([f"tenant-a/q{i}" for i in range(50)])
    assert auto.search(vs[10], scope=SCOPE_A, k=1)[0][0] != "tenant-a/q10"


def test_index_returns_cosine_for_unnormalised_inputs():
    index = FaissIndex(DIM)
    v = unit_vectors(1)[0]
    index.add([entry("q", 3.0 * v)])
    [(_, score)] = index.search(-7.0 * v, scope=SCOPE_A, k=1)
    assert score == pytest.approx(-1.0, abs=1e-5)


@pytest.mark.parametrize("journaled", [False, True])
def test_memory_store_keeps_the_store_contract(tmp_path, journaled):
    """The documented ``Store`` behaviour, step by step (what the replica and the router rely on)."""
    store: Store = MemoryStore(tmp_path if journaled else None, max_changes=3)
    a, b = entry("a", unit_vectors(2)[0]), entry("b", unit_vectors(2)[1])
    newest, changes = store.changes(2**62)  # past the head: the newest number and nothing else
    assert changes == []
    store.put_many([a, b])
    after, changes = store.changes(newest)
    assert [(c.op, c.entry_id, c.entry is not None) for c in changes] == [("put", a.id, True), ("put", b.id, True)]
    assert after == newest + 2 and store.get_by_key(a.key, now=0.0).id == a.id and len(store) == 2
    assert store.delete([a.id, "no-such-id"]) == 1  # how many existed
    _, changes = store.changes(after)
    assert [(c.op, c.entry_id, c.entry) for c in changes] == [("delete", a.id, None)]
    assert store.get(a.id, now=0.0) is None and [e.id for e in store.entries()] == [b.id]
    store.put_many([entry(f"c{i}", unit_vectors(5)[i]) for i in range(3)])
    assert store.changes(newest) is None  # the bounded feed no longer reaches back: rebuild
    store.close()


def test_faiss_index_keeps_the_index_contract():
    index: Index = FaissIndex(DIM)
    vs = unit_vectors(3)
    index.add([entry("a", vs[0]), entry("b", near(vs[0], 0.2)), entry("c", vs[0], namespace="tenant-b")])
    hits = index.search(vs[0], scope=SCOPE_A, k=5)
    assert [i for i, _ in hits] == ["tenant-a/a", "tenant-a/b"]  # nearest first, other scopes never
    assert hits[0][1] == pytest.approx(1.0) and hits[0][1] > hits[1][1]
    index.remove(["tenant-a/a"])
    assert [i for i, _ in index.search(vs[0], scope=SCOPE_A, k=5)] == ["tenant-a/b"] and len(index) == 2
    with pytest.raises(DimensionMismatch):
        index.add([entry("wrong", unit_vectors(1, dim=DIM + 1)[0])])


def test_import_does_not_load_faiss():
    code = "import sys, semroute.cache; assert 'faiss' not in sys.modules and 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, env=dict(os.environ, PYTHONPATH=str(REPO)))


# -- threads -------------------------------------------------------------------------------------

def test_threads_insert_and_lookup_concurrently():
    store = MemoryStore(max_entries=10_000)
    shared = make_cache(store)
    vs = unit_vectors(200)
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            own = make_cache(store) if t % 2 else shared  # shared objects and feed followers both
            for i in range(t * 50, t * 50 + 50):
                own.insert([entry(f"q{i}", vs[i])])
                assert own.exact(entry(f"q{i}", vs[i]).key, now=1.0) is not None
                hit, _ = own.semantic(f"q{i}", vs[i], SCOPE_A, now=1.0)
                assert hit is not None and hit.entry.id == f"tenant-a/q{i}"
        except BaseException as exc:  # noqa: BLE001 - reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(store) == 200
    shared.sync()
    assert len(shared.index) == 200


class _Counting:
    """Accepts everything, scoring by cosine; counts its calls."""

    nearest_accepted_wins = True

    def __init__(self) -> None:
        self.calls = 0

    def accept(self, query, candidate):
        from semroute.types import Verdict

        self.calls += 1
        return Verdict(True, candidate.similarity, "ok")


def test_judging_stops_at_the_first_accepted_candidate_when_nearest_wins():
    from semroute.cache import FaissIndex, MemoryStore
    from semroute.hits import SemanticCache
    from semroute.request import exact_key, scope_of
    from semroute.types import CacheEntry

    rng = np.random.default_rng(7)
    base = rng.normal(size=8).astype(np.float32)
    scope = scope_of("ns", "p")
    entries = []
    for i in range(4):
        v = base + rng.normal(scale=0.05 * (i + 1), size=8).astype(np.float32)
        v /= np.linalg.norm(v)
        entries.append(CacheEntry(id=f"e{i}", key=exact_key(scope, f"q{i}"), scope=scope, namespace="ns",
                                  question=f"q{i}", answer=f"a{i}", vector=v, created_at=0.0))
    verifier = _Counting()
    cache = SemanticCache(MemoryStore(), FaissIndex(8), verifier, top_k=4)
    cache.insert(entries)
    query = base / np.linalg.norm(base)
    hit, judged = cache.semantic("q", query, scope, now=1.0)
    assert verifier.calls == 1 and len(judged) == 1
    assert hit is not None and hit.similarity == pytest.approx(max(float(e.vector @ query) for e in entries))
