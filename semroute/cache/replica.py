"""``Replica``: a process's vector index kept in step with the store it follows.

The store is the truth; the index is derived and can always be rebuilt from it. A replica
follows the store's change feed (``sync``), and answers "which live entries in this scope are
nearest to this vector?" without ever returning an entry the store no longer has. It does no
embedding and no verification (``semroute.hits`` decides which candidate, if any, is a hit),
so several replicas (threads, processes sharing a store) stay consistent by syncing first.

Over a store with rows (``base.RowStore``: ``MemoryStore``) and an index that can be labelled by
them (``FaissIndex.use_rows``), the index's vectors carry the store's row labels: no id maps in
the index or here (~290 bytes per entry at 1M entries), and candidates are read by label. Other
stores (``RedisStore``) are followed by entry id.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import DimensionMismatch
from ..types import CacheEntry, Candidate
from ._vector import as_unit_vector, cosines
from .base import Change, FeedEpoch, HoldsIfFree, Index, RowIndex, RowStore, Store

__all__ = ["Replica", "Scored"]

# ``changes(since)`` with ``since`` at or past the newest sequence number returns the newest
# number and nothing else: that is how a follower learns where the feed is before a rebuild.
_HEAD = 2**62
# Fingerprint of an id loaded from a snapshot: differs from every real one, so it is re-added
# if the feed brings a change for it.
_UNKNOWN = -1
# ``nearest`` asks the index for this many times ``k`` candidates and keeps the ``k`` nearest by exact
# similarity: a quantised index's order is approximate (4-bit IVF codes: the true nearest among the top
# 4 at 0.985 of real e5 queries, 0.989 after re-ranking 8, as with 8-bit codes; ``_ivf.CODE_BITS``).
_OVERFETCH = 2
# ``try_hold`` admits a lookup while the index is this many changes behind at most: applying a
# few is part of any lookup, applying a warm-up's thousands belongs in a worker thread.
_INLINE_BEHIND = 64


@runtime_checkable
class PersistentIndex(Index, Protocol):
    """An index that can be written to and read back from a directory (``FaissIndex``)."""

    def ids(self) -> list[str]: ...

    def save(self, directory: str | os.PathLike[str]) -> None: ...

    def load(self, directory: str | os.PathLike[str]) -> bool: ...


@dataclass(frozen=True, slots=True)
class Scored:
    """A candidate before its entry is read: its row label (or id), cosine, whether a model wrote it,
    and its answer text (so a caller can tell whether answers repeat before reading a dozen entries)."""

    key: object
    similarity: float
    generated: bool  # the entry's ``model`` is set (the router's answers; warm-up rows have none)
    answer: str
    entry: CacheEntry | None = None  # already read (a store followed by id returns whole entries)


@runtime_checkable
class _ScoresRows(Protocol):
    """A row store that scores labels without building entries (``MemoryStore.scored_at``)."""

    def scored_at(self, labels: Sequence[int], query: np.ndarray, scope: str, *,
                  now: float) -> tuple[list[tuple[int, float, bool, str]], list[int]]: ...


class Replica:
    """A store (truth) and the local index that follows its change feed."""

    def __init__(self, store: Store, index: Index) -> None:
        self.store = store
        self.index = index
        self._sync_lock = threading.RLock()  # re-entrant: ``try_hold`` holds it around a lookup
        self._cursor: int | None = None  # last store sequence number applied to the index
        # id -> fingerprint of what the index holds for it, so a rebuild or a replayed change
        # touches only what differs (re-adding everything would double a flat index's size)
        self._indexed: dict[str, int] = {}
        self.rebuilds = 0
        # The feed epoch a loaded snapshot was saved at (``FeedEpoch`` stores): checked by the first sync.
        self._saved_epoch: str | None = None
        # Labelled by store rows when both sides can (and the index is still empty): see the module doc.
        self._rows: RowStore | None = None
        self._row_index: RowIndex | None = None
        if isinstance(store, RowStore) and isinstance(index, RowIndex) and len(index) == 0:
            index.use_rows(store)
            self._rows, self._row_index = store, index
        self._scorer = self._rows if isinstance(self._rows, _ScoresRows) else None
        self._holdable = isinstance(store, HoldsIfFree) and isinstance(index, HoldsIfFree)  # see ``try_hold``

    def sync(self) -> int:
        """Apply the store's changes since the last sync to the index; returns how many.

        Cheap when nothing changed (one ``changes`` call). Rebuilds from ``entries()`` on the
        first call, when the feed no longer reaches back far enough, or when it went backwards.
        """
        with self._sync_lock:
            if self._cursor is not None:
                result = self.store.changes(self._cursor)
                if result is not None and result[0] >= self._cursor and self._same_feed():
                    newest, changes = result
                    self._apply(changes)
                    self._cursor = newest
                    return len(changes)
            return self._rebuild()

    def try_hold(self, max_behind: int = _INLINE_BEHIND) -> bool:
        """Take the feed's, the store's and the index's locks if no other thread holds any of them
        now and the index is at most ``max_behind`` changes behind the store: this thread's lookups
        and exact reads then never wait, until ``release_hold`` (``base.HoldsIfFree``). False, with
        nothing held, for parts that cannot promise it (``RedisStore`` reads over the network) or
        while other threads use them.
        """
        if not self._holdable:
            return False
        store, index = self.store, self.index
        if not self._sync_lock.acquire(blocking=False):
            return False
        if store.try_hold():
            if index.try_hold():
                if self._behind() <= max_behind:
                    return True
                index.release_hold()
            store.release_hold()
        self._sync_lock.release()
        return False

    @property
    def holdable(self) -> bool:
        """Whether ``try_hold`` can ever succeed (both parts are ``base.HoldsIfFree``)."""
        return self._holdable

    def release_hold(self) -> bool:
        """Undo a successful ``try_hold``; True when the store wants ``purge_expired`` (``base.HoldsIfFree``)."""
        self.index.release_hold()  # type: ignore[attr-defined]
        left = self.store.release_hold()  # type: ignore[attr-defined]
        self._sync_lock.release()
        return bool(left)

    def _behind(self) -> int:
        """How many of the store's changes ``sync`` would apply now (a rebuild counts as every entry)."""
        if self._cursor is None:
            return len(self.store)
        result = self.store.changes(self._cursor)
        return len(self.store) if result is None or result[0] < self._cursor else len(result[1])

    def nearest(self, vector: np.ndarray, scope: str, k: int, now: float) -> list[Candidate]:
        """Up to ``k`` live entries of ``scope`` nearest to ``vector``, nearest first.

        Candidates gone or expired in the store are dropped from the index and the search runs
        once more, so dead entries never crowd live ones out of the ``k``.
        """
        return self.read(self.scored(vector, scope, k, now), now)

    def scored(self, vector: np.ndarray, scope: str, k: int, now: float) -> list[Scored]:
        """``nearest`` without reading the entries (a row store's are read by ``read``, for those a
        caller keeps: a miss's lookup need not build a dozen entries to judge four)."""
        self.sync()
        # Similarities are recomputed against the store's vectors (the truth): a quantised index
        # (IVF with 4-bit codes in large scopes) only proposes candidates, and its scores are off by ~1e-2.
        query = as_unit_vector(vector, dim=None, what="query vector")
        found: list[Scored] = []
        seen: set[object] = set()
        for _attempt in range(2):
            keys = [i for i, _ in self._search(vector, scope, k * _OVERFETCH) if i not in seen]
            seen.update(keys)
            live, stale = self._score(keys, query, scope, now) if keys else ([], [])
            found.extend(live)
            if not stale:
                break
            self._drop_dead(stale, now)
        found.sort(key=lambda c: -c.similarity)
        return found[:k]

    def read(self, scored: Sequence[Scored], now: float) -> list[Candidate]:
        """The candidates of ``scored`` (same order); one removed since it was scored is left out."""
        wanted = [s for s in scored if s.entry is None]
        entries = iter(self._read([s.key for s in wanted], now) if wanted else [])
        out: list[Candidate] = []
        for s in scored:
            entry = s.entry if s.entry is not None else next(entries)
            if entry is not None:
                out.append(Candidate(entry=entry, similarity=s.similarity))
        return out

    def _score(self, keys: list, query: np.ndarray, scope: str, now: float) -> tuple[list[Scored], list]:
        """The live candidates in ``scope`` among ``keys`` (row labels or ids), and the dead keys."""
        if self._scorer is not None:
            live, dead = self._scorer.scored_at(keys, query, scope, now=now)
            return [Scored(label, sim, generated, answer) for label, sim, generated, answer in live], dead
        found: list[Scored] = []
        stale: list = []
        for key, entry in zip(keys, self._read(keys, now)):
            if entry is None:
                stale.append(key)
            elif entry.scope == scope:  # isolation must not rest on the index alone
                found.append(Scored(key, _similarity(query, entry.vector), bool(entry.model), entry.answer, entry))
        return found, stale

    def _search(self, vector: np.ndarray, scope: str, k: int) -> list[tuple[object, float]]:
        if self._row_index is not None:
            return self._row_index.search_labels(vector, scope=scope, k=k)  # type: ignore[return-value]
        return self.index.search(vector, scope=scope, k=k)  # type: ignore[return-value]

    def _read(self, keys: list, now: float) -> list[CacheEntry | None]:
        """The live entries of these ids, or of these row labels when labelled by rows."""
        if self._rows is not None:
            return self._rows.entries_at(keys, now=now)
        return self.store.get_many(keys, now=now)

    def insert(self, entries: Sequence[CacheEntry]) -> None:
        """Store the entries (the truth first), then bring the index up to date."""
        entries = list(entries)
        for entry in entries:
            shape = np.shape(entry.vector) if isinstance(entry, CacheEntry) else None
            if shape is not None and shape != (self.index.dim,):
                raise DimensionMismatch(
                    f"entry {entry.id!r} vector has shape {shape}; the index expects ({self.index.dim},)"
                )
        self.store.put_many(entries)
        self.sync()

    def delete(self, entry_ids: Iterable[str]) -> int:
        """Delete entries from the store (and so, via the feed, from every index)."""
        removed = self.store.delete(entry_ids)
        self.sync()
        return removed

    def __len__(self) -> int:
        return len(self.store)

    def save(self, directory: str | os.PathLike[str]) -> bool:
        """Persist the index with the feed position it reflects, so a restart need not rebuild it.

        Written to a temporary sibling and renamed, so a crash leaves the old snapshot or the
        new one, never a mix. False when there is nothing to save (never synced, or an index
        that cannot be saved).
        """
        if not isinstance(self.index, PersistentIndex):
            return False
        target = Path(directory)
        with self._sync_lock:
            if self._cursor is None:
                return False
            staging = target.with_name(f"{target.name}.new-{os.getpid()}")  # processes sharing a data_dir
            shutil.rmtree(staging, ignore_errors=True)
            self.index.save(staging)
            state = {"cursor": self._cursor}
            if isinstance(self.store, FeedEpoch) and self.store.feed_epoch is not None:
                state["feed_epoch"] = self.store.feed_epoch  # type: ignore[assignment]
            if self._rows is not None:  # the labels name rows of this numbering only
                state["rows_epoch"] = self._rows.rows_epoch  # type: ignore[assignment]
            (staging / "replica.json").write_text(json.dumps(state), encoding="utf-8")
            shutil.rmtree(target, ignore_errors=True)
            os.replace(staging, target)
        return True

    def load(self, directory: str | os.PathLike[str]) -> bool:
        """Start from a snapshot ``save`` wrote instead of rebuilding; the next ``sync`` catches up.

        If the store's feed no longer reaches back to the snapshot's position (another process
        wrote, or this one crashed after writing), that ``sync`` rebuilds as usual.
        """
        if not isinstance(self.index, PersistentIndex):
            return False
        try:
            state = json.loads((Path(directory) / "replica.json").read_text(encoding="utf-8"))
            cursor = int(state["cursor"])
        except (OSError, ValueError, KeyError, TypeError):
            return False
        if self._rows is not None and state.get("rows_epoch") != self._rows.rows_epoch:
            return False  # the store numbered its rows afresh (read from the journal): rebuild
        with self._sync_lock:
            if self._cursor is not None or len(self.index) or not self.index.load(directory):
                return False
            # Fingerprints are per process (hash randomisation): mark loaded ids as "present,
            # unknown", so a change to one of them is applied and nothing else is touched.
            if self._rows is None:
                self._indexed = dict.fromkeys(self.index.ids(), _UNKNOWN)
            self._cursor = cursor
            epoch = state.get("feed_epoch")
            self._saved_epoch = epoch if isinstance(epoch, str) else None
        return True

    # -- internals (callers hold the sync lock) ------------------------------------------------

    def _apply(self, changes: Sequence[Change]) -> None:
        if self._rows is not None:
            self._apply_rows(changes)
            return
        final: dict[str, CacheEntry | None] = {}  # each id ends in its last state
        for change in changes:
            final[change.entry_id] = change.entry if change.op == "put" else None
        self._reconcile(final)

    def _apply_rows(self, changes: Sequence[Change]) -> None:
        """Labelled by rows: a label names one entry for life, so a put adds it and a delete drops it.

        Puts whose row the store has already let go (replaced later in the batch) are skipped; a
        replaced entry's old label stays until its row is reused or a search finds it dead.
        """
        index, rows = self._row_index, self._rows
        assert index is not None and rows is not None
        final: dict[int, CacheEntry | None] = {}  # label -> entry (None: deleted)
        for change in changes:
            if change.label is None:  # cannot happen with a RowStore; rebuild rather than guess
                self._rebuild()
                return
            final[change.label] = change.entry if change.op == "put" else None
        gone = [label for label, entry in final.items() if entry is None]
        puts = [(label, entry) for label, entry in final.items() if entry is not None and self._fits(entry)]
        if gone:
            index.remove_labels(gone)
        if puts:
            alive = rows.live_labels(np.array([label for label, _ in puts], dtype=np.int64))
            index.add_labelled([pair for pair, ok in zip(puts, alive.tolist()) if ok])

    def _same_feed(self) -> bool:
        """False if a loaded snapshot's feed epoch is not the store's (the feed started again: rebuild).

        Checked once, by the first sync after ``load`` (its ``changes`` call told the store the
        epoch); a running store notices a new epoch itself (``changes`` answers ``None``).
        """
        expected, self._saved_epoch = self._saved_epoch, None
        if expected is None or not isinstance(self.store, FeedEpoch):
            return True
        return self.store.feed_epoch == expected  # unknown (None) counts as different: rebuild

    def _rebuild(self) -> int:
        self._saved_epoch = None  # whatever the snapshot was, the index now comes from the store
        head = self.store.changes(_HEAD)
        newest = head[0] if head is not None else 0
        if self._rows is not None:
            return self._rebuild_rows(newest)
        final: dict[str, CacheEntry | None] = dict.fromkeys(self._indexed)
        final.update((entry.id, entry) for entry in self.store.entries())
        self._reconcile(final)
        # Changes made while we read entries() are replayed by the next sync (puts and deletes
        # are idempotent), because the cursor was taken before the snapshot.
        self._cursor = newest
        self.rebuilds += 1
        return len(self._indexed)

    def _rebuild_rows(self, newest: int) -> int:
        """Labelled by rows: drop every label the store no longer has, add every live one not held."""
        index, rows = self._row_index, self._rows
        assert index is not None and rows is not None
        held = index.labels()
        index.remove_labels(held[~rows.live_labels(held)].tolist())
        batch: list[tuple[int, CacheEntry]] = []
        for label, entry in rows.labelled_entries():
            if self._fits(entry):
                batch.append((label, entry))
            if len(batch) >= 65_536:
                index.add_labelled(batch)
                batch = []
        index.add_labelled(batch)
        self._cursor = newest
        self.rebuilds += 1
        return len(index)

    def _reconcile(self, final: dict[str, CacheEntry | None]) -> None:
        """Make the index hold exactly ``final``'s entries for those ids (``None``: absent)."""
        gone: list[str] = []
        fresh: list[tuple[CacheEntry, int]] = []
        for entry_id, entry in final.items():
            mark = _fingerprint(entry) if entry is not None and self._fits(entry) else None
            if mark is None:
                if entry_id in self._indexed:
                    gone.append(entry_id)
            elif self._indexed.get(entry_id) != mark:
                fresh.append((entry, mark))
        if gone:
            self.index.remove(gone)
            for entry_id in gone:
                del self._indexed[entry_id]
        if fresh:
            self.index.add([entry for entry, _ in fresh])
            self._indexed.update((entry.id, mark) for entry, mark in fresh)

    def _drop_dead(self, entry_ids: list[str], now: float) -> None:
        """Remove ids the store no longer has, so they stop taking ``top_k`` places."""
        with self._sync_lock:
            if self._rows is not None and self._row_index is not None:  # labels: dead is dead (a reused row has a new label)
                labels = np.array(entry_ids, dtype=np.int64)
                self._row_index.remove_labels(labels[~self._rows.live_labels(labels)].tolist())
                return
            # re-checked under the lock: a sync may have just re-added one of them
            known = [i for i in entry_ids if i in self._indexed]
            dead = [i for i, e in zip(known, self.store.get_many(known, now=now) if known else []) if e is None]
            if dead:
                self.index.remove(dead)
                for entry_id in dead:
                    del self._indexed[entry_id]

    def _fits(self, entry: CacheEntry) -> bool:
        # Entries of another embedder (another dimension) live in other scopes and cannot be
        # searched with this index; the store still serves them to their own caches.
        return np.shape(entry.vector) == (self.index.dim,)


def _similarity(query: np.ndarray, vector: np.ndarray) -> float:
    if query.shape != np.shape(vector):
        return -1.0  # cannot happen for an entry of this scope; never a hit
    return cosines(np.asarray(vector, dtype=np.float32)[None, :], query)[0]


def _fingerprint(entry: CacheEntry) -> int:
    return hash((entry.scope, np.ascontiguousarray(entry.vector).tobytes()))
