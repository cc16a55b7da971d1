"""``FaissIndex``: the derived vector index (a replica of the store), one faiss index per scope.

It maps string entry ids to int64 faiss labels, searches by cosine similarity (vectors are
L2-normalised, so inner product is cosine) and only ever looks inside the asked scope, so
namespaces cannot mix. It holds no answers and no TTLs: the store is the truth and the index
can always be rebuilt from it.

Deletion is by tombstone for both kinds: a removed label is forgotten at once (searches skip
it) and its vector is compacted away when tombstones outnumber live vectors. That keeps a
removal O(1) instead of faiss's O(n) ``remove_ids`` (LRU eviction removes on every insert at
capacity) and lets HNSW, which cannot delete, work the same way. ``faiss`` is imported
lazily by the constructor, never by ``import semroute``.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from pathlib import Path
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Literal

import numpy as np

from ..errors import ConfigError, InvalidRequest
from ..types import CacheEntry
from . import _ivf
from ._rowbook import RowBook, RowLabels, ScopeRows
from ._vector import as_unit_vector, gc_paused, release_freed

__all__ = ["FaissIndex"]

# Compact a scope once its tombstones exceed both this floor and its live count, so searches
# overfetch at most ~2x and compaction (O(n)) is amortised over at least n/2 removals.
_COMPACT_FLOOR = 64
# Batches at least this large are worth faiss's OpenMP threads; smaller ones run on one.
_PARALLEL_ROWS = 4096
# With kind="auto" a scope is searched exactly (flat) until it holds this many live vectors,
# then rebuilt once as HNSW: measured at 10k x 384, a flat scan costs ~1 ms per lookup once the
# embedding has evicted it from the CPU caches, HNSW ~0.4 ms with recall@1 of 1.0.
AUTO_HNSW_ROWS = 4096
# Candidates an HNSW search keeps (efSearch). Measured on 50k random 384-d unit vectors (fp16
# HNSW, M=32, 1000 cached vectors queried, 2-core host at load 7): recall@1 0.988 at 64, 0.998
# at 128, 1.000 at 256; single-query p50 0.42 / 0.73 / 2.0 ms. Random vectors are the hard
# case; real embeddings sit on a lower-dimensional manifold and are found more easily.
EF_SEARCH = 128
# With kind="auto" a scope that reaches this many live vectors is rebuilt once more, as IVF with
# 4-bit codes (``_ivf``): ~200 bytes per entry instead of HNSW's ~1 KB, built in seconds instead
# of tens of minutes at 1M, and a stored vector's own entry is always found (bench/cache_scale.py).
# Not earlier: on real embeddings IVF misses more true neighbours than HNSW (e5 vectors of banking77
# and clinc150, 8k rows, the nearest at cosine >= 0.9 among IVF's top 4 at 2.2% of lists probed:
# 0.979; at 4.4%: 0.991), and below ~10^5 entries HNSW's memory and restart cost little.
AUTO_IVF_ROWS = 131_072
# Version of the files ``save`` writes (3: scopes may be "ivf", labels carry their scope's code);
# ``load`` ignores any other (the caller then rebuilds from the store, once).
_FORMAT = 3
# A faiss label is ``scope code << _SCOPE_SHIFT | serial``: the scope of a removed id is read off its
# label, so the id map holds one int per entry, not a (scope, label) tuple (~60 bytes and a GC-tracked
# object each at 1M entries).
_SCOPE_SHIFT = 40


class _Scope:
    """One scope's faiss index, its live labels and how many tombstoned vectors it still holds."""

    __slots__ = ("dead", "ids", "index", "kind", "spare", "trained")

    def __init__(self, index: Any, kind: str) -> None:
        self.index = index
        self.kind = kind
        self.ids: Any = {}  # live label -> entry id; a ``ScopeRows`` when labelled by store rows
        self.dead = 0
        self.trained = 0  # vectors an "ivf" scope was trained on (it is retrained as it grows)
        self.spare = 0  # adds an "ivf" scope takes before its lists are laid out again (``_ivf.SPARE``)


