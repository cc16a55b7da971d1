"""Replica over a MemoryStore labels the FaissIndex by store rows: reused rows, restarts, a renumbered store."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np

from semroute.cache import FaissIndex, MemoryStore, Replica
from semroute.types import CacheEntry

DIM = 16


def vectors(n: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def entry(i: int, vector: np.ndarray, scope: str = "s") -> CacheEntry:
    return CacheEntry(id=f"{i:032x}", key=f"k{i}", scope=scope, namespace="n", question=f"q{i}",
                      answer=f"a{i}", vector=vector, created_at=0.0)


def test_a_reused_row_never_answers_for_the_entry_that_held_it_before():
    store, vs = MemoryStore(max_entries=100), vectors(40)
    replica = Replica(store, FaissIndex(DIM))
    replica.insert([entry(i, vs[i]) for i in range(20)])
    assert len(replica.index.labels()) == 20  # labelled by rows, not ids
    for round_ in range(5):  # delete and put again: the new entries take the freed rows
        replica.delete([f"{i:032x}" for i in range(round_ * 4, round_ * 4 + 4)])
        replica.insert([entry(100 + round_ * 4 + j, vs[20 + round_ * 4 + j]) for j in range(4)])
        for i in range(round_ * 4, round_ * 4 + 4):  # a deleted entry's vector finds no entry at its similarity
            found = replica.nearest(vs[i], "s", 1, now=0.0)
            assert found and found[0].similarity < 0.99 and found[0].entry.id != f"{i:032x}"
    for i in range(100, 120):
        top = replica.nearest(vs[20 + i - 100], "s", 1, now=0.0)[0]
        assert top.entry.id == f"{i:032x}" and top.similarity > 0.999
    assert len(replica.index) == 20 and replica.index.search(vs[25], scope="s", k=1)[0][0] == f"{105:032x}"


def test_a_replaced_entry_is_found_by_its_new_vector_only():
    store, vs = MemoryStore(), vectors(3)
    replica = Replica(store, FaissIndex(DIM))
    replica.insert([entry(1, vs[0]), entry(2, vs[1])])
    replica.insert([dataclasses.replace(entry(1, vs[2]), answer="new")])  # same id, new vector and answer
    top = replica.nearest(vs[2], "s", 1, now=0.0)[0]
    assert top.entry.answer == "new" and top.similarity > 0.999
    assert all(c.entry.id != f"{1:032x}" or c.similarity < 0.99 for c in replica.nearest(vs[0], "s", 2, now=0.0))
    assert f"{1:032x}" in replica.index and len(store) == 2


def test_a_saved_index_is_reused_after_a_clean_restart_and_refused_when_rows_were_renumbered(tmp_path):
    vs = vectors(30)
    with MemoryStore(tmp_path / "data") as store:
        replica = Replica(store, FaissIndex(DIM))
        replica.insert([entry(i, vs[i]) for i in range(30)])
        replica.delete([f"{i:032x}" for i in range(0, 30, 3)])  # holes: rows keep their numbers
        replica.insert([entry(50, vs[0])])  # takes a freed row
        assert replica.save(tmp_path / "index")
    shutil.copytree(tmp_path / "data", tmp_path / "copy")
    with MemoryStore(tmp_path / "data") as store:
        again = Replica(store, FaissIndex(DIM))
        assert again.load(tmp_path / "index")
        again.sync()
        assert again.rebuilds == 0 and len(again.index) == 21
        for i in [1, 2, 4, 29]:
            assert again.nearest(vs[i], "s", 1, now=0.0)[0].entry.id == f"{i:032x}"
        assert again.nearest(vs[0], "s", 1, now=0.0)[0].entry.id == f"{50:032x}"
    shutil.rmtree(tmp_path / "copy" / "store-snapshot")  # read back from the journal: rows numbered afresh
    with MemoryStore(tmp_path / "copy") as store:
        fresh = Replica(store, FaissIndex(DIM))
        assert not fresh.load(tmp_path / "index")
        for i in [1, 2, 4, 29]:
            assert fresh.nearest(vs[i], "s", 1, now=0.0)[0].entry.id == f"{i:032x}"
        assert fresh.rebuilds == 1 and len(fresh.index) == 21
