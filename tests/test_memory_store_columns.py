"""MemoryStore keeps rows in columns: exact LRU across many evictions, rows reused, rollback, snapshot round trip."""

from __future__ import annotations

import dataclasses
import shutil
import sqlite3
import uuid
from collections import OrderedDict

import numpy as np
import pytest

from semroute.cache import MemoryStore
from semroute.errors import StoreError
from semroute.types import CacheEntry

DIM = 8


def entry(i: int, *, key: str | None = None, entry_id: str | None = None, dim: int = DIM, tags=(),
          expires_at: float | None = None) -> CacheEntry:
    vector = np.random.default_rng(i).standard_normal(dim).astype(np.float32)
    return CacheEntry(id=entry_id or f"id{i}", key=key or f"k{i}", scope=f"ns/{dim}", namespace="ns",
                      question=f"q{i}", answer=f"answer {i}", vector=vector / np.linalg.norm(vector),
                      created_at=float(i), expires_at=expires_at, tags=tuple(tags))


def test_lru_order_is_exact_across_many_evictions():
    """Against an OrderedDict model: thousands of puts, gets and deletes over batches of LRU candidates."""
    capacity = 700  # more than one candidate batch (256 rows), so batches run out and are recomputed
    store = MemoryStore(max_entries=capacity)
    model: OrderedDict[str, None] = OrderedDict()
    rng = np.random.default_rng(7)
    for step in range(6000):
        action = rng.random()
        if action < 0.55:
            i = int(rng.integers(0, 3000))
            store.put_many([entry(i)])
            model[f"id{i}"] = None
            model.move_to_end(f"id{i}")
            while len(model) > capacity:
                model.popitem(last=False)
        elif action < 0.9 and model:
            entry_id = list(model)[int(rng.integers(0, len(model)))]
            assert store.get(entry_id, now=0.0).id == entry_id
            model.move_to_end(entry_id)
        elif model:
            entry_id = list(model)[int(rng.integers(0, len(model)))]
            assert store.delete([entry_id]) == 1
            del model[entry_id]
        if step % 500 == 0:
            assert [e.id for e in store.entries()] == list(model)
    assert [e.id for e in store.entries()] == list(model) and len(store) == len(model)


def test_deleted_rows_are_reused_and_keep_no_old_field():
    store = MemoryStore(max_entries=1000)
    store.put_many([entry(i, tags=[("topic", "t")]) for i in range(200)])
    high = len(store._rows.ids)
    for round_ in range(5):
        assert store.delete([f"id{1000 * round_ + i}" for i in range(200)]) == 200
        assert len(store) == 0 and store.get(f"id{1000 * round_ + 3}", now=0.0) is None
        store.put_many([entry(1000 * (round_ + 1) + i) for i in range(200)])
    assert len(store._rows.ids) == high  # no new rows: freed ones were taken again
    got = store.get("id5005", now=0.0)
    assert got.answer == "answer 5005" and got.tags == () and got.key == "k5005"
    assert float(got.vector @ entry(5005).vector) > 0.9999 and not got.vector.flags.writeable