class FaissIndex(RowLabels):
    """Cosine nearest-neighbour search per scope. ``kind``: ``"flat"``, ``"hnsw"`` or ``"auto"``.

    ``storage="float16"`` keeps vectors in half the memory (faiss's fp16 scalar quantizer).
    Flat is exact; HNSW trades a little recall for sub-linear search on large scopes
    (``hnsw_m`` links per node, ``ef_search`` candidates per query; ``nprobe`` lists searched per
    query once a scope is IVF); ``auto`` starts each scope
    flat, turns it into HNSW once it holds ``AUTO_HNSW_ROWS`` live vectors and into IVF with 4-bit
    codes (``_ivf``; similarities approximate to ~1e-2, re-ranked exactly by ``Replica``) once it
    holds ``AUTO_IVF_ROWS``.
    """

    def __init__(
        self,
        dim: int,
        *,
        kind: Literal["flat", "hnsw", "auto"] = "flat",
        hnsw_m: int = 32,
        ef_search: int = EF_SEARCH,
        storage: Literal["float32", "float16"] = "float32",
        nprobe: int = _ivf.NPROBE,
    ) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ConfigError(f"dim must be a positive int, got {dim!r}")
        if kind not in ("flat", "hnsw", "auto"):
            raise ConfigError(f"kind must be 'flat', 'hnsw' or 'auto', got {kind!r}")
        if storage not in ("float32", "float16"):
            raise ConfigError(f"storage must be 'float32' or 'float16', got {storage!r}")
        if isinstance(nprobe, bool) or not isinstance(nprobe, int) or nprobe < 1:
            raise ConfigError(f"nprobe must be a positive int, got {nprobe!r}")
        for name, value in (("hnsw_m", hnsw_m), ("ef_search", ef_search)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 2:
                raise ConfigError(f"{name} must be an int >= 2, got {value!r}")
        import faiss  # lazy: heavy, and `import semroute` must stay light

        self._faiss = faiss
        self.dim = dim
        self.kind = kind
        self.hnsw_m = hnsw_m
        self.ef_search = ef_search
        self.storage = storage
        self.nprobe = nprobe
        self._lock = threading.RLock()  # re-entrant: ``try_hold`` holds it around a whole lookup
        self._scopes: dict[str, _Scope] = {}
        self._where: dict[str, int] = {}  # entry id -> label
        self._scope_names: list[str] = []  # scope code (a label's high bits) -> scope
        self._scope_codes: dict[str, int] = {}
        self._next_label = 0
        # Labelled by a store's rows (``use_rows``): no id maps; ids and liveness come from the store.
        self._book: RowBook | None = None
        self._rows: Any = None

    def _holder(self, scope: str) -> _Scope:
        holder = self._scopes.get(scope)
        if holder is None:
            kind = "flat" if self.kind == "auto" else self.kind
            holder = self._scopes[scope] = _Scope(self._new_index(kind), kind)
            if self._book is not None:
                holder.ids = ScopeRows(self._book, self._scope_code(scope))
        return holder

    def add(self, entries: Sequence[CacheEntry]) -> None:
        """Add (or replace) these entries' vectors under their scopes; later duplicates win."""
        if self._book is not None:
            rows = self._rows.labels_of([entry.id for entry in entries])
            self.add_labelled([(label, entry) for label, entry in zip(rows, entries) if label is not None])
            return
        latest = {entry.id: entry for entry in entries}  # validate everything before touching state
        vectors = {i: as_unit_vector(e.vector, dim=self.dim, what=f"entry {i!r} vector") for i, e in latest.items()}
        by_scope: dict[str, list[str]] = {}
        for entry_id, entry in latest.items():
            by_scope.setdefault(entry.scope, []).append(entry_id)
        with self._lock:
            self._remove_locked(latest)
            for scope, ids in by_scope.items():
                labels = np.arange(self._next_label, self._next_label + len(ids), dtype=np.int64)
                labels |= self._scope_code(scope) << _SCOPE_SHIFT
                self._next_label += len(ids)
                holder = self._holder(scope)
                with self._serial(rows=len(ids)):
                    holder.index.add_with_ids(np.stack([vectors[i] for i in ids]), labels)
                for label, entry_id in zip(labels.tolist(), ids):
                    holder.ids[label] = entry_id
                    self._where[entry_id] = label
                holder.spare -= len(ids)
                self._grow(holder)

    def remove(self, entry_ids: Iterable[str]) -> None:
        """Forget these ids (unknown ids are ignored)."""
        if isinstance(entry_ids, str):
            raise InvalidRequest("remove takes an iterable of entry ids, not a single string")
        if self._book is not None:
            self.remove_labels(label for label in self._rows.labels_of(list(entry_ids)) if label is not None)
            return
        with self._lock:
            self._remove_locked(entry_ids)

    def search(self, vector: np.ndarray, *, scope: str, k: int) -> list[tuple[str, float]]:
        """Up to ``k`` (entry id, cosine similarity) pairs in ``scope``, most similar first."""
        found = self._search(vector, scope, k)
        if self._book is None:
            return found  # type: ignore[return-value]
        ids = self._rows.ids_at([label for label, _ in found])
        return [(entry_id, score) for entry_id, (_, score) in zip(ids, found) if entry_id is not None]

    def _search(self, vector: np.ndarray, scope: str, k: int) -> list[tuple[str | int, float]]:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise InvalidRequest(f"k must be a positive int, got {k!r}")
        query = as_unit_vector(vector, dim=self.dim, what="query vector")[None, :]
        with self._lock:
            holder = self._scopes.get(scope)
            if holder is None:
                return []
            total = holder.index.ntotal
            # Usually few tombstones sit near the query: fetch a little extra, and only fetch
            # all that could be hidden by tombstones if the first pass came up short.
            want = min(total, k + min(holder.dead, max(k, 8)))
            found = self._collect(holder, query, want, k)
            if len(found) < k and want < total and want < k + holder.dead:
                found = self._collect(holder, query, min(total, k + holder.dead), k)
            return found

    def try_hold(self) -> bool:
        """Take this index's lock if no other thread holds it now (``base.HoldsIfFree``)."""
        return self._lock.acquire(blocking=False)

    def release_hold(self) -> bool:
        self._lock.release()
        return False  # an index's reads leave nothing behind

    def __len__(self) -> int:
        return len(self._where) if self._book is None else self._book.count

    def __contains__(self, entry_id: object) -> bool:
        if self._book is None or not isinstance(entry_id, str):
            return entry_id in self._where
        label = self._rows.labels_of([entry_id])[0]
        return label is not None and self._book.holds(label)

    def ids(self) -> list[str]:
        """Every entry id the index holds."""
        if self._book is not None:
            return [i for i in self._rows.ids_at(self.labels().tolist()) if i is not None]
        with self._lock:
            return list(self._where)

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Write the index to ``directory`` (faiss's own binary format, ids as a NumPy array; no pickle)."""
        faiss = self._faiss
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        with self._lock:
            scopes = []
            if self._book is not None:  # labelled by rows: the book, no id files
                self._book.save(path)
            for n, (scope, holder) in enumerate(self._scopes.items()):
                if self._book is None:
                    labels = np.fromiter(holder.ids.keys(), dtype=np.int64, count=len(holder.ids))
                    np.save(path / f"scope-{n}.labels.npy", labels, allow_pickle=False)
                    np.save(path / f"scope-{n}.ids.npy", np.array(list(holder.ids.values()), dtype=str), allow_pickle=False)
                faiss.write_index(holder.index, str(path / f"scope-{n}.faiss"))
                scopes.append({"scope": scope, "kind": holder.kind, "dead": holder.dead, "n": n,
                               "trained": holder.trained, "live": len(holder.ids)})
            meta = {"format": _FORMAT, "dim": self.dim, "kind": self.kind, "hnsw_m": self.hnsw_m,
                    "ef_search": self.ef_search, "storage": self.storage, "next_label": self._next_label,
                    "scope_names": self._scope_names,
                    "scopes": scopes, "labels": "ids" if self._book is None else "rows"}
        (path / "index.json").write_text(json.dumps(meta), encoding="utf-8")

    def load(self, directory: str | os.PathLike[str]) -> bool:
        """Replace this (empty) index's content with one ``save`` wrote; False if none fits (same dim/kind)."""
        path = Path(directory)
        try:
            meta = json.loads((path / "index.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        wanted = {"dim": self.dim, "kind": self.kind, "hnsw_m": self.hnsw_m,
                  "storage": self.storage}
        wanted["labels"] = "ids" if self._book is None else "rows"
        if meta.get("format") != _FORMAT or any(meta.get(k, "ids") != v for k, v in wanted.items()):
            return False
        faiss = self._faiss
        scopes: dict[str, _Scope] = {}
        where: dict[str, int] = {}
        try:
            names = [str(name) for name in meta["scope_names"]]
            book = None if self._book is None else RowBook.read(path)
            with gc_paused():  # a million ids: no collection walks them while they are made
                for info in meta["scopes"]:
                    n = int(info["n"])
                    holder = _Scope(faiss.read_index(str(path / f"scope-{n}.faiss")), str(info["kind"]))
                    if holder.kind == "hnsw":
                        faiss.downcast_index(holder.index.index).hnsw.efSearch = self.ef_search
                    elif holder.kind == "ivf":
                        holder.index.nprobe = self.nprobe
                        holder.trained = int(info.get("trained", 0))
                        holder.spare = holder.index.nlist  # read back without spare room: lay out soon
                    holder.dead = int(info["dead"])
                    scopes[str(info["scope"])] = holder
                    if book is not None:
                        holder.ids = ScopeRows(book, names.index(str(info["scope"])))
                        holder.ids.live = int(info["live"])
                        continue
                    labels = np.load(path / f"scope-{n}.labels.npy", allow_pickle=False).tolist()
                    ids = np.load(path / f"scope-{n}.ids.npy", allow_pickle=False).tolist()
                    holder.ids = dict(zip(labels, ids))
                    where.update(zip(ids, labels))
        except (OSError, ValueError, KeyError, RuntimeError):
            return False  # a partial or foreign snapshot: the caller rebuilds from the store
        with self._lock:
            self._scopes, self._where, self._next_label = scopes, where, int(meta["next_label"])
            if book is not None:
                self._book = book
            self._scope_names = names
            self._scope_codes = {scope: code for code, scope in enumerate(names)}
        return True

    def __repr__(self) -> str:
        return f"FaissIndex(dim={self.dim}, kind={self.kind!r}, entries={len(self)}, scopes={len(self._scopes)})"

    # -- internals (callers hold the lock) -----------------------------------------------------

    def _collect(self, holder: _Scope, query: np.ndarray, want: int, k: int) -> list[tuple[str, float]]:
        with self._serial(rows=1):
            scores, labels = holder.index.search(query, want)
        if isinstance(holder.ids, ScopeRows):  # labelled by rows: one mask, not a lookup per label
            held = holder.ids.mask(labels[0])
            return [(label, max(-1.0, min(1.0, score)))
                    for score, label in zip(scores[0][held][:k].tolist(), labels[0][held][:k].tolist())]
        found: list[tuple[str, float]] = []
        for score, label in zip(scores[0].tolist(), labels[0].tolist()):
            entry_id = holder.ids.get(label)  # -1 (padding) and tombstones are not in ids
            if entry_id is not None:
                found.append((entry_id, max(-1.0, min(1.0, score))))
                if len(found) == k:
                    break
        return found

    def _remove_locked(self, entry_ids: Iterable[str]) -> None:
        touched: set[str] = set()
        for entry_id in entry_ids:
            label = self._where.pop(entry_id, None)
            if label is None:
                continue
            scope = self._scope_names[label >> _SCOPE_SHIFT]
            holder = self._scopes[scope]
            del holder.ids[label]
            holder.dead += 1
            touched.add(scope)
        self._compact(touched)

    def _compact(self, touched: Iterable[str]) -> None:
        for scope in touched:
            holder = self._scopes[scope]
            if not holder.ids:
                del self._scopes[scope]  # nothing live: drop the whole faiss index
            elif holder.dead > max(_COMPACT_FLOOR, len(holder.ids)):
                self._rebuild(holder, holder.kind)

    def _scope_code(self, scope: str) -> int:
        code = self._scope_codes.get(scope)
        if code is None:  # codes are never reused: a label always names the scope it was added to
            code = self._scope_codes[scope] = len(self._scope_names)
            self._scope_names.append(scope)
        return code

    def _grow(self, holder: _Scope) -> None:
        """With ``kind="auto"``: flat -> HNSW -> IVF (4-bit codes) as the scope grows; retrain IVF as it keeps growing."""
        if self.kind != "auto":
            return
        live = len(holder.ids)
        if holder.kind == "flat" and live >= AUTO_HNSW_ROWS:
            self._rebuild(holder, "hnsw")
        if holder.kind == "hnsw" and live >= AUTO_IVF_ROWS:
            self._rebuild(holder, "ivf")
        elif holder.kind == "ivf" and _ivf.needs_retrain(holder.index, live, holder.trained):
            self._rebuild(holder, "ivf", retrain=True)
        elif holder.kind == "ivf" and holder.spare < 0:
            self._rebuild(holder, "ivf")  # most lists' spare room is used: lay them out again

    def _rebuild(self, holder: _Scope, kind: str, *, retrain: bool = False) -> None:
        """Rebuild a scope's faiss index (of ``kind``) from its live vectors, dropping tombstones.

        An IVF index ends laid out by ``_ivf.copy_live`` (each list allocated once with spare
        room): faiss's own adds grow a list by doubling it.
        """
        faiss = self._faiss
        rows = len(holder.ids)
        if holder.kind == "ivf":
            with self._serial(rows=rows):
                # a retrain adds every code to new lists; a compaction copies the same lists
                fresh = self._retrained(holder) if retrain else holder.index
                fresh = _ivf.copy_live(faiss, fresh, holder.ids)
        else:
            labels = faiss.vector_to_array(holder.index.id_map)
            inner = faiss.downcast_index(holder.index.index)
            vectors = inner.reconstruct_n(0, inner.ntotal)
            live = _ivf.live_mask(labels, holder.ids)
            vectors, labels = np.ascontiguousarray(vectors[live]), np.ascontiguousarray(labels[live])
            with self._serial(rows=rows):
                if kind == "ivf":
                    fresh = _ivf.build(faiss, self.dim, vectors, rows, nprobe=self.nprobe)
                    holder.trained = rows
                else:
                    fresh = self._new_index(kind)
                fresh.add_with_ids(vectors, labels)
                if kind == "ivf":
                    fresh = _ivf.copy_live(faiss, fresh, holder.ids)
        holder.index, holder.kind = fresh, kind
        holder.dead = 0
        if kind == "ivf":
            holder.spare = _ivf.spare_adds(fresh)
            release_freed()  # the old lists: returned to the OS, not kept in the C heap

    def _retrained(self, holder: _Scope) -> Any:
        """A new IVF with more lists, trained on a sample of the scope's decoded codes, holding them all."""
        faiss, rows = self._faiss, len(holder.ids)
        rate = min(1.0, 64 * _ivf.lists_for(rows) / max(rows, 1))
        rng = np.random.default_rng(rows)
        sample = [v[rng.random(len(v)) < rate] for _, v in _ivf.live_vectors(faiss, holder.index, holder.ids)]
        fresh = _ivf.build(faiss, self.dim, np.concatenate(sample), rows, nprobe=self.nprobe)
        for labels, vectors in _ivf.live_vectors(faiss, holder.index, holder.ids):
            fresh.add_with_ids(vectors, labels)
        holder.trained = rows
        return fresh

    @contextlib.contextmanager
    def _serial(self, *, rows: int) -> Iterator[None]:
        """Run small faiss calls on one OpenMP thread.

        A single query gains nothing from threads (faiss parallelises over queries), and on a
        busy host waking the thread team costs ~1 ms per search and up to a second for a small
        HNSW insert. Large batches (a rebuild) keep faiss's threads. OpenMP's thread count is
        per calling thread, so restoring it leaves the caller's other faiss work as it was.
        """
        if rows >= _PARALLEL_ROWS:
            yield
            return
        faiss = self._faiss
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            yield
        finally:
            faiss.omp_set_num_threads(threads)

    def _new_index(self, kind: str) -> Any:
        faiss = self._faiss
        half = self.storage == "float16"  # half the bytes per vector; cosine changes by < 1e-3
        ip = faiss.METRIC_INNER_PRODUCT
        if kind == "flat":
            inner = faiss.IndexScalarQuantizer(self.dim, faiss.ScalarQuantizer.QT_fp16, ip) if half \
                else faiss.IndexFlatIP(self.dim)
        else:
            inner = faiss.IndexHNSWSQ(self.dim, faiss.ScalarQuantizer.QT_fp16, self.hnsw_m, ip) if half \
                else faiss.IndexHNSWFlat(self.dim, self.hnsw_m, ip)
            inner.hnsw.efSearch = self.ef_search
        return faiss.IndexIDMap(inner)
