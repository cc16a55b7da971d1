"""``WrappedStore``: a store that hands every call to a ``MemoryStore``, for tests that slow down or
gate one kind of call (a store on a slow disk or network) and leave the rest as they are."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from semroute.cache.memory import MemoryStore
from semroute.types import CacheEntry


class WrappedStore:
    """Every ``Store`` call goes to ``inner``; a subclass overrides the ones it changes."""

    def __init__(self) -> None:
        self.inner = MemoryStore()

    def put_many(self, entries) -> None:
        self.inner.put_many(entries)

    def get(self, entry_id: str, *, now: float) -> CacheEntry | None:
        return self.inner.get(entry_id, now=now)

    def get_many(self, entry_ids, *, now: float) -> list[CacheEntry | None]:
        return self.inner.get_many(entry_ids, now=now)

    def get_by_key(self, key: str, *, now: float) -> CacheEntry | None:
        return self.inner.get_by_key(key, now=now)

    def changes(self, since: int):
        return self.inner.changes(since)

    def invalidate(self, *, namespace=None, where=None) -> int:
        return self.inner.invalidate(namespace=namespace, where=where)

    def delete(self, entry_ids: Iterable[str]) -> int:
        return self.inner.delete(entry_ids)

    def entries(self) -> Iterator[CacheEntry]:
        return self.inner.entries()

    def __len__(self) -> int:
        return len(self.inner)

    def close(self) -> None:
        self.inner.close()