def test_a_refused_batch_restores_every_row_its_evictions_and_replacements_touched(tmp_path):
    store = MemoryStore(tmp_path, max_entries=300)
    store.put_many([entry(i) for i in range(300)])
    store.get("id0", now=0.0)  # id0 now most recently used: id1.. are evicted first
    before = [(e.id, e.key, e.answer) for e in store.entries()]
    blocker = sqlite3.connect(tmp_path / "semroute-cache.sqlite3", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the database: our write fails
    try:
        with pytest.raises(StoreError):
            # 100 new rows evict 100; one replaces id5 by id, one takes id7's key
            store.put_many([entry(1000 + i) for i in range(100)]
                           + [dataclasses.replace(entry(5), answer="new"), entry(2000, key="k7")])
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert [(e.id, e.key, e.answer) for e in store.entries()] == before
    assert store.get_by_key("k7", now=0.0).id == "id7" and store.get("id5", now=0.0).answer == "answer 5"
    store.put_many([entry(3000)])  # LRU still exact after the rollback: id1 goes (id5, id7 were just read)
    assert "id1" not in store and "id2" in store and "id0" in store
    store.close()


def test_hex_ids_and_other_ids_round_trip_through_the_snapshot(tmp_path):
    hex_ids = [uuid.uuid4().hex for _ in range(50)]
    written = [entry(i, entry_id=hex_ids[i], key=uuid.uuid4().hex) for i in range(50)]
    written += [entry(50, entry_id="ABCDEF" * 5 + "01"), entry(51, tags=[("topic", "ü")], expires_at=9e9)]
    with MemoryStore(tmp_path, vector_dtype="float16") as store:
        store.put_many(written)
        store.get(hex_ids[0], now=0.0)
    with MemoryStore(tmp_path, vector_dtype="float16", max_entries=10**6) as store:
        got = list(store.entries())
        assert [e.id for e in got] == [e.id for e in written[1:]] + [hex_ids[0]]
        by_id = {e.id: e for e in got}
        for want in written:
            back = by_id[want.id]
            assert dataclasses.replace(back, vector=want.vector) == want
            assert back.vector.dtype == np.float16 and float(back.vector.astype(np.float32) @ want.vector) > 0.999
        assert store.get_by_key(written[3].key, now=0.0).id == hex_ids[3]
        assert hex_ids[4].upper() not in store and hex_ids[4] in store
        store.put_many([entry(60, entry_id=hex_ids[4], key="other")])  # replaced by id after a restart
        assert store.get_by_key(written[4].key, now=0.0) is None and len(store) == 52


def test_mixed_dimensions_and_ttl_work_on_rows():
    clock = [0.0]
    store = MemoryStore(max_entries=10, clock=lambda: clock[0])
    store.put_many([entry(i, dim=4 if i % 2 else DIM, expires_at=10.0 if i < 4 else None) for i in range(8)])
    assert store.get("id1", now=0.0).vector.shape == (4,) and store.get("id2", now=0.0).vector.shape == (DIM,)
    assert [e.id for e in store.get_many(["id3", "nope", "id6"], now=0.0) if e] == ["id3", "id6"]
    clock[0] = 20.0
    assert store.purge_expired(20.0) == 4 and sorted(e.id for e in store.entries()) == ["id4", "id5", "id6", "id7"]


def test_a_format_1_snapshot_is_still_read_with_rows_numbered_afresh(tmp_path):
    import json

    with MemoryStore(tmp_path, max_entries=10) as store:
        store.put_many([entry(i) for i in range(4)])
        store.delete(["id1"])  # a hole: format 2 keeps row numbers, format 1 did not
        store.get("id0", now=0.0)  # most recently used: only the snapshot knows (the journal does not)
        epoch = store.rows_epoch
    snapshot = tmp_path / "store-snapshot"
    meta = json.loads((snapshot / "snapshot.json").read_text())
    (snapshot / "snapshot.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "epoch"} | {"format": 1}))
    for name in ("rows.npy", "gens.npy"):
        (snapshot / name).unlink()
    with MemoryStore(tmp_path, max_entries=10) as store:
        assert [e.id for e in store.entries()] == ["id2", "id3", "id0"]  # the snapshot's LRU order
        assert store.rows_epoch != epoch and store.get("id3", now=0.0).answer == "answer 3"


def _known_recount(store: MemoryStore) -> dict[str, int]:
    out: dict[str, int] = {}
    for e in store.entries():
        if not e.model:
            out[e.scope] = out.get(e.scope, 0) + 1
    return out


def _known(store: MemoryStore, scopes=("a", "b")) -> dict[str, int]:
    return {scope: n for scope in scopes if (n := store.known_answers(scope))}


def test_known_answers_are_counted_per_scope_through_every_change(tmp_path):
    """The count the lookup reads to skip the consensus's wider search (``known_answers``) must
    match a recount of the live entries after puts, replacements, evictions, deletes, a refused
    batch's rollback, expiry and a reopen (journal and snapshot)."""
    def made(i: int, model: str = "", **kw) -> CacheEntry:
        return dataclasses.replace(entry(i, **kw), model=model, scope="a" if i % 3 else "b")

    clock = [0.0]
    store = MemoryStore(tmp_path, max_entries=40, clock=lambda: clock[0])
    store.put_many([made(i, "" if i % 2 else "llama3.2:3b") for i in range(30)])
    assert _known(store) == _known_recount(store) and sum(_known(store).values()) == 15
    store.put_many([dataclasses.replace(made(1), model="llama3.2:3b")])  # a known answer replaced by a written one
    store.put_many([made(2)])  # and the reverse, by id
    store.put_many([made(100, key="k3")])  # a known answer by key
    assert _known(store) == _known_recount(store)
    store.put_many([made(200 + i, "" if i % 4 else "m") for i in range(25)])  # evicts the oldest
    store.delete(["id5", "id7", "id8", "id200"])
    assert _known(store) == _known_recount(store)
    blocker = sqlite3.connect(tmp_path / "semroute-cache.sqlite3", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreError):
            store.put_many([made(300 + i) for i in range(20)] + [dataclasses.replace(made(201), model="m")])
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert _known(store) == _known_recount(store)
    store.put_many([made(400 + i, expires_at=5.0) for i in range(6)])
    clock[0] = 10.0
    assert store.purge_expired(10.0) == 6 and _known(store) == _known_recount(store)
    want = _known(store)
    assert sum(want.values()) >= 2
    store.close()
    assert (tmp_path / "store-snapshot").is_dir()
    with MemoryStore(tmp_path, max_entries=40) as again:  # from the snapshot written on close
        assert _known(again) == want
    shutil.rmtree(tmp_path / "store-snapshot")
    with MemoryStore(tmp_path, max_entries=40) as again:  # from the journal alone
        assert _known(again) == want


def test_every_field_of_an_entry_comes_back_from_the_rows():
    """Entries read back are built field by field (``_columns._trusted_entry``): each field, in its
    place, whatever fields ``CacheEntry`` has (a field added later must come back too)."""
    import dataclasses

    original = CacheEntry(id="an-id", key="a-key", scope="ns/8", namespace="ns", question="a question?",
                          answer="an answer", vector=entry(1).vector, created_at=3.0, expires_at=9.0,
                          model="llama3.2:3b", tier="small", embedder="an-embedder", tags=(("topic", "limits"),))
    assert [f.name for f in dataclasses.fields(CacheEntry)] == list(CacheEntry.__slots__)
    store = MemoryStore()
    store.put_many([original])
    back = store.get("an-id", now=4.0)
    for f in dataclasses.fields(CacheEntry):
        if f.name == "vector":
            np.testing.assert_allclose(back.vector, original.vector, atol=1e-3)  # stored in the store's dtype
        else:
            assert getattr(back, f.name) == getattr(original, f.name), f.name
    [read] = store.entries_at([store.labels_of(["an-id"])[0]], now=4.0)
    assert read == original
