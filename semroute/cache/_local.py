"""``LocalView``: a shared store's exact-key map and recently used entries, held in this process.

A ``RedisStore`` read that needs a round trip costs more than the whole in-memory lookup
(bench/redis_scale.py: a semantic hit with 2-3 round trips was 5-10x ``MemoryStore``'s). The
view answers most reads without one:

* ``keys``: every live exact-tier key -> entry id, complete (loaded once, then kept by the
  feed), so an exact-tier miss (every semantic lookup starts with one) is answered locally;
* ``entries``: a bounded LRU copy of entries this process read or saw on the feed.

It stays coherent only by applying the store's change feed in order, so it can never serve an
entry whose delete, eviction, expiry or invalidation it has applied: a delete evicts, a put
replaces, a trimmed feed or a reset store clears everything. An entry fetched from
Redis is remembered only if no feed record was applied while it was in flight (a delete
applied meanwhile could otherwise be undone). Freshness is the feed's: what the store's
``sync_interval_s`` allows. TTL is checked by the caller against the entry's absolute expiry.
It does no I/O: the store feeds it and asks it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence

from ..types import CacheEntry

__all__ = ["LocalView", "Record"]

# One feed record as the view needs it: (seq, op, entry id, entry for a put, exact key or None).
Record = tuple[int, str, str, "CacheEntry | None", "str | None"]


class LocalView:
    """Exact-key map plus up to ``capacity`` entries, following a store's feed from ``applied``."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.applied: int | None = None  # last feed seq reflected here; None: not following
        self.keys: dict[str, str] = {}
        self.entries: OrderedDict[str, CacheEntry] = OrderedDict()  # least recently used first
        self._lock = threading.Lock()
        self.hits = 0  # reads answered here (a key known absent counts), for benchmarks and stats
        self.misses = 0

    def reset(self, keys: Mapping[str, str], head: int) -> None:
        """Start following at ``head`` with the complete ``keys`` map read after it was taken."""
        with self._lock:
            self.keys = dict(keys)
            self.entries.clear()
            self.applied = head

    def clear(self) -> None:
        """Stop serving anything until ``reset`` (the feed has a gap or the store was reset)."""
        with self._lock:
            self.applied = None
            self.keys = {}
            self.entries.clear()

    def apply(self, since: int, newest: int, records: Sequence[Record]) -> None:
        """Apply feed records after ``since`` up to ``newest`` that are new here; a reset store clears the view."""
        with self._lock:
            applied = self.applied
            if applied is None:
                return
            if newest < applied:  # the store went backwards (flushed, restored): start again
                self.applied, self.keys = None, {}
                self.entries.clear()
                return
            if since > applied:
                return  # another follower is ahead: (applied, since] is fetched by our own catch-up
            for seq, op, entry_id, entry, key in records:
                if seq <= applied:
                    continue  # another follower of this store already brought the view past it
                if op == "put" and entry is not None:
                    self.keys[entry.key] = entry_id
                    self._remember(entry)
                else:
                    gone = self.entries.pop(entry_id, None)
                    key = gone.key if gone is not None else key
                    if key is not None and self.keys.get(key) == entry_id:
                        del self.keys[key]
            self.applied = max(applied, newest)

    def remember(self, entries: Iterable[CacheEntry], *, seen_at: int | None) -> None:
        """Keep entries read from the store while the view was at ``seen_at``.

        Skipped if a record was applied since (it may be a delete of one of them).
        """
        with self._lock:
            if seen_at is None or self.applied != seen_at:
                return
            for entry in entries:
                self._remember(entry)

    def by_key(self, key: str) -> tuple[bool, CacheEntry | None]:
        """(known, entry): known with ``None`` means no live entry has this key."""
        entry_id = self.keys.get(key)
        if entry_id is None:
            known = self.applied is not None
            self.hits += known
            self.misses += not known
            return known, None
        entry = self.entries.get(entry_id)
        if entry is None or entry.key != key:
            self.misses += 1
            return False, None  # held elsewhere: ask the store
        self.hits += 1
        self._touch(entry_id)
        return True, entry

    def get(self, entry_id: str) -> CacheEntry | None:
        entry = self.entries.get(entry_id)
        if entry is None:
            self.misses += 1
        else:
            self.hits += 1
            self._touch(entry_id)
        return entry

    def _touch(self, entry_id: str) -> None:
        try:
            self.entries.move_to_end(entry_id)
        except KeyError:  # evicted by another thread between the read and now
            pass

    def _remember(self, entry: CacheEntry) -> None:
        if self.capacity <= 0:
            return
        self.entries[entry.id] = entry
        self.entries.move_to_end(entry.id)
        while len(self.entries) > self.capacity:
            self.entries.popitem(last=False)
