"""The on-disk journal behind ``MemoryStore``: a SQLite file written through on every change.

It is not a store and is never read after opening: ``MemoryStore`` serves every read from
memory, and the journal only makes those entries survive a restart or a crash. Each batch of
puts and deletes is one SQLite transaction in WAL mode, so a process killed mid-write leaves
the file as it was before that batch (never a partial batch, never a corrupt file).
``synchronous=NORMAL`` means a committed batch survives the process dying; on power loss the
last few batches may be lost, but the file is still consistent.

Vectors are raw little-endian float32 BLOBs and every other field is a column: no pickle.
A lock file stops two stores (or processes) from journaling into one directory at once,
because each would silently overwrite the other's view. A forked child inherits the open
journal and its lock but is not its owner: it may neither write nor read it (``StoreError``;
open a store of its own in another directory, or share a cache with ``RedisStore``), and
closing it in the child leaves the parent's connection and lock alone.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import StoreError, StoreUnavailable
from ..types import CacheEntry

__all__ = ["Journal", "Op"]

# (op, entry id, entry put or None for a delete)
Op = tuple[str, str, "CacheEntry | None"]

_SCHEMA_VERSION = "1"
_COLUMNS = (
    "id, key, scope, namespace, question, answer, vector, created_at, expires_at, model, tier, embedder, stamp, tags"
)
_CREATE = (
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    (
        "CREATE TABLE IF NOT EXISTS entries ("
        " id TEXT PRIMARY KEY, key TEXT NOT NULL, scope TEXT NOT NULL, namespace TEXT NOT NULL,"
        " question TEXT NOT NULL, answer TEXT NOT NULL, vector BLOB NOT NULL, created_at REAL NOT NULL,"
        " expires_at REAL, model TEXT NOT NULL, tier TEXT NOT NULL, embedder TEXT NOT NULL,"
        " stamp INTEGER NOT NULL, tags TEXT NOT NULL DEFAULT '[]')"
    ),
)


class Journal:
    """Write-through persistence of a ``MemoryStore`` in ``directory/semroute-cache.sqlite3``."""

    filename = "semroute-cache.sqlite3"
    lockname = "semroute-cache.lock"

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(f"cannot create the cache directory {self.directory}: {exc}") from exc
        self._lock_fd = _lock_directory(self.directory / self.lockname)
        self._pid = os.getpid()  # the owner; a forked child inherits the lock, not the right to write
        self._db: sqlite3.Connection | None = None
        try:
            # timeout: only an outside tool can hold the write lock (the lock file keeps other
            # stores out); wait briefly, then fail the batch rather than stall a request.
            self._db = sqlite3.connect(
                str(self.directory / self.filename), timeout=2.0, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            for statement in _CREATE:
                self._db.execute(statement)
            self._check_schema()
        except (sqlite3.Error, StoreError) as exc:
            self.close()
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"cannot open the cache journal in {self.directory}: {exc}") from exc

    def _check_schema(self) -> None:
        db = self._conn()
        row = db.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone()
        if row is None:
            db.execute("INSERT INTO meta VALUES ('schema', ?)", (_SCHEMA_VERSION,))
        elif row[0] != _SCHEMA_VERSION:
            raise StoreError(f"cache journal schema {row[0]!r} is not the supported {_SCHEMA_VERSION!r}")
        columns = {r[1] for r in db.execute("PRAGMA table_info(entries)").fetchall()}
        if "tags" not in columns:  # a journal written before entries had tags: every entry has none
            db.execute("ALTER TABLE entries ADD COLUMN tags TEXT NOT NULL DEFAULT '[]'")

    def load(self, *, vector_dtype: str = "float32") -> tuple[list[CacheEntry], int]:
        """Every journaled entry (vectors as ``vector_dtype``), least recently written first, and the last seq."""
        db = self._conn()
        dtype = np.dtype(vector_dtype)
        try:
            seq_row = db.execute("SELECT value FROM meta WHERE name = 'seq'").fetchone()
            # row by row: a million fetched at once would hold every answer twice in memory
            entries = [_entry(row, dtype) for row in db.execute(f"SELECT {_COLUMNS} FROM entries ORDER BY stamp")]
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the cache journal: {exc}") from exc
        return entries, int(seq_row[0]) if seq_row else 0

    def seq(self) -> int:
        """The sequence number of the last batch written."""
        try:
            row = self._conn().execute("SELECT value FROM meta WHERE name = 'seq'").fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the cache journal: {exc}") from exc
        return int(row[0]) if row else 0

    def version(self) -> str:
        """Changes whenever the content changes: the last seq, the row count and the newest rowid.

        The seq alone misses an edit by another tool (which writes no seq); count and rowid catch
        inserts and deletes (an insert or a replace takes a new rowid). ~50 ms at 1M rows.
        """
        try:
            count, newest = self._conn().execute("SELECT COUNT(*), MAX(rowid) FROM entries").fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the cache journal: {exc}") from exc
        return f"{self.seq()}:{count}:{newest}"

    @property
    def owned(self) -> bool:
        """True in the process that opened it (a forked child may neither write nor read it)."""
        return self._db is not None and os.getpid() == self._pid

    def write(self, ops: Sequence[Op], *, seq: int) -> None:
        """Apply ``ops`` in order as one transaction, recording ``seq``; all or nothing."""
        db = self._conn()
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                for position, (op, entry_id, entry) in enumerate(ops):
                    if entry is None:
                        db.execute("DELETE FROM entries WHERE id = ?", (entry_id,))
                    else:
                        stamp = seq - len(ops) + position + 1
                        db.execute(f"INSERT OR REPLACE INTO entries ({_COLUMNS}) VALUES "
                                   "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", _row(entry, stamp))
                db.execute("INSERT OR REPLACE INTO meta VALUES ('seq', ?)", (str(seq),))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write the cache journal: {exc}") from exc

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError("the cache journal is closed")
        if os.getpid() != self._pid:
            raise StoreError(
                f"the cache journal in {self.directory} was opened by process {self._pid}; a forked child "
                "must open its own store (another directory) or share a cache through RedisStore"
            )
        return self._db

    def close(self) -> None:
        if os.getpid() != self._pid:
            # A forked child's copies: closing the SQLite connection here could checkpoint the
            # parent's WAL under it. Keep the connection object unclosed (a reference, so it is
            # not finalised now); close the descriptor copy: the flock stays with the parent
            # (it belongs to the open file, which the parent still holds).
            self._inherited, self._db = self._db, None
            self._release_lock()
            return
        try:
            if self._db is not None:
                self._db.close()
                self._db = None
        finally:
            self._release_lock()

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None


def _lock_directory(path: Path) -> int | None:
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; one writer per directory is then on the user
        return None
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StoreUnavailable(f"cannot create the lock file {path}: {exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        raise StoreUnavailable(
            f"the cache directory {path.parent} is already open by another MemoryStore or process; "
            "share one store object, or use a store made for sharing between processes"
        ) from exc
    return fd


def _row(entry: CacheEntry, stamp: int) -> tuple[object, ...]:
    vector = np.ascontiguousarray(entry.vector, dtype="<f4").tobytes()
    return (
        entry.id, entry.key, entry.scope, entry.namespace, entry.question, entry.answer, vector,
        float(entry.created_at), entry.expires_at, entry.model, entry.tier, entry.embedder, stamp,
        json.dumps([list(pair) for pair in entry.tags], ensure_ascii=False),
    )


def _entry(row: tuple[object, ...], dtype: np.dtype = np.dtype(np.float32)) -> CacheEntry:
    (entry_id, key, scope, namespace, question, answer, blob, created, expires, model, tier, embedder,
     _stamp, tags) = row
    if not isinstance(blob, bytes) or len(blob) == 0 or len(blob) % 4:
        raise StoreError(f"cache journal row {entry_id!r} has a malformed vector")
    vector = np.frombuffer(blob, dtype="<f4").astype(dtype)
    vector.setflags(write=False)
    # Fields shared by many entries are interned: one string per distinct value, not per entry
    # (a restart otherwise keeps ~5 copies of the same short strings for every entry).
    return CacheEntry(
        id=str(entry_id), key=str(key), scope=sys.intern(str(scope)), namespace=sys.intern(str(namespace)),
        question=str(question), answer=str(answer), vector=vector, created_at=float(created),
        expires_at=None if expires is None else float(expires), model=sys.intern(str(model)),
        tier=sys.intern(str(tier)), embedder=sys.intern(str(embedder)),
        tags=() if tags == "[]" else tuple((str(k), str(v)) for k, v in json.loads(str(tags))),
    )
