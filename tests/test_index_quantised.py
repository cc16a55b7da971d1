"""Large scopes under kind="auto" become IVF with 8-bit codes: still exact where it matters.

A stored vector must find its own entry, a slightly perturbed copy (a paraphrase) too; removed
entries never come back (through compaction, a save and a load); a reopened cache answers as it
did before close; the replica reports exact similarities (from the store) whatever the index's
codes say. Real faiss, real MemoryStore, real files.
"""

from __future__ import annotations

import numpy as np
import pytest

from semroute.cache import FaissIndex, MemoryStore, Replica
from semroute.cache.index import AUTO_IVF_ROWS
from semroute.types import CacheEntry

DIM = 24
ROWS = AUTO_IVF_ROWS + 3000


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    return unit(np.random.default_rng(7).standard_normal((ROWS, DIM)))


def entries(vectors: np.ndarray, ids: range, scope: str = "s") -> list[CacheEntry]:
    return [CacheEntry(id=f"e{i}" if scope == "s" else f"{scope}-{i}", key=f"{scope}/k{i}", scope=scope, namespace="n", question=f"q{i}", answer=f"a{i}",
                       vector=vectors[i], created_at=0.0) for i in ids]


@pytest.fixture(scope="module")
def quantised(vectors: np.ndarray) -> FaissIndex:
    index = FaissIndex(DIM, kind="auto")
    for start in range(0, ROWS, 5000):
        index.add(entries(vectors, range(start, min(ROWS, start + 5000))))
    index.add(entries(vectors, range(10), scope="other"))  # a small scope stays exact, apart
    return index


def test_a_large_auto_scope_is_quantised_and_finds_each_stored_vector(quantised, vectors):
    kinds = {scope: holder.kind for scope, holder in quantised._scopes.items()}
    assert kinds == {"s": "ivf", "other": "flat"} and len(quantised) == ROWS + 10
    picks = np.random.default_rng(1).integers(0, ROWS, 300)
    own = [quantised.search(vectors[i], scope="s", k=1)[0][0] == f"e{i}" for i in picks]
    noise = np.random.default_rng(2).standard_normal((len(picks), DIM)) * 0.15 / np.sqrt(DIM)
    near = [quantised.search(v, scope="s", k=1)[0][0] == f"e{i}" for i, v in zip(picks, unit(vectors[picks] + noise))]
    assert sum(own) == len(picks) and sum(near) >= 0.99 * len(picks)
    found = [i for i, _ in quantised.search(vectors[3], scope="other", k=20)]
    assert found[0] == "other-3" and sorted(found) == sorted(f"other-{n}" for n in range(10))


def test_removed_entries_stay_gone_through_compaction_save_and_load(vectors, tmp_path):
    index = FaissIndex(DIM, kind="auto")
    index.add(entries(vectors, range(ROWS)))
    gone = [f"e{i}" for i in range(0, ROWS, 2)] + ["e1", "e3"]
    index.remove(gone)  # more tombstones than live vectors: the scope is compacted (codes copied)
    holder = index._scopes["s"]
    assert holder.kind == "ivf" and holder.dead == 0 and holder.index.ntotal == len(index) == ROWS - len(gone)
    index.save(tmp_path / "snap")
    loaded = FaissIndex(DIM, kind="auto")
    assert loaded.load(tmp_path / "snap") and len(loaded) == len(index)
    for i in range(0, 400, 3):
        found = loaded.search(vectors[i], scope="s", k=4)
        assert found == index.search(vectors[i], scope="s", k=4)
        assert all(int(entry_id[1:]) % 2 == 1 for entry_id, _ in found)
        assert "e1" not in {entry_id for entry_id, _ in found}
        if i % 2 and i > 3:
            assert found[0][0] == f"e{i}"
    loaded.add(entries(vectors, range(4)))  # a loaded IVF scope takes new vectors (e1 back)
    assert loaded.search(vectors[2], scope="s", k=1)[0][0] == "e2"


def test_a_reopened_store_and_index_answer_as_before_close_with_exact_similarities(vectors, tmp_path):
    store = MemoryStore(tmp_path, vector_dtype="float16", max_entries=2 * ROWS)
    replica = Replica(store, FaissIndex(DIM, kind="auto", storage="float16"))
    for start in range(0, ROWS, 8000):
        replica.insert(entries(vectors, range(start, min(ROWS, start + 8000))))
    replica.delete([f"e{i}" for i in range(0, 1000, 5)])
    queries = unit(vectors[:200] + 0.01)
    before = [[(c.entry.id, round(c.similarity, 6)) for c in replica.nearest(q, "s", 3, now=1.0)] for q in queries]
    replica.save(tmp_path / "index")
    store.close()
    store = MemoryStore(tmp_path, vector_dtype="float16", max_entries=2 * ROWS)
    again = Replica(store, FaissIndex(DIM, kind="auto", storage="float16"))
    assert again.load(tmp_path / "index")
    after = [[(c.entry.id, round(c.similarity, 6)) for c in again.nearest(q, "s", 3, now=1.0)] for q in queries]
    assert after == before and again.rebuilds == 0 and "e5" not in store and len(store) == ROWS - 200
    for candidate in again.nearest(queries[7], "s", 4, now=1.0):  # exact, from the store: not the 8-bit codes
        exact = float(queries[7] @ candidate.entry.vector.astype(np.float32))
        assert candidate.similarity == pytest.approx(exact, abs=1e-6)
    store.close()



def test_adds_past_the_spare_room_lay_the_lists_out_again_keeping_every_live_entry(vectors):
    index = FaissIndex(DIM, kind="auto")
    index.add(entries(vectors, range(AUTO_IVF_ROWS)))
    holder = index._scopes["s"]
    assert holder.kind == "ivf" and 0 < holder.spare < AUTO_IVF_ROWS and holder.index.ntotal == AUTO_IVF_ROWS
    index.remove(["e0", "e1"])
    replaced = range(2, 2 + holder.spare + 1)  # re-adding an id tombstones its old code
    index.add(entries(vectors, replaced))
    index.add(entries(vectors, range(AUTO_IVF_ROWS, ROWS)))
    holder = index._scopes["s"]
    # laid out again after the spare room ran out: tombstones dropped, every code live, room renewed
    assert holder.kind == "ivf" and holder.index.ntotal - holder.dead == len(holder.ids) == ROWS - 2
    assert holder.dead <= ROWS - AUTO_IVF_ROWS and holder.spare > 0
    picks = [2, 3, len(replaced), AUTO_IVF_ROWS - 1, AUTO_IVF_ROWS, ROWS - 1, *range(100, 130)]
    assert all(index.search(vectors[i], scope="s", k=1)[0][0] == f"e{i}" for i in picks)
    assert not {"e0", "e1"} & {i for i, _ in index.search(vectors[0], scope="s", k=50)}
