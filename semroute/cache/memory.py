"""``MemoryStore``: the embedded cache store (the truth), kept in memory, optionally journaled.

It holds entries by id and by exact-tier key, an LRU order, TTLs and a change feed (a
sequence number plus a bounded log of puts and deletes, evictions and expiries included)
that indexes follow. With a ``path`` every batch is written through to a SQLite journal
(see ``journal.py``) and a new store over the same directory sees every live entry.

Entries are kept as rows of columns (``_columns``), not as ``CacheEntry`` objects: a 1M-entry
cache holds 1,949 B per entry with its index instead of 2,400 B (bench/cache_scale.py). A
``CacheEntry`` is built when a caller reads one.

It is not shared between processes (a second process opening the same directory gets
``StoreUnavailable``) and does no embedding, search or verification.
"""

from __future__ import annotations

import heapq
import itertools
import math
import os
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from ..errors import ConfigError, StoreError
from ..types import CacheEntry
from ._checks import check_ids, check_now, check_since, check_text_id
from ._columns import FREE, Columns, unpack
from ._vector import gc_paused
from . import store_snapshot
from ._entry_checks import check_criteria, check_tags, checked_batch
from .base import Change
from .journal import Journal, Op

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["MemoryStore", "check_criteria", "check_tags"]

# An undo record: (op, id, entry put or None, row put or deleted, row the put replaced or None,
# tick to restore: the deleted row's, or the replaced row's). Used only to roll the in-memory state
# back when the journal refuses a batch, so memory never gets ahead of disk; rows unlinked by the
# batch are released (reused) only once the journal has taken it.
_Undo = tuple[str, str, "CacheEntry | None", int, "int | None", int]
# Entries built per lock hold by ``entries()``: a rebuild of 1M entries never blocks lookups for long.
_CHUNK = 4096


