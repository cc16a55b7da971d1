"""A ``MemoryStore``'s entries written at close in a columnar form that loads far faster than the journal.

Reading a million entries back from the SQLite journal costs ~15-25 µs each (row fetch, vector
conversion, object construction; bench/cache_scale.py profile): minutes at 1M. This snapshot
holds the same entries as arrays: vectors as one ``.npy``, per-entry texts as one UTF-8 blob
with offsets, fields most entries share (scope, namespace, model, tier, embedder) as a list of
distinct values plus codes, so loading is a few array reads and one object per entry.

It is not the truth and not a journal: it is valid only for the journal version (last sequence
number, row count, newest row) it records, so it is ignored (and the journal read instead) once the journal has moved on, and
whenever a file is missing or does not fit. No pickle: ``.npy`` arrays are loaded with
``allow_pickle=False``. Written to a temporary sibling and renamed, so a crash leaves the old
snapshot or the new one, never a mix.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import shutil
import sys
from collections import deque
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..types import CacheEntry
from ._vector import gc_paused

__all__ = ["read", "write"]

_FORMAT = 1
_OWN = ("id", "key", "question", "answer", "tags")  # per-entry texts: blob + offsets
_SHARED = ("scope", "namespace", "model", "tier", "embedder")  # distinct values + codes


def write(directory: Path, entries: Sequence[CacheEntry], *, version: str) -> bool:
    """Write ``entries`` (in LRU order) as of journal ``version``; False (and no snapshot) if they do not fit one array."""
    shapes = {(e.vector.shape, e.vector.dtype) for e in entries}
    if len(shapes) > 1:  # several embedders' dimensions in one store: the journal is read instead
        shutil.rmtree(directory, ignore_errors=True)
        return False
    staging = directory.with_name(directory.name + ".new")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    vectors = np.stack([e.vector for e in entries]) if entries else np.zeros((0, 0), np.float32)
    np.save(staging / "vectors.npy", vectors, allow_pickle=False)
    times = np.array([(e.created_at, math.nan if e.expires_at is None else e.expires_at) for e in entries],
                     dtype=np.float64).reshape(len(entries), 2)
    np.save(staging / "times.npy", times, allow_pickle=False)
    for name in _OWN:
        parts = [_text(e, name).encode("utf-8") for e in entries]
        (staging / f"{name}.bin").write_bytes(b"".join(parts))
        offsets = np.zeros(len(parts) + 1, dtype=np.int64)
        np.cumsum([len(p) for p in parts], out=offsets[1:])
        np.save(staging / f"{name}.offsets.npy", offsets, allow_pickle=False)
    shared = {}
    for name in _SHARED:
        values: dict[str, int] = {}
        codes = np.fromiter((values.setdefault(getattr(e, name), len(values)) for e in entries), dtype=np.int32,
                            count=len(entries))
        np.save(staging / f"{name}.codes.npy", codes, allow_pickle=False)
        shared[name] = list(values)
    meta = {"format": _FORMAT, "version": version, "count": len(entries), "shared": shared}
    (staging / "snapshot.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    shutil.rmtree(directory, ignore_errors=True)
    os.replace(staging, directory)
    return True


def read(directory: Path, *, version: str, vector_dtype: str) -> list[CacheEntry] | None:
    """The entries written as of journal ``version`` (vectors as ``vector_dtype``), or None if there is no such snapshot."""
    try:
        meta = json.loads((directory / "snapshot.json").read_text(encoding="utf-8"))
        if meta.get("format") != _FORMAT or meta.get("version") != version:
            return None
        count = int(meta["count"])
        vectors = np.load(directory / "vectors.npy", allow_pickle=False, mmap_mode="r")  # copied chunk by chunk
        times = np.load(directory / "times.npy", allow_pickle=False)
        own = {name: _texts(directory, name, count) for name in _OWN}
        shared = {name: [_interned(v) for v in meta["shared"][name]] for name in _SHARED}
        codes = {name: np.load(directory / f"{name}.codes.npy", allow_pickle=False).tolist() for name in _SHARED}
        if len(vectors) != count or times.shape != (count, 2) or any(len(c) != count for c in codes.values()):
            return None
        with gc_paused():
            return _entries(count, vectors.astype(vector_dtype, copy=False), times, own, shared, codes)
    except (OSError, ValueError, KeyError, IndexError, TypeError, UnicodeDecodeError):
        return None


# Vectors are handed out as read-only views of chunks of this many rows: one allocation per chunk
# instead of one per entry (~3x faster to load at 1M, and no per-vector allocation overhead). The
# snapshot is in LRU order, so eviction frees whole chunks nearly in order; a chunk lives as long
# as any of its entries does (at most this many vectors held for one survivor).
_CHUNK_ROWS = 4096


def _entries(count: int, vectors: np.ndarray, times: np.ndarray, own: dict[str, list[str]],
             shared: dict[str, list[str]], codes: dict[str, list[int]]) -> list[CacheEntry]:
    created = times[:, 0].tolist()
    expires = [None if math.isnan(value) else value for value in times[:, 1].tolist()]
    ids, keys, questions, answers, tags = (own[name] for name in _OWN)
    scope, namespace, model, tier, embedder = ([shared[name][c] for c in codes[name]] for name in _SHARED)
    rows: list[np.ndarray] = []
    for start in range(0, count, _CHUNK_ROWS):
        chunk = np.array(vectors[start:start + _CHUNK_ROWS])  # its own buffer, apart from the file's
        chunk.setflags(write=False)  # and so every row view is read-only too
        rows.extend(chunk)
    pairs = [() if text == "[]" else tuple((str(k), str(v)) for k, v in json.loads(text)) for text in tags]
    columns = (ids, keys, scope, namespace, questions, answers, rows, created, expires, model, tier, embedder, pairs)
    return _construct(count, columns)


def _construct(count: int, columns: tuple[list, ...]) -> list[CacheEntry]:
    """``CacheEntry`` objects from columns, one field at a time over all entries (~2x faster at 1M).

    The dataclass ``__init__`` only assigns fields (no ``__post_init__``; the values were checked
    by the store that wrote them), so assigning each field's slot for every entry in one C-level
    pass gives equal objects. Falls back to the constructor if ``CacheEntry`` ever validates.
    """
    fields = dataclasses.fields(CacheEntry)
    if hasattr(CacheEntry, "__post_init__") or len(fields) != len(columns):
        return list(map(CacheEntry, *columns))
    out = list(map(object.__new__, itertools.repeat(CacheEntry, count)))
    for field, values in zip(fields, columns):
        deque(map(vars(CacheEntry)[field.name].__set__, out, values), maxlen=0)  # consumed in C
    return out


def _texts(directory: Path, name: str, count: int) -> list[str]:
    """The column's texts: one decode of the whole blob, then ``str`` slices (~3x faster at 1M than a decode each)."""
    blob = (directory / f"{name}.bin").read_bytes()
    offsets = np.load(directory / f"{name}.offsets.npy", allow_pickle=False)
    if offsets.shape != (count + 1,) or (count and (offsets[0] != 0 or offsets[-1] != len(blob))) \
            or np.any(np.diff(offsets) < 0):
        raise ValueError(f"{name} offsets do not fit its blob")
    if name == "tags" and blob == b"[]" * count:  # the usual case, no entry has tags: skip a million slices
        return ["[]"] * count
    text = blob.decode("utf-8")
    if len(text) != len(blob):  # some multi-byte characters: byte offsets -> character offsets
        starts = np.frombuffer(blob, dtype=np.uint8) & 0xC0 != 0x80  # the first byte of each character
        chars = np.concatenate(([0], np.cumsum(starts)))
        if not starts[offsets[offsets < len(blob)]].all():
            raise ValueError(f"{name} offsets split a character")
        offsets = chars[offsets]
    bounds = offsets.tolist()
    return [text[a:b] for a, b in zip(bounds, bounds[1:])]


def _text(entry: CacheEntry, name: str) -> str:
    if name == "tags":  # most entries carry none: skip a json.dumps each (~0.6 s of a 200k close)
        return json.dumps([list(pair) for pair in entry.tags], ensure_ascii=False) if entry.tags else "[]"
    return getattr(entry, name)


def _interned(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError("a shared field value must be a string")
    return sys.intern(value)
