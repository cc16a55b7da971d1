"""``MemoryStore``: the embedded cache store (the truth), kept in memory, optionally journaled.

It holds entries by id and by exact-tier key, an LRU order, TTLs and a change feed (a
sequence number plus a bounded log of puts and deletes, evictions and expiries included)
that indexes follow. With a ``path`` every batch is written through to a SQLite journal
(see ``journal.py``) and a new store over the same directory sees every live entry.

It is not shared between processes (a second process opening the same directory gets
``StoreUnavailable``) and does no embedding, search or verification.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import operator
import os
import shutil
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from ..errors import ConfigError, InvalidRequest, StoreError
from ..types import CacheEntry
from ._checks import check_ids, check_now, check_since, check_text_id
from ._vector import as_unit_vector, gc_paused
from . import store_snapshot
from ._entry_checks import check_criteria, check_entry_fields, check_tags
from .base import Change
from .journal import Journal, Op

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["MemoryStore", "check_criteria", "check_tags"]

_ID, _KEY, _SCOPE, _VECTOR = (operator.attrgetter(name) for name in ("id", "key", "scope", "vector"))

# An undo record: (op, id, entry put or deleted, entry the put replaced). Used only to roll the
# in-memory state back when the journal refuses a batch, so memory never gets ahead of disk.
_Undo = tuple[str, str, CacheEntry, "CacheEntry | None"]


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
        self._entries: OrderedDict[str, CacheEntry] = OrderedDict()  # least recently used first
        self._by_key: dict[str, str] = {}
        self._scopes: dict[str, list[int]] = {}  # scope -> [dimension, live count]
        # (expires_at, id) min-heap so writes can drop expired entries without a scan; stale
        # items (entry replaced or gone) are skipped when they surface.
        self._expiry: list[tuple[float, str]] = []
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
        entries = store_snapshot.read(self._snapshot_dir(), version=self._journal.version(),
                                      vector_dtype=self.vector_dtype)
        if entries is None:
            entries, self._seq = self._journal.load(vector_dtype=self.vector_dtype)
        else:
            self._seq = self._journal.seq()
        undo: list[_Undo] = []
        with gc_paused():
            linked = self._link_all(entries)
        if not linked:
            for entry in entries:
                owner = self._by_key.get(entry.key)
                if owner is not None:  # cannot happen via put_many; heal a hand-edited file anyway
                    self._detach(owner, undo)
                self._link(entry)
        self._sweep(self._clock(), undo)
        self._evict(undo)
        self._commit(undo)

    def _link_all(self, entries: list[CacheEntry]) -> bool:
        """``_link`` for every loaded entry at once (dicts built in C: ~3x faster at 1M entries).

        False, with nothing linked, if ids or keys repeat (a hand-edited journal): the caller
        then links them one by one, the newest of a key winning.
        """
        by_id = OrderedDict(zip(map(_ID, entries), entries))
        by_key = dict(zip(map(_KEY, entries), by_id))
        if len(by_id) != len(entries) or len(by_key) != len(entries):
            return False
        # one dimension per scope (put_many enforces it); vectors are 1-D, so len() is the dimension
        dims = dict(zip(map(_SCOPE, entries), map(len, map(_VECTOR, entries))))
        counts = Counter(map(_SCOPE, entries))
        self._scopes = {scope: [dims[scope], count] for scope, count in counts.items()}
        self._entries, self._by_key = by_id, by_key
        self._expiry = [(e.expires_at, e.id) for e in entries if e.expires_at is not None]
        heapq.heapify(self._expiry)
        return True

    # -- Store protocol ------------------------------------------------------------------------

    def put_many(self, entries: Sequence[CacheEntry]) -> None:
        """Insert or replace entries; same ``key`` replaces the older entry. All or nothing.

        Entries expired by ``clock()`` are dropped first, so they do not take LRU room.
        """
        with self._lock:
            self._check_open()
            batch = self._validated(entries)
            undo: list[_Undo] = []
            self._sweep(self._clock(), undo)
            for entry in batch:
                self._attach(entry, undo)
            self._evict(undo)
            self._commit(undo)

    def get(self, entry_id: str, *, now: float) -> CacheEntry | None:
        entry_id, now = check_text_id(entry_id), check_now(now)
        with self._lock:
            entry = self._entries.get(entry_id)
            if entry is None:
                return None
            if entry.expired(now):
                self._expire(entry_id)
                return None
            self._entries.move_to_end(entry_id)
            return entry

    def get_many(self, entry_ids: Sequence[str], *, now: float) -> list[CacheEntry | None]:
        with self._lock:
            return [self.get(entry_id, now=now) for entry_id in entry_ids]

    def get_by_key(self, key: str, *, now: float) -> CacheEntry | None:
        key, now = check_text_id(key, "key"), check_now(now)
        with self._lock:
            entry_id = self._by_key.get(key)
            return None if entry_id is None else self.get(entry_id, now=now)

    def delete(self, entry_ids: Iterable[str]) -> int:
        entry_ids = check_ids(entry_ids)
        with self._lock:
            self._check_open()
            undo: list[_Undo] = []
            for entry_id in dict.fromkeys(entry_ids):
                self._detach(entry_id, undo)
            self._commit(undo)
            return len(undo)

    def entries(self) -> Iterator[CacheEntry]:
        now = self._clock()
        with self._lock:
            snapshot = list(self._entries.values())
        return iter([entry for entry in snapshot if not entry.expired(now)])

    def changes(self, since: int) -> tuple[int, list[Change]] | None:
        """Changes with ``seq > since``; ``(newest, [])`` when ``since`` is at or past the newest."""
        since = check_since(since)
        with self._lock:
            if since >= self._seq:
                return self._seq, []
            oldest = self._log[0].seq if self._log else self._seq + 1
            if since < oldest - 1:
                return None  # the bounded log no longer reaches back: the follower rebuilds
            # seqs in the log are contiguous, so the first wanted change sits at a known offset
            start = since - oldest + 1
            return self._seq, list(itertools.islice(self._log, start, None))

    def invalidate(self, *, namespace: str | None = None, where: Mapping[str, str] | None = None) -> int:
        """Delete every entry of ``namespace`` and/or carrying all ``where`` tags; returns how many."""
        wanted = check_criteria(namespace, where)
        with self._lock:
            self._check_open()
            doomed = [e.id for e in self._entries.values()
                      if (namespace is None or e.namespace == namespace) and wanted <= set(e.tags)]
            undo: list[_Undo] = []
            for entry_id in doomed:
                self._detach(entry_id, undo)
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
        return len(self._entries)

    def __contains__(self, entry_id: object) -> bool:
        return entry_id in self._entries

    def close(self) -> None:
        """Close the journal, writing a snapshot of the entries first so the next open is fast."""
        with self._lock:
            if not self._closed and self._journal is not None:
                if self._journal.owned:
                    try:
                        store_snapshot.write(self._snapshot_dir(), list(self._entries.values()),
                                             version=self._journal.version())
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
        return f"MemoryStore({where!r}, entries={len(self._entries)}, seq={self._seq})"

    # -- internals (callers hold the lock) -----------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("the MemoryStore is closed")

    def _validated(self, entries: Sequence[CacheEntry]) -> list[CacheEntry]:
        if isinstance(entries, CacheEntry) or not isinstance(entries, Iterable):
            raise InvalidRequest("put_many takes a sequence of CacheEntry")
        batch: list[CacheEntry] = []
        dims: dict[str, int] = {scope: info[0] for scope, info in self._scopes.items()}
        for entry in entries:
            if not isinstance(entry, CacheEntry):
                raise InvalidRequest(f"put_many takes CacheEntry objects, got {type(entry).__name__}")
            entry = check_entry_fields(entry)
            vector = as_unit_vector(entry.vector, dim=dims.get(entry.scope), what=f"entry {entry.id!r} vector")
            dims.setdefault(entry.scope, vector.shape[0])
            if self.vector_dtype == "float16":
                vector = _frozen(vector.astype(np.float16))
            batch.append(dataclasses.replace(entry, vector=vector))
        return batch

    def _link(self, entry: CacheEntry) -> None:
        self._entries[entry.id] = entry
        self._entries.move_to_end(entry.id)
        self._by_key[entry.key] = entry.id
        info = self._scopes.setdefault(entry.scope, [entry.vector.shape[0], 0])
        info[1] += 1
        if entry.expires_at is not None:
            heapq.heappush(self._expiry, (entry.expires_at, entry.id))

    def _unlink(self, entry: CacheEntry) -> None:
        del self._entries[entry.id]
        if self._by_key.get(entry.key) == entry.id:
            del self._by_key[entry.key]
        info = self._scopes[entry.scope]
        info[1] -= 1
        if info[1] == 0:
            del self._scopes[entry.scope]  # an emptied scope may take another dimension

    def _attach(self, entry: CacheEntry, undo: list[_Undo]) -> None:
        previous = self._entries.get(entry.id)
        if previous is not None:
            self._unlink(previous)
        owner = self._by_key.get(entry.key)
        if owner is not None and owner != entry.id:
            self._detach(owner, undo)  # same question in the same scope: the newer answer wins
        self._link(entry)
        undo.append(("put", entry.id, entry, previous))

    def _detach(self, entry_id: str, undo: list[_Undo]) -> None:
        entry = self._entries.get(entry_id)
        if entry is not None:
            self._unlink(entry)
            undo.append(("delete", entry_id, entry, None))

    def _sweep(self, now: float, undo: list[_Undo]) -> None:
        heap = self._expiry
        while heap and heap[0][0] <= now:
            expires_at, entry_id = heapq.heappop(heap)
            entry = self._entries.get(entry_id)
            if entry is not None and entry.expires_at == expires_at:
                self._detach(entry_id, undo)
        if len(heap) > 2 * len(self._entries) + 1024:  # replaced entries left too many stale items
            self._expiry = [(e.expires_at, e.id) for e in self._entries.values() if e.expires_at is not None]
            heapq.heapify(self._expiry)

    def _evict(self, undo: list[_Undo]) -> None:
        while len(self._entries) > self.max_entries:
            self._detach(next(iter(self._entries)), undo)

    def _expire(self, entry_id: str) -> None:
        undo: list[_Undo] = []
        self._detach(entry_id, undo)
        try:
            self._commit(undo)
        except StoreError:
            pass  # a read must not fail because housekeeping could not be journaled; retried later

    def _commit(self, undo: list[_Undo]) -> None:
        """Journal the batch, then publish it on the change feed; on failure undo it in memory."""
        if not undo:
            return
        if self._journal is not None:
            ops: list[Op] = [(op, entry_id, entry if op == "put" else None) for op, entry_id, entry, _ in undo]
            try:
                self._check_open()
                self._journal.write(ops, seq=self._seq + len(ops))
            except StoreError:
                self._rollback(undo)
                raise
        for op, entry_id, entry, _ in undo:
            self._seq += 1
            self._log.append(Change(self._seq, op, entry_id, entry if op == "put" else None))  # type: ignore[arg-type]

    def _rollback(self, undo: list[_Undo]) -> None:
        for op, _entry_id, entry, previous in reversed(undo):
            if op == "put":
                self._unlink(entry)
                if previous is not None:
                    self._link(previous)
            else:
                self._link(entry)
                # deletes came from the LRU end (evictions) or replacements; put them back there
                self._entries.move_to_end(entry.id, last=False)


def _frozen(vector: np.ndarray) -> np.ndarray:
    vector.setflags(write=False)
    return vector
