"""The two cache seams: ``Store`` (the truth) and ``Index`` (a derived replica).

A store keeps entries with TTL, namespaces and a change feed (an append-only sequence of
puts and deletes, evictions and expiries included). An index maps vectors to entry ids per
scope and can always be rebuilt from the store by replaying ``entries()`` and then following
``changes(since)``. Neither does any embedding or verification.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import numpy as np

from ..types import CacheEntry

__all__ = ["Change", "CountsKnownAnswers", "FeedEpoch", "HoldsIfFree", "Store", "Index", "RowStore", "RowIndex"]


@dataclass(frozen=True, slots=True)
class Change:
    """One step of a store's change feed. ``entry`` is set for puts, ``None`` for deletes.

    ``label`` is set by a ``RowStore``: the row label of the entry put or deleted.
    """

    seq: int
    op: Literal["put", "delete"]
    entry_id: str
    entry: CacheEntry | None = None
    label: int | None = field(default=None, compare=False)  # where the entry lived, not what changed


@runtime_checkable
class Store(Protocol):
    """Where cached entries live. Built in: ``MemoryStore`` (embedded, one process).

    Any class with these methods is a store. A store that cannot be reached raises ``StoreUnavailable``; the router then answers from the
    model and counts the error (fail open).
    """

    def put_many(self, entries: Sequence[CacheEntry]) -> None:
        """Insert or replace entries (same ``key`` replaces); may evict the least recently used."""
        ...

    def get(self, entry_id: str, *, now: float) -> CacheEntry | None:
        """The live entry with this id, or ``None`` (missing or expired). Counts as a use for LRU."""
        ...

    def get_many(self, entry_ids: Sequence[str], *, now: float) -> list[CacheEntry | None]:
        """``get`` for several ids at once (one round trip for a shared store), in order."""
        ...

    def get_by_key(self, key: str, *, now: float) -> CacheEntry | None:
        """The live entry with this exact-tier key, or ``None``. Counts as a use for LRU."""
        ...

    def delete(self, entry_ids: Iterable[str]) -> int:
        """Remove entries; returns how many existed."""
        ...

    def entries(self) -> Iterator[CacheEntry]:
        """Every live entry (for rebuilding an index)."""
        ...

    def changes(self, since: int) -> tuple[int, list[Change]] | None:
        """Changes after sequence number ``since`` and the newest sequence number.

        ``None`` means the feed no longer reaches back to ``since``: rebuild from ``entries()``.
        A ``since`` at or past the newest returns ``(newest, [])``: a follower calls
        ``changes(2**62)`` to learn the newest number before rebuilding from ``entries()``, and
        treats a newest number below its cursor (a reset store) as a reason to rebuild.
        """
        ...

    def invalidate(self, *, namespace: str | None = None, where: Mapping[str, str] | None = None) -> int:
        """Delete every entry of ``namespace`` and/or carrying all ``where`` tags; returns how many.

        At least one criterion is required; the deletes travel through the change feed.
        """
        ...

    def __len__(self) -> int: ...

    def close(self) -> None: ...


@runtime_checkable
class Index(Protocol):
    """Nearest-neighbour search over entry vectors, filtered by scope."""

    dim: int

    def add(self, entries: Sequence[CacheEntry]) -> None:
        """Add (or replace) the vectors of these entries under their scope."""
        ...

    def remove(self, entry_ids: Iterable[str]) -> None: ...

    def search(self, vector: np.ndarray, *, scope: str, k: int) -> list[tuple[str, float]]:
        """Up to ``k`` (entry id, cosine similarity) pairs in ``scope``, most similar first."""
        ...

    def __len__(self) -> int: ...


@runtime_checkable
class FeedEpoch(Protocol):
    """Optional store capability: the change feed has an identity (``RedisStore``).

    A feed that can lose its history and start again (a Redis restarted without persistence)
    numbers its records afresh; ``feed_epoch`` (known once ``changes`` has been called) tells the
    two histories apart, so a follower's saved position is only trusted within the same epoch.
    """

    @property
    def feed_epoch(self) -> str | None: ...


@runtime_checkable
class HoldsIfFree(Protocol):
    """Optional capability of a store or index that never waits on I/O (``MemoryStore``, ``FaissIndex``):
    its lock, taken only if no other thread holds it now.

    After ``try_hold()`` returned True, this thread's calls on the part run without waiting (the
    lock is re-entrant) until ``release_hold()``; False means another thread is using it. The
    gateway's event loop runs a lookup itself only under such holds (``Replica.try_hold``): a
    loop must never wait on a lock that a journal commit or a rebuild may hold for milliseconds.
    Reads under a hold write nothing: ``release_hold()`` returns True when they left expired
    entries in place (never served), for the caller to have ``purge_expired(now)`` run off its thread.
    """

    def try_hold(self) -> bool: ...

    def release_hold(self) -> bool: ...


@runtime_checkable
class CountsKnownAnswers(Protocol):
    """Optional store capability: how many live entries of a scope hold a known answer, one no
    model wrote (``Router.warm``'s; ``MemoryStore``). The answer consensus votes with those only,
    so where fewer than two exist the cache need not fetch the consensus's wider neighbourhood."""

    def known_answers(self, scope: str) -> int: ...


@runtime_checkable
class RowStore(Protocol):
    """Optional store capability: live entries sit in numbered rows (``MemoryStore``).

    A *label* (an int < 2**63) names one entry for as long as it lives; a row reused by another
    entry gets another label. ``Replica`` then labels the index's vectors by row, so neither the
    index nor the replica keeps an id map (~290 bytes per entry at 1M entries). Labels are valid
    across a restart while ``rows_epoch`` is unchanged. A store without it (``RedisStore``) is
    followed by entry id.
    """

    rows_epoch: str

    def labels_of(self, entry_ids: Sequence[str]) -> list[int | None]:
        """The label of each id's live entry, or None."""
        ...

    def ids_at(self, labels: Sequence[int]) -> list[str | None]:
        """The id of the entry each label names, or None if it is gone. Not a use for LRU."""
        ...

    def live_labels(self, labels: np.ndarray) -> np.ndarray:
        """A boolean mask: which labels still name a live entry."""
        ...

    def entries_at(self, labels: Sequence[int], *, now: float) -> list[CacheEntry | None]:
        """``get_many`` by label (None: gone or expired); counts as a use for LRU."""
        ...

    def labelled_entries(self) -> Iterator[tuple[int, CacheEntry]]:
        """``entries()`` with each entry's label."""
        ...


@runtime_checkable
class RowIndex(Protocol):
    """Optional index capability: vectors labelled by a ``RowStore``'s row labels (``FaissIndex``)."""

    def use_rows(self, rows: RowStore) -> None:
        """Label vectors by ``rows``'s labels from now on (while the index is empty)."""
        ...

    def add_labelled(self, pairs: Sequence[tuple[int, CacheEntry]]) -> None:
        """Add (label, entry) pairs; a label already held is left as it is."""
        ...

    def remove_labels(self, labels: Iterable[int]) -> None: ...

    def search_labels(self, vector: np.ndarray, *, scope: str, k: int) -> list[tuple[int, float]]:
        """``Index.search`` returning row labels instead of entry ids."""
        ...

    def labels(self) -> np.ndarray:
        """Every label held."""
        ...
