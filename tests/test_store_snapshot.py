"""MemoryStore's close-time snapshot: read instead of the journal only while the journal is unchanged."""

from __future__ import annotations

import dataclasses
import shutil
import sqlite3

import numpy as np
import pytest

from semroute.cache import MemoryStore
from semroute.types import CacheEntry

DIM = 8


def entry(i: int, *, dim: int = DIM, tags=(), expires_at: float | None = None) -> CacheEntry:
    vector = np.random.default_rng(i).standard_normal(dim).astype(np.float32)
    return CacheEntry(id=f"id{i}", key=f"k{i}", scope=f"ns/{dim}", namespace="ns", question=f"question {i} ü",
                      answer=f"answer {i} — ß", vector=vector / np.linalg.norm(vector), created_at=float(i),
                      expires_at=expires_at, model="m", tier="small", embedder="e", tags=tuple(tags))


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_a_clean_close_reloads_every_field_and_the_lru_order(tmp_path, dtype):
    written = [entry(0, tags=[("topic", "speed-limits")]), entry(1, expires_at=5e9), entry(2)]
    with MemoryStore(tmp_path, vector_dtype=dtype) as store:
        store.put_many(written)
        store.get("id0", now=1.0)  # a read: most recently used now (the journal does not record reads)
    assert (tmp_path / "store-snapshot" / "snapshot.json").exists()
    with MemoryStore(tmp_path, vector_dtype=dtype, max_entries=2) as smaller:
        # the snapshot kept the LRU order: id1 was least recently used (the journal says id0)
        assert [e.id for e in smaller.entries()] == ["id2", "id0"]
    with MemoryStore(tmp_path, vector_dtype=dtype) as store:
        got = {e.id: e for e in store.entries()}
    for want in (written[0], written[2]):
        back = got[want.id]
        assert dataclasses.replace(back, vector=want.vector) == want and back.vector.dtype == np.dtype(dtype)
        assert not back.vector.flags.writeable and float(back.vector.astype(np.float32) @ want.vector) > 0.999


def test_a_snapshot_older_than_the_journal_is_ignored(tmp_path):
    with MemoryStore(tmp_path) as store:
        store.put_many([entry(i) for i in range(3)])
    shutil.copytree(tmp_path / "store-snapshot", tmp_path / "old-snapshot")
    with MemoryStore(tmp_path) as store:
        store.delete(["id1"])
    shutil.rmtree(tmp_path / "store-snapshot")
    (tmp_path / "old-snapshot").rename(tmp_path / "store-snapshot")  # still lists id1
    with MemoryStore(tmp_path) as store:
        assert sorted(e.id for e in store.entries()) == ["id0", "id2"] and store.get("id1", now=0.0) is None


def test_an_edit_by_another_tool_makes_the_journal_win(tmp_path):
    with MemoryStore(tmp_path) as store:
        store.put_many([entry(0), entry(1)])
    with sqlite3.connect(tmp_path / "semroute-cache.sqlite3") as db:  # writes no sequence number
        db.execute("DELETE FROM entries WHERE id = 'id0'")
    db.close()
    with MemoryStore(tmp_path) as store:
        assert [e.id for e in store.entries()] == ["id1"]


def test_a_damaged_snapshot_or_mixed_dimensions_fall_back_to_the_journal(tmp_path):
    with MemoryStore(tmp_path) as store:
        store.put_many([entry(0), entry(1)])
    (tmp_path / "store-snapshot" / "answer.bin").write_bytes(b"\xff")
    with MemoryStore(tmp_path) as store:
        assert sorted(e.answer for e in store.entries()) == ["answer 0 — ß", "answer 1 — ß"]
        store.put_many([entry(2, dim=4)])  # another embedder's scope: vectors no longer fit one array
    assert not (tmp_path / "store-snapshot").exists()
    with MemoryStore(tmp_path) as store:
        assert sorted(e.id for e in store.entries()) == ["id0", "id1", "id2"]


def test_ttl_deletes_invalidation_and_the_feed_work_on_a_store_loaded_from_the_snapshot(tmp_path):
    clock = [100.0]
    with MemoryStore(tmp_path, clock=lambda: clock[0]) as store:
        store.put_many([entry(i, expires_at=200.0 if i < 3 else None) for i in range(6)]
                       + [dataclasses.replace(entry(9), namespace="other", key="k9-other")])
        store.delete(["id5"])
    clock[0] = 300.0  # entries 0-2 expired while the process was down
    with MemoryStore(tmp_path, clock=lambda: clock[0]) as store:
        assert sorted(e.id for e in store.entries()) == ["id3", "id4", "id9"] and "id5" not in store
        assert store.get_by_key("k4", now=300.0).answer == "answer 4 — ß"
        newest, _ = store.changes(2**62)
        assert store.invalidate(namespace="other") == 1
        _, changes = store.changes(newest)
        assert [(c.op, c.entry_id) for c in changes] == [("delete", "id9")]
        store.put_many([dataclasses.replace(entry(7), key="k4")])  # same key: replaces id4
        assert store.get("id4", now=300.0) is None and store.get_by_key("k4", now=300.0).id == "id7"
    with MemoryStore(tmp_path) as store:
        assert sorted(e.id for e in store.entries()) == ["id3", "id7"]
