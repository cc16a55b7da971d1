"""Cache entries kept as rows of columns: how ``MemoryStore`` holds a million entries in ~1.6 KB each.

Why: an entry kept as a ``CacheEntry`` object cost ~350 bytes beyond its texts, vector bytes and
maps (the object, a float object, a numpy header per vector, an OrderedDict node; measured at
400k), and a 1M-entry cache held 2,400 B per entry; with rows it holds 1,949 B, index included
(bench/cache_scale.py). Here an entry is a row: its vector one row of a matrix per dimension, its
times and LRU tick numpy columns, the fields most entries share (scope, namespace, model, tier,
embedder) one code into a table of distinct tuples, its own texts Python lists. A ``CacheEntry``
is built only when a caller asks for one, with a read-only copy of its vector.

Ids and keys of 32 lowercase hex digits (uuid4 hex, blake2b-16 hex: every id and key semroute
makes) are kept as their 16 bytes (64 bytes of memory instead of 96); any other string as itself.

A row is added, unlinked (no longer found by id or key, its data kept so that a batch the journal
refused can be undone), relinked, and released (data dropped, row reused). Least recently used
rows come from ``oldest``. A row's *label* (``generation << 32 | row``) names one entry for as long as
it lives, so an index may label its vectors with it (``Replica``): the generation grows each time
the row is reused. No locking here: ``MemoryStore`` holds its lock around every call.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Sequence

import numpy as np

from ..types import CacheEntry
from ._vector import cosines, release_freed

__all__ = ["Columns", "FREE", "ROW_BITS", "pack", "row_labels", "unpack"]

FREE = int(np.iinfo(np.uint64).max)  # the tick of a row that is not live: never an LRU candidate
_START = 1024  # rows allocated at first; columns double when full (untouched rows are not resident)
# LRU candidates taken per ``np.argpartition`` pass: a pass is O(rows), so it is amortised over
# at least rows/64 evictions (~1M rows: a pass costs ~10 ms, once per ~16k evictions).
_MIN_BATCH = 256
ROW_BITS = 32  # a label's low bits: the row; its high bits: the row's generation
_ROW_MASK = (1 << ROW_BITS) - 1
_HEX32 = re.compile(r"[0-9a-f]{32}")


_FIELD_SETTERS = tuple(getattr(CacheEntry, name).__set__ for name in CacheEntry.__slots__)


def _trusted_entry(*values: object) -> CacheEntry:
    """A ``CacheEntry`` of field values in declaration order, built without the frozen dataclass's
    ``__init__`` (one ``object.__setattr__`` per field): the values come from rows that were checked
    when stored. A semantic lookup builds a dozen (measured: 1.6 against 3.5 µs each)."""
    if len(values) != len(_FIELD_SETTERS):
        raise TypeError(f"CacheEntry has {len(_FIELD_SETTERS)} fields, got {len(values)} values")
    entry = object.__new__(CacheEntry)
    for set_field, value in zip(_FIELD_SETTERS, values):
        set_field(entry, value)
    return entry


def row_labels(gens: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The labels (``generation << ROW_BITS | row``) of ``rows``, given every row's generation."""
    return (gens[rows].astype(np.int64) << ROW_BITS) | rows


def pack(text: str) -> str | bytes:
    """The form an id or key is kept in: 16 bytes for 32 lowercase hex digits, else the str."""
    return bytes.fromhex(text) if len(text) == 32 and _HEX32.fullmatch(text) else text


def unpack(value: str | bytes) -> str:
    return value.hex() if type(value) is bytes else value  # type: ignore[union-attr,return-value]


def _grown(array: np.ndarray, rows: int, fill: object = 0) -> np.ndarray:
    out = np.zeros((rows,) + array.shape[1:], dtype=array.dtype)  # calloc: untouched zero rows cost no RSS
    out[:len(array)] = array
    if fill:
        out[len(array):] = fill
    return out


