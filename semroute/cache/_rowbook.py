"""Which store rows a ``FaissIndex`` labelled by row holds: two numpy columns instead of id maps.

Why: followed by entry id, an index and its replica keep, per entry, an id -> label dict, a
label -> id dict, a fingerprint dict, their int objects and the id string itself: ~290 bytes at
1M entries (bench/cache_scale.py). A store with rows (``base.RowStore``) names each entry by a
label ``generation << 32 | row``; the index then only needs, per row, the generation it holds and
the scope it is in (8 bytes), and asks the store for ids and entries when a search returns labels.

A label is live here while this book holds its row at its generation; a row taken by another
entry (a higher generation) makes the old label a tombstone. No locking: ``FaissIndex`` holds its
lock around every call.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..types import CacheEntry
from ._columns import ROW_BITS, row_labels
from ._vector import as_unit_vector
from .base import RowStore

__all__ = ["RowBook", "RowLabels", "ScopeRows"]

_MASK = (1 << ROW_BITS) - 1
_NONE = -1  # scope code of a row this book does not hold


class RowBook:
    """Per store row: the generation this index holds (0: none) and the scope code it is in."""

    def __init__(self) -> None:
        self.gen = np.zeros(1024, dtype=np.uint32)
        self.scope = np.full(1024, _NONE, dtype=np.int32)
        self.count = 0

    def holds(self, label: int) -> bool:
        row = label & _MASK
        return row < len(self.gen) and int(self.gen[row]) == label >> ROW_BITS and int(self.scope[row]) != _NONE

    def put(self, label: int, code: int) -> int | None:
        """Hold ``label`` in scope ``code``; returns the scope code of an older label of the row it replaces."""
        row, gen = label & _MASK, label >> ROW_BITS
        if row >= len(self.gen):
            size = max(2 * len(self.gen), row + 1)
            self.gen = np.concatenate([self.gen, np.zeros(size - len(self.gen), dtype=np.uint32)])
            self.scope = np.concatenate([self.scope, np.full(size - len(self.scope), _NONE, dtype=np.int32)])
        old = int(self.scope[row])
        self.gen[row], self.scope[row] = gen, code
        if old == _NONE:
            self.count += 1
            return None
        return old

    def drop(self, label: int) -> int | None:
        """Stop holding ``label``; returns its scope code, or None if it was not held."""
        if not self.holds(label):
            return None
        row = label & _MASK
        code = int(self.scope[row])
        self.scope[row] = _NONE
        self.count -= 1
        return code

    def mask(self, labels: np.ndarray, code: int) -> np.ndarray:
        """Which ``labels`` this book holds in scope ``code``."""
        labels = np.asarray(labels, dtype=np.int64)
        rows = labels & _MASK
        inside = (rows < len(self.gen)) & (labels >= 0)  # -1: faiss's padding
        rows = np.where(inside, rows, 0)
        return inside & (self.gen[rows] == (labels >> ROW_BITS)) & (self.scope[rows] == code)

    def labels(self) -> np.ndarray:
        return row_labels(self.gen, np.flatnonzero(self.scope != _NONE))

    def save(self, path: Path) -> None:
        np.save(path / "book.gen.npy", self.gen, allow_pickle=False)
        np.save(path / "book.scope.npy", self.scope, allow_pickle=False)

    @classmethod
    def read(cls, path: Path) -> RowBook:
        """The book ``save`` wrote (``ValueError`` if it does not fit, ``OSError`` if missing)."""
        book = cls()
        book.gen = np.load(path / "book.gen.npy", allow_pickle=False).astype(np.uint32)
        book.scope = np.load(path / "book.scope.npy", allow_pickle=False).astype(np.int32)
        if book.gen.shape != book.scope.shape or book.gen.ndim != 1:
            raise ValueError("a row book's columns differ in shape")
        book.count = int(np.count_nonzero(book.scope != _NONE))
        return book


class ScopeRows:
    """The live labels of one scope, answering what ``FaissIndex`` asks of its id dict in id mode.

    ``get(label)`` returns the label itself (the "id" of a row-labelled search result); ``mask``
    answers for a whole array at once (compaction, IVF list copies).
    """

    __slots__ = ("book", "code", "live")

    def __init__(self, book: RowBook, code: int) -> None:
        self.book, self.code, self.live = book, code, 0

    def __len__(self) -> int:
        return self.live

    def __contains__(self, label: object) -> bool:
        return isinstance(label, int) and self.book.holds(label) and int(self.book.scope[label & _MASK]) == self.code

    def get(self, label: int, default: object = None) -> object:
        return label if label in self else default

    def mask(self, labels: np.ndarray) -> np.ndarray:
        return self.book.mask(labels, self.code)


class RowLabels:
    """``FaissIndex``'s methods for being labelled by a store's rows (kept here: one concept).

    Uses the index's lock, scopes and faiss helpers; ``_book`` is None until ``use_rows``.
    """

    _book: RowBook | None
    _rows: Any
    _lock: Any
    _scopes: dict[str, Any]
    _scope_names: list[str]
    dim: int

    def use_rows(self, rows: RowStore) -> None:
        """Label vectors by ``rows``'s row labels from now on (``Replica`` does, for a ``RowStore``).

        The index then keeps no id maps: ``search`` asks the store for the ids of the labels it
        finds, ``remove`` for the labels of ids. Only an empty index can switch.
        """
        with self._lock:
            if self._where or self._scopes:
                raise ConfigError("only an empty FaissIndex can be labelled by store rows")
            self._book, self._rows = RowBook(), rows

    def add_labelled(self, pairs: Sequence[tuple[int, CacheEntry]]) -> None:
        """Add (label, entry) pairs (``use_rows``); a label already held is left as it is."""
        if self._book is None:
            raise ConfigError("add_labelled needs an index labelled by store rows (use_rows)")
        latest = {int(label): entry for label, entry in pairs}
        vectors = {label: as_unit_vector(e.vector, dim=self.dim, what=f"entry {e.id!r} vector") for label, e in latest.items()}
        with self._lock:
            book = self._book
            by_scope: dict[str, list[int]] = {}
            for label, entry in latest.items():
                if not book.holds(label):
                    by_scope.setdefault(entry.scope, []).append(label)
            for scope, labels in by_scope.items():
                holder = self._holder(scope)
                code = self._scope_code(scope)
                for label in labels:
                    old = book.put(label, code)
                    if old is not None:  # the row's previous entry: a tombstone now
                        self._tombstone(self._scope_names[old])
                holder.ids.live += len(labels)
                with self._serial(rows=len(labels)):
                    holder.index.add_with_ids(np.stack([vectors[i] for i in labels]), np.array(labels, dtype=np.int64))
                holder.spare -= len(labels)
                self._grow(holder)

    def remove_labels(self, labels: Iterable[int]) -> None:
        """Forget these labels (``use_rows``; labels not held are ignored)."""
        with self._lock:
            if self._book is None:
                return
            touched: set[str] = set()
            for label in labels:
                code = self._book.drop(int(label))
                if code is not None:
                    touched.add(self._scope_names[code])
                    self._tombstone(self._scope_names[code])
            self._compact(touched)

    def search_labels(self, vector: np.ndarray, *, scope: str, k: int) -> list[tuple[int, float]]:
        """``search`` returning row labels (``use_rows``) instead of ids: the store says which entries they are."""
        return self._search(vector, scope, k)  # type: ignore[return-value]

    def labels(self) -> np.ndarray:
        """Every row label held (``use_rows``)."""
        with self._lock:
            return np.zeros(0, dtype=np.int64) if self._book is None else self._book.labels()

    def _tombstone(self, scope: str) -> None:
        holder = self._scopes[scope]
        holder.ids.live -= 1
        holder.dead += 1