class MemoryStore:
    """In-memory ``Store`` with LRU eviction, TTL and a change feed; persisted when ``path`` is set.

    ``max_entries`` bounds the size (least recently used entries are evicted; ``get`` and
    ``get_by_key`` count as use). ``vector_dtype="float16"`` keeps vectors in half the memory
    (the journal keeps float32; cosine similarities change by < 1e-3). ``max_changes`` bounds the change log: a follower further
    behind gets ``None`` from ``changes`` and rebuilds from ``entries()``. ``clock`` is used only
    for housekeeping (dropping expired entries on open and on writes, skipping them in
    ``entries()``); reads take ``now`` from the caller.

    ``close`` writes a snapshot of the entries next to the journal (``store_snapshot``) that the
    next open reads instead of the journal while the journal has not changed since: a restart at
    100k-1M entries takes seconds, not minutes. After a clean close the LRU order survives; after
    a crash (journal only) it is the order of the last write of each entry (reads are not
    journaled, so that a cache hit never costs a disk write).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        max_entries: int = 100_000,
        max_changes: int = 10_000,
        clock: Callable[[], float] = time.time,
        vector_dtype: Literal["float32", "float16"] = "float32",
    ) -> None:
        for name, value in (("max_entries", max_entries), ("max_changes", max_changes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive int, got {value!r}")
        if vector_dtype not in ("float32", "float16"):
            raise ConfigError(f"vector_dtype must be 'float32' or 'float16', got {vector_dtype!r}")
        self.vector_dtype = vector_dtype
        self.max_entries = max_entries
        self.max_changes = max_changes
        self._clock = clock
        self._lock = threading.RLock()
        self._holds = 0  # ``try_hold``s in force (their thread has the lock): reads then journal nothing
        self._expired_left = False  # a held read met an expired entry and left it in place
        self._rows = Columns(vector_dtype)
        # (expires_at, row) min-heap so writes can drop expired entries without a scan; stale
        # items (row released, reused or relinked with another expiry) are skipped when they surface.
        self._expiry: list[tuple[float, int]] = []
        self._seq = 0
        self._log: deque[Change] = deque(maxlen=max_changes)
        self._closed = False
        self._journal = Journal(path) if path is not None else None
        if self._journal is not None:
            try:
                self._load()
            except BaseException:
                self._journal.close()
                raise

    def _load(self) -> None:
        assert self._journal is not None
        # The snapshot written at the last close, if the journal has not moved on since (~5x faster to read)
        undo: list[_Undo] = []
        if store_snapshot.read(self._snapshot_dir(), version=self._journal.version(), columns=self._rows):
            self._seq = self._journal.seq()
            self._reindex_expiry()
        else:
            self._rows = Columns(self.vector_dtype)
            entries, self._seq = self._journal.load(vector_dtype=self.vector_dtype)
            with gc_paused():
                for entry in entries:  # least recently written first: the newest of a key wins
                    owner = self._rows.row_of_key(entry.key)
                    if owner is not None:  # cannot happen via put_many; heal a hand-edited file anyway
                        self._detach_row(owner, undo)
                    self._add(entry)
        self._sweep(self._clock(), undo)
        self._evict(undo)
        self._commit(undo)

    # -- Store protocol ------------------------------------------------------------------------

    def put_many(self, entries: Sequence[CacheEntry]) -> None:
        """Insert or replace entries; same ``key`` replaces the older entry. All or nothing.

        Entries expired by ``clock()`` are dropped first, so they do not take LRU room.
        """
        with self._lock:
            self._check_open()
            dims = {scope: info[0] for scope, info in self._rows.scopes.items()}
            batch = checked_batch(entries, dims, self.vector_dtype)
            undo: list[_Undo] = []
            self._sweep(self._clock(), undo)
            for entry in batch:
                self._attach(entry, undo)
            self._evict(undo)
            self._commit(undo)

    def get(self, entry_id: str, *, now: float) -> CacheEntry | None:
        entry_id, now = check_text_id(entry_id), check_now(now)
        with self._lock:
            row = self._live(self._rows.row_of(entry_id), now)
            return None if row is None else self._rows.entry(row)

    def get_many(self, entry_ids: Sequence[str], *, now: float) -> list[CacheEntry | None]:
        """``get`` for each id, in order; the found entries' vectors copied out in one go."""
        entry_ids, now = [check_text_id(i) for i in entry_ids], check_now(now)
        with self._lock:
            return self._entries_of([self._live(self._rows.row_of(entry_id), now) for entry_id in entry_ids])

    def get_by_key(self, key: str, *, now: float) -> CacheEntry | None:
        key, now = check_text_id(key, "key"), check_now(now)
        with self._lock:
            row = self._live(self._rows.row_of_key(key), now)
            return None if row is None else self._rows.entry(row)

    def delete(self, entry_ids: Iterable[str]) -> int:
        entry_ids = check_ids(entry_ids)
        with self._lock:
            self._check_open()
            undo: list[_Undo] = []
            for entry_id in dict.fromkeys(entry_ids):
                row = self._rows.row_of(entry_id)
                if row is not None:
                    self._detach_row(row, undo)
            self._commit(undo)
            return len(undo)

    def entries(self) -> Iterator[CacheEntry]:
        """Every live entry, least recently used first, built a chunk at a time.

        An entry deleted or replaced while the iterator runs is skipped (a follower replays
        that change from the feed); one put meanwhile may be missed the same way.
        """
        return (entry for _label, entry in self.labelled_entries())

    def labelled_entries(self) -> Iterator[tuple[int, CacheEntry]]:
        """``entries()`` with each entry's row label (``RowStore``)."""
        now = self._clock()
        with self._lock:
            rows = self._rows.live_rows()
            labels = self._rows.labels(rows).tolist()
        return self._chunks(labels, now)

    def _chunks(self, labels: list[int], now: float) -> Iterator[tuple[int, CacheEntry]]:
        for start in range(0, len(labels), _CHUNK):
            with self._lock:
                rows = self._rows
                pairs = [(label, row) for label in labels[start:start + _CHUNK]
                         if (row := rows.row_of_label(label)) is not None and not rows.expired(row, now)]
                entries = rows.entries([row for _, row in pairs])
            yield from zip([label for label, _ in pairs], entries)

    # -- rows (``RowStore``: an index may label its vectors by row instead of keeping id maps) --

    @property
    def rows_epoch(self) -> str:
        return self._rows.epoch

    def labels_of(self, entry_ids: Sequence[str]) -> list[int | None]:
        with self._lock:
            rows = [self._rows.row_of(check_text_id(i)) for i in entry_ids]
            return [None if row is None else self._rows.label(row) for row in rows]

    def ids_at(self, labels: Sequence[int]) -> list[str | None]:
        with self._lock:
            rows = [self._rows.row_of_label(int(label)) for label in labels]
            return [None if row is None else unpack(self._rows.ids[row]) for row in rows]  # type: ignore[arg-type]

    def live_labels(self, labels: np.ndarray) -> np.ndarray:
        with self._lock:
            return self._rows.live_labels(labels)

    def known_answers(self, scope: str) -> int:
        """Live entries of ``scope`` whose answer no model wrote (``base.CountsKnownAnswers``);
        entries expired but not yet purged count too."""
        return self._rows.known.get(scope, 0)

    def entries_at(self, labels: Sequence[int], *, now: float) -> list[CacheEntry | None]:
        now = check_now(now)
        with self._lock:
            return self._entries_of([self._live(self._rows.row_of_label(int(label)), now) for label in labels])

    def scored_at(self, labels: Sequence[int], query: np.ndarray, scope: str, *,
                  now: float) -> tuple[list[tuple[int, float, bool, str]], list[int]]:
        """``(label, cosine to query, model-written, answer)`` of each label's live entry in ``scope``, and
        the labels that are gone or expired; no ``CacheEntry`` built, not a use for LRU (``Replica``
        reads only the candidates it keeps)."""
        now = check_now(now)
        with self._lock:
            found, dead, expired = self._rows.scored(labels, query, scope, now)
            for row in expired:
                self._expire(row)
            return found, dead

    def changes(self, since: int) -> tuple[int, list[Change]] | None:
        """Changes with ``seq > since``; ``(newest, [])`` when ``since`` is at or past the newest."""
        since = check_since(since)
        with self._lock:
            if since >= self._seq:
                return self._seq, []
            oldest = self._log[0].seq if self._log else self._seq + 1
            if since < oldest - 1:
                return None  # the bounded log no longer reaches back: the follower rebuilds
            # seqs in the log are contiguous, so the wanted changes are its last ``seq - since``; taken
            # from the newest end (a deque walks to an offset from its start: 23 µs in a full log of
            # 10,000 for a follower one change behind, against 0.3 µs)
            wanted = list(itertools.islice(reversed(self._log), self._seq - since))
            wanted.reverse()
            return self._seq, wanted

    def invalidate(self, *, namespace: str | None = None, where: Mapping[str, str] | None = None) -> int:
        """Delete every entry of ``namespace`` and/or carrying all ``where`` tags; returns how many."""
        wanted = check_criteria(namespace, where)
        with self._lock:
            self._check_open()
            rows = self._rows
            doomed = rows.live_rows()
            if namespace is not None:
                codes = [code for code, kind in enumerate(rows.kinds) if kind[1] == namespace]
                doomed = doomed[np.isin(rows.kind[doomed], codes)]
            undo: list[_Undo] = []
            for row in doomed.tolist():
                if not wanted or (row in rows.tags and wanted <= set(rows.tags[row])):
                    self._detach_row(row, undo)
            self._commit(undo)
            return len(undo)

    def purge_expired(self, now: float) -> int:
        """Delete every expired entry now (reads also do this lazily); returns how many."""
        now = check_now(now)
        with self._lock:
            self._check_open()
            undo: list[_Undo] = []
            self._sweep(now, undo)
            self._commit(undo)
            return len(undo)

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, entry_id: object) -> bool:
        return isinstance(entry_id, str) and self._rows.row_of(str.__str__(entry_id)) is not None

    def try_hold(self) -> bool:
        """Take this store's lock if no other thread holds it now (``base.HoldsIfFree``). A write
        holds the lock through its journal commit; reads under a hold do no I/O at all: an expired
        entry they meet is never served, but stays until a write's sweep or ``purge_expired`` (a
        journal commit took up to 9 ms at a WAL checkpoint, p50 46 µs)."""
        if not self._lock.acquire(blocking=False):
            return False
        self._holds += 1
        return True

    def release_hold(self) -> bool:
        """End a ``try_hold``; True when its reads left expired entries for ``purge_expired``."""
        left = self._holds == 1 and self._expired_left
        if left:
            self._expired_left = False
        self._holds -= 1
        self._lock.release()
        return left

    def close(self) -> None:
        """Close the journal, writing a snapshot of the entries first so the next open is fast."""
        with self._lock:
            if not self._closed and self._journal is not None:
                if self._journal.owned:
                    try:
                        store_snapshot.write(self._snapshot_dir(), self._rows, version=self._journal.version())
                    except (OSError, ValueError, StoreError):
                        # the next open reads the journal instead: slower, still every entry
                        shutil.rmtree(self._snapshot_dir(), ignore_errors=True)
                self._journal.close()
            self._closed = True

    def _snapshot_dir(self) -> Path:
        assert self._journal is not None
        return self._journal.directory / "store-snapshot"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = "memory" if self._journal is None else str(self._journal.directory)
        return f"MemoryStore({where!r}, entries={len(self._rows)}, seq={self._seq})"

    # -- internals (callers hold the lock) -----------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("the MemoryStore is closed")

    def _entries_of(self, rows: list[int | None]) -> list[CacheEntry | None]:
        """The entry of each row (None where there is none), the vectors copied out in one go."""
        found = iter(self._rows.entries([row for row in rows if row is not None]))
        return [None if row is None else next(found) for row in rows]

    def _live(self, row: int | None, now: float) -> int | None:
        """``row`` if it is live at ``now`` (counted as a use), else None (an expired row is dropped)."""
        if row is None:
            return None
        if self._rows.expired(row, now):
            self._expire(row)
            return None
        self._rows.touch(row)
        return row

    def _add(self, entry: CacheEntry) -> int:
        row = self._rows.add(entry)
        if entry.expires_at is not None:
            heapq.heappush(self._expiry, (entry.expires_at, row))
        return row

    def _attach(self, entry: CacheEntry, undo: list[_Undo]) -> None:
        rows = self._rows
        previous = rows.row_of(entry.id)
        tick = rows.unlink(previous) if previous is not None else 0
        owner = rows.row_of_key(entry.key)
        if owner is not None:
            self._detach_row(owner, undo)  # same question in the same scope: the newer answer wins
        undo.append(("put", entry.id, entry, self._add(entry), previous, tick))

    def _detach_row(self, row: int, undo: list[_Undo]) -> None:
        entry_id = unpack(self._rows.ids[row])  # type: ignore[arg-type]
        undo.append(("delete", entry_id, None, row, None, self._rows.unlink(row)))

    def _sweep(self, now: float, undo: list[_Undo]) -> None:
        heap, rows = self._expiry, self._rows
        while heap and heap[0][0] <= now:
            expires_at, row = heapq.heappop(heap)
            if int(rows.tick[row]) != FREE and rows.expires[row] == expires_at:
                self._detach_row(row, undo)
        if len(heap) > 2 * len(rows) + 1024:  # replaced entries left too many stale items
            self._reindex_expiry()

    def _reindex_expiry(self) -> None:
        live = self._rows.live_rows()
        times = self._rows.expires[live]
        keep = ~np.isnan(times)
        self._expiry = list(zip(times[keep].tolist(), live[keep].tolist()))
        heapq.heapify(self._expiry)

    def _evict(self, undo: list[_Undo]) -> None:
        while len(self._rows) > self.max_entries:
            row = self._rows.oldest()
            if row is None:
                break
            self._detach_row(row, undo)

    def _expire(self, row: int) -> None:
        if self._holds:  # a held read (``try_hold``) commits nothing: the row waits for a sweep
            self._expired_left = True
            return
        undo: list[_Undo] = []
        self._detach_row(row, undo)
        try:
            self._commit(undo)
        except StoreError:
            pass  # a read must not fail because housekeeping could not be journaled; retried later

    def _commit(self, undo: list[_Undo]) -> None:
        """Journal the batch, then publish it on the change feed and release the rows it unlinked; on failure undo it."""
        if not undo:
            return
        if self._journal is not None:
            ops: list[Op] = [(op, entry_id, entry) for op, entry_id, entry, *_ in undo]
            try:
                self._check_open()
                self._journal.write(ops, seq=self._seq + len(ops))
            except StoreError:
                self._rollback(undo)
                raise
        for op, entry_id, entry, row, previous, _tick in undo:
            self._seq += 1
            self._log.append(Change(self._seq, op, entry_id, entry, self._rows.label(row)))  # type: ignore[arg-type]
            if op == "delete":
                self._rows.release(row)
            elif previous is not None:
                self._rows.release(previous)

    def _rollback(self, undo: list[_Undo]) -> None:
        """Undo a batch the journal refused: rows it added released, rows it unlinked live again with their ticks."""
        rows = self._rows
        for op, _entry_id, _entry, row, previous, tick in reversed(undo):
            if op == "put":
                rows.unlink(row)
                rows.release(row)
                row = previous  # type: ignore[assignment]
            if row is not None:
                rows.relink(row, tick)
                if not math.isnan(rows.expires[row]):
                    heapq.heappush(self._expiry, (float(rows.expires[row]), row))