class _Pool:
    """The vectors of one dimension: a matrix whose rows (slots) are handed out and reused."""

    __slots__ = ("free", "matrix", "used")

    def __init__(self, dim: int, dtype: np.dtype) -> None:
        self.matrix = np.empty((_START, dim), dtype=dtype)
        self.used = 0
        self.free: list[int] = []

    def take(self) -> int:
        if self.free:
            return self.free.pop()
        if self.used == len(self.matrix):
            grown = np.empty((2 * self.used, self.matrix.shape[1]), dtype=self.matrix.dtype)
            grown[:self.used] = self.matrix
            self.matrix = grown
            release_freed()  # the old matrix (< 32 MB came from the heap): back to the OS, not held as a hole
        self.used += 1
        return self.used - 1


class Columns:
    """Every row of a ``MemoryStore``: live ones found by id and key, unlinked ones awaiting release."""

    def __init__(self, vector_dtype: str) -> None:
        self.dtype = np.dtype(vector_dtype)
        # Names this numbering of rows: kept by a snapshot that keeps row numbers, new otherwise (a
        # store read back from the journal numbers its rows afresh), so a saved index's labels are
        # trusted only by the rows they were taken from.
        self.epoch = uuid.uuid4().hex
        self.ids: list[str | bytes | None] = []  # packed; None for a released row
        self.keys: list[str | bytes | None] = []
        self.questions: list[str | None] = []
        self.answers: list[str | None] = []
        self.tags: dict[int, tuple[tuple[str, str], ...]] = {}  # only rows that carry tags
        self.created = np.zeros(_START, dtype=np.float64)
        self.expires = np.zeros(_START, dtype=np.float64)  # NaN: never expires
        self.tick = np.full(_START, FREE, dtype=np.uint64)  # last use; FREE when not live
        self.kind = np.zeros(_START, dtype=np.int32)  # code into ``kinds``
        self.slot = np.zeros(_START, dtype=np.int32)  # row of the vector in its dimension's pool
        self.gen = np.zeros(_START, dtype=np.uint32)  # times the row was taken: a label's high bits
        self.kinds: list[tuple[str, str, str, str, str, int]] = []  # scope, namespace, model, tier, embedder, dim
        self._kind_codes: dict[tuple[str, str, str, str, str, int], int] = {}
        self.pools: dict[int, _Pool] = {}
        self.by_id: dict[str | bytes, int] = {}
        self.by_key: dict[str | bytes, int] = {}
        self.scopes: dict[str, list[int]] = {}  # scope -> [dimension, live count]
        self.known: dict[str, int] = {}  # scope -> live rows whose answer is known (no model wrote it)
        self._free: list[int] = []
        self.clock = 0  # the last tick handed out
        self._batch: list[tuple[int, int]] = []  # LRU candidates (tick, row), oldest last

    def __len__(self) -> int:
        return len(self.by_id)

    def row_of(self, entry_id: str) -> int | None:
        return self.by_id.get(pack(entry_id))

    def row_of_key(self, key: str) -> int | None:
        return self.by_key.get(pack(key))

    def touch(self, row: int) -> None:
        self.clock += 1
        self.tick[row] = self.clock

    def expired(self, row: int, now: float) -> bool:
        return bool(now >= self.expires[row])  # NaN (no expiry) compares False

    def add(self, entry: CacheEntry) -> int:
        """A new live row holding ``entry`` (checked; its vector already in ``vector_dtype``), most recently used."""
        vector = entry.vector
        dim = int(vector.shape[0])
        pool = self.pools.get(dim)
        if pool is None:
            pool = self.pools[dim] = _Pool(dim, self.dtype)
        slot = pool.take()
        pool.matrix[slot] = vector
        row = self._row()
        entry_id, key = pack(entry.id), pack(entry.key)
        self.ids[row], self.keys[row] = entry_id, key
        self.questions[row], self.answers[row] = entry.question, entry.answer
        if entry.tags:
            self.tags[row] = entry.tags
        self.created[row] = entry.created_at
        self.expires[row] = math.nan if entry.expires_at is None else entry.expires_at
        kind = (entry.scope, entry.namespace, entry.model, entry.tier, entry.embedder, dim)
        code = self._kind_codes.get(kind)
        if code is None:
            code = self._kind_codes[kind] = len(self.kinds)
            self.kinds.append(kind)
        self.kind[row], self.slot[row] = code, slot
        self.gen[row] += 1
        self.clock += 1
        self.relink(row, self.clock)
        return row

    def _row(self) -> int:
        if self._free:
            return self._free.pop()
        row = len(self.ids)
        if row == len(self.tick):
            for name, fill in (("created", 0), ("expires", 0), ("tick", FREE), ("kind", 0), ("slot", 0),
                               ("gen", 0)):
                setattr(self, name, _grown(getattr(self, name), 2 * row, fill))
            release_freed()
        for column in (self.ids, self.keys, self.questions, self.answers):
            column.append(None)
        return row

    def unlink(self, row: int) -> int:
        """Stop finding ``row`` by id or key (its data stays, for ``relink``); returns its tick."""
        entry_id, key = self.ids[row], self.keys[row]
        if self.by_id.get(entry_id) == row:  # type: ignore[arg-type]
            del self.by_id[entry_id]  # type: ignore[arg-type]
        if self.by_key.get(key) == row:  # type: ignore[arg-type]
            del self.by_key[key]  # type: ignore[arg-type]
        kind = self.kinds[self.kind[row]]
        scope = kind[0]
        info = self.scopes[scope]
        info[1] -= 1
        if info[1] == 0:
            del self.scopes[scope]  # an emptied scope may take another dimension
        if not kind[2]:
            self.known[scope] -= 1
        tick = int(self.tick[row])
        self.tick[row] = FREE
        return tick

    def relink(self, row: int, tick: int) -> None:
        """Make ``row`` live again with its old ``tick`` (a rollback), or newly added."""
        self.by_id[self.ids[row]] = row  # type: ignore[index]
        self.by_key[self.keys[row]] = row  # type: ignore[index]
        kind = self.kinds[self.kind[row]]
        self.scopes.setdefault(kind[0], [kind[5], 0])[1] += 1
        if not kind[2]:
            self.known[kind[0]] = self.known.get(kind[0], 0) + 1
        self.tick[row] = tick
        if tick < self.clock:  # an old tick back: candidates computed without it may not be the oldest
            self._batch = []

    def release(self, row: int) -> None:
        """Drop an unlinked row's data and let a later ``add`` reuse it."""
        self.pools[self.kinds[self.kind[row]][5]].free.append(int(self.slot[row]))
        self.ids[row] = self.keys[row] = self.questions[row] = self.answers[row] = None
        self.tags.pop(row, None)
        self._free.append(row)

    def oldest(self) -> int | None:
        """The least recently used live row (exactly), or None if there is none.

        Candidates come in batches: the rows with the smallest ticks, found by one
        ``np.argpartition`` pass. A candidate is still the oldest iff its tick is unchanged since
        the pass: ticks only grow (a use, a new row), and ``relink`` of an old tick drops the batch.
        """
        while True:
            if not self._batch:
                if not self._refill():
                    return None
            tick, row = self._batch.pop()
            if tick != FREE and int(self.tick[row]) == tick:
                return row

    def _refill(self) -> bool:
        high = len(self.ids)
        ticks = self.tick[:high]
        size = min(high, max(_MIN_BATCH, len(self.by_id) // 64))
        if size == 0:
            return False
        rows = np.argpartition(ticks, size - 1)[:size] if size < high else np.arange(high)
        rows = rows[np.argsort(ticks[rows])[::-1]]  # oldest last: ``pop`` takes it
        self._batch = list(zip(ticks[rows].tolist(), rows.tolist()))
        if self._batch[-1][0] == FREE:  # no live row at all
            self._batch = []
            return False
        return True

    def live_rows(self) -> np.ndarray:
        """Every live row, least recently used first."""
        ticks = self.tick[:len(self.ids)]
        rows = np.flatnonzero(ticks != np.uint64(FREE))
        return rows[np.argsort(ticks[rows], kind="stable")]

    def entry(self, row: int) -> CacheEntry:
        """A ``CacheEntry`` of ``row``, its vector a read-only copy."""
        kind = self.kinds[self.kind[row]]
        vector = self.pools[kind[5]].matrix[self.slot[row]].copy()
        vector.setflags(write=False)
        return self._entry(row, kind, vector)

    def entries(self, rows: Sequence[int]) -> list[CacheEntry]:
        """``entry`` for many rows; vectors are read-only views of one copy per dimension."""
        rows = list(rows)
        out: list[CacheEntry | None] = [None] * len(rows)
        by_dim: dict[int, list[int]] = {}
        for n, row in enumerate(rows):
            by_dim.setdefault(self.kinds[self.kind[row]][5], []).append(n)
        for dim, positions in by_dim.items():
            block = self.pools[dim].matrix[self.slot[[rows[n] for n in positions]]]
            block.setflags(write=False)
            for n, vector in zip(positions, block):
                out[n] = self._entry(rows[n], self.kinds[self.kind[rows[n]]], vector)
        return out  # type: ignore[return-value]

    def scored(self, labels: Sequence[int], query: np.ndarray, scope: str,
               now: float) -> tuple[list[tuple[int, float, bool, str]], list[int], list[int]]:
        """For labels an index proposed: ``(label, cosine to query, model-written, answer)`` of the live ones in
        ``scope`` (cosines clamped to [-1, 1]; no ``CacheEntry`` built), the labels that are gone or
        expired, and the expired rows (for the store to drop). Liveness, TTL and scope in array
        operations; only the kept rows' cosines one by one."""
        wanted = np.asarray(labels, dtype=np.int64)
        live = self.live_labels(wanted)
        rows = np.where(live, wanted & _ROW_MASK, 0)
        expired = live & (self.expires[rows] <= now)  # NaN (no expiry) compares False
        alive = live & ~expired
        codes = self.kind[rows]
        in_scope = alive & np.array([self.kinds[c][0] == scope for c in codes.tolist()], dtype=bool)
        kept = np.flatnonzero(in_scope)
        sims = np.full(len(kept), -1.0, dtype=np.float64)
        kept_codes = codes[kept].tolist()
        dims = [self.kinds[c][5] for c in kept_codes]
        for dim in set(dims):
            if dim != query.shape[0]:
                continue  # another embedder's rows: never a hit
            at = [n for n, d in enumerate(dims) if d == dim]
            block = self.pools[dim].matrix[self.slot[rows[kept[at]]]].astype(np.float32, copy=False)
            sims[at] = cosines(block, query)  # as ``Replica`` scores entries: to the last bit
        answers = self.answers
        found = [(label, sim, bool(self.kinds[c][2]), answers[row])
                 for label, sim, c, row in zip(wanted[kept].tolist(), sims.tolist(), kept_codes, rows[kept].tolist())]
        return found, wanted[~alive].tolist(), rows[expired].tolist()

    def _entry(self, row: int, kind: tuple[str, str, str, str, str, int], vector: np.ndarray) -> CacheEntry:
        expires = float(self.expires[row])
        return _trusted_entry(
            unpack(self.ids[row]), unpack(self.keys[row]), kind[0], kind[1], self.questions[row],  # type: ignore[arg-type]
            self.answers[row], vector, float(self.created[row]), None if math.isnan(expires) else expires,  # type: ignore[arg-type]
            kind[2], kind[3], kind[4], self.tags.get(row, ()),
        )

    def label(self, row: int) -> int:
        return int(self.gen[row]) << ROW_BITS | row

    def labels(self, rows: np.ndarray) -> np.ndarray:
        """``label`` of each of ``rows``, as one array."""
        return row_labels(self.gen, rows)

    def live_labels(self, labels: np.ndarray) -> np.ndarray:
        """Which ``labels`` name a live row still holding the entry it held when labelled."""
        labels = np.asarray(labels, dtype=np.int64)
        rows = labels & _ROW_MASK
        ok = rows < len(self.ids)
        rows = np.where(ok, rows, 0)
        return ok & (self.gen[rows] == (labels >> ROW_BITS)) & (self.tick[rows] != np.uint64(FREE))

    def row_of_label(self, label: int) -> int | None:
        row = label & _ROW_MASK
        live = row < len(self.ids) and int(self.gen[row]) == label >> ROW_BITS and int(self.tick[row]) != FREE
        return row if live else None

    def vector(self, row: int) -> np.ndarray:
        """A read-only view of ``row``'s stored vector (valid until the row is released)."""
        view = self.pools[self.kinds[self.kind[row]][5]].matrix[self.slot[row]]
        view.setflags(write=False)
        return view

    def _placed_pool(self, vectors: np.ndarray, rows: np.ndarray, high: int, capacity: int) -> _Pool:
        """A pool holding each loaded vector at its row (slot == row), the holes' slots free."""
        pool = _Pool(vectors.shape[1], self.dtype)
        pool.matrix = np.empty((capacity, vectors.shape[1]), dtype=self.dtype)
        for start in range(0, len(rows), 65_536):  # a memory-mapped file is read chunk by chunk
            stop = min(len(rows), start + 65_536)
            pool.matrix[rows[start:stop]] = vectors[start:stop]
        pool.used, pool.free = high, list(self._free)
        return pool

    def load(self, *, ids: list[str | bytes], keys: list[str | bytes], questions: list[str], answers: list[str],
             tags: dict[int, tuple[tuple[str, str], ...]], times: np.ndarray, kinds: list[tuple[str, str, str, str, str, int]],
             kind: np.ndarray, vectors: np.ndarray, rows: np.ndarray | None = None,
             gens: np.ndarray | None = None) -> bool:
        """Fill this empty ``Columns`` with rows in LRU order (least recently used first), in bulk.

        False, with nothing changed, if ids or keys repeat or the shapes do not fit (the caller
        reads the journal instead). Built with C-level dict and array operations: seconds at 1M.
        ``rows``: where each entry lived; ``gens``: every row's generation (the free ones' too), so
        labels an index saved still name the same entries and no stale label comes back to life
        (default: rows 0..n-1, generation 1).
        """
        n = len(ids)
        if rows is None or gens is None:
            rows, gens = np.arange(n, dtype=np.int64), np.ones(n, dtype=np.uint32)
        high = max(int(rows.max()) + 1 if n else 0, len(gens))
        if rows.shape != (n,) or gens.ndim != 1 or len(gens) < high or (n and rows.min() < 0) \
                or len(np.unique(rows)) != n:
            return False
        dims = {kinds[code][5] for code in np.unique(kind).tolist()}
        if len(dims) > 1 or (n and vectors.shape != (n, next(iter(dims)))) or times.shape != (n, 2):
            return False
        numbers = rows.tolist()  # one int object per row, shared by both maps
        by_id, by_key = dict(zip(ids, numbers)), dict(zip(keys, numbers))
        if len(by_id) != n or len(by_key) != n or not all(len(c) == n for c in (keys, questions, answers, kind)):
            return False
        capacity = max(_START, high + high // 8)
        self._free = np.setdiff1d(np.arange(high), rows).tolist()
        if n:
            self.pools = {vectors.shape[1]: self._placed_pool(vectors, rows, high, capacity)}
        self.ids, self.keys, self.questions, self.answers = (_placed(c, numbers, high) for c in (ids, keys, questions, answers))
        self.tags = {numbers[position]: pairs for position, pairs in tags.items()}
        for name, values, fill in (("created", times[:, 0], 0), ("expires", times[:, 1], 0),
                                   ("tick", np.arange(1, n + 1, dtype=np.uint64), FREE), ("kind", kind, 0),
                                   ("slot", rows, 0)):
            column = np.full(capacity, fill, dtype=getattr(self, name).dtype)
            column[rows] = values
            setattr(self, name, column)
        self.gen = np.zeros(capacity, dtype=np.uint32)
        self.gen[:high] = gens
        self.kinds, self._kind_codes = list(kinds), {k: code for code, k in enumerate(kinds)}
        self.by_id, self.by_key, self.clock, self._batch = by_id, by_key, n, []
        counts = np.bincount(kind, minlength=len(kinds)).tolist() if n else []
        for code, count in enumerate(counts):
            if count:
                self.scopes.setdefault(kinds[code][0], [kinds[code][5], 0])[1] += count
                if not kinds[code][2]:
                    self.known[kinds[code][0]] = self.known.get(kinds[code][0], 0) + count
        return True


def _placed(values: list, rows: list[int], high: int) -> list:
    """``values`` laid out at their ``rows`` (None in the holes)."""
    if len(rows) == high:  # rows 0..n-1, as a format-1 snapshot or a store without holes has them
        if rows == list(range(high)):
            return values
    out: list = [None] * high
    for row, value in zip(rows, values):
        out[row] = value
    return out
