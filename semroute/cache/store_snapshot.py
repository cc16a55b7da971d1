"""A ``MemoryStore``'s rows written at close in a columnar form that loads far faster than the journal.

Reading a million entries back from the SQLite journal costs ~15-25 µs each (row fetch, vector
conversion, object construction; bench/cache_scale.py profile): minutes at 1M. This snapshot
holds the same entries as arrays: vectors as one ``.npy``, per-entry texts as one UTF-8 blob
with offsets, fields most entries share (scope, namespace, model, tier, embedder) as a list of
distinct values plus codes, so loading is a few array reads straight into the store's columns
(``_columns.Columns``), with no object per entry beyond its own texts.

It is not the truth and not a journal: it is valid only for the journal version (last sequence
number, row count, newest row) it records, so it is ignored (and the journal read instead) once the journal has moved on, and
whenever a file is missing or does not fit. No pickle: ``.npy`` arrays are loaded with
``allow_pickle=False``. Written to a temporary sibling and renamed, so a crash leaves the old
snapshot or the new one, never a mix.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np

from ._columns import Columns, pack, unpack
from ._vector import gc_paused

__all__ = ["read", "write"]

# 2: also each entry's row and every row's generation, and the row numbering's epoch, so an index
# labelled by rows (``Replica``) stays valid across a restart. Format 1 is still read (rows renumbered).
_FORMAT = 2
_OWN = ("id", "key", "question", "answer", "tags")  # per-entry texts: blob + offsets
_SHARED = ("scope", "namespace", "model", "tier", "embedder")  # distinct values + codes
_CHUNK = 65_536  # rows of vectors copied at a time: no second copy of every vector at close


def write(directory: Path, columns: Columns, *, version: str) -> bool:
    """Write the live rows (in LRU order) as of journal ``version``; False (and no snapshot) if they do not fit one array."""
    rows = columns.live_rows()
    dims = {columns.kinds[code][5] for code in np.unique(columns.kind[rows]).tolist()}
    if len(dims) > 1:  # several embedders' dimensions in one store: the journal is read instead
        shutil.rmtree(directory, ignore_errors=True)
        return False
    staging = directory.with_name(directory.name + ".new")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    _write_vectors(staging / "vectors.npy", columns, rows, dims.pop() if dims else 0)
    times = np.stack([columns.created[rows], columns.expires[rows]], axis=1)
    np.save(staging / "times.npy", times, allow_pickle=False)
    order = rows.tolist()
    for name in _OWN:
        blob, offsets = _own_column(columns, name, order)
        (staging / f"{name}.bin").write_bytes(blob)
        np.save(staging / f"{name}.offsets.npy", offsets, allow_pickle=False)
    shared = {}
    for position, name in enumerate(_SHARED):
        values: dict[str, int] = {}
        of_kind = np.array([values.setdefault(kind[position], len(values)) for kind in columns.kinds] or [0],
                           dtype=np.int32)
        np.save(staging / f"{name}.codes.npy", of_kind[columns.kind[rows]], allow_pickle=False)
        shared[name] = list(values)
    np.save(staging / "rows.npy", rows.astype(np.int64), allow_pickle=False)
    np.save(staging / "gens.npy", columns.gen[:len(columns.ids)], allow_pickle=False)
    meta = {"format": _FORMAT, "version": version, "count": len(order), "shared": shared, "epoch": columns.epoch}
    (staging / "snapshot.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    shutil.rmtree(directory, ignore_errors=True)
    os.replace(staging, directory)
    return True


def _write_vectors(path: Path, columns: Columns, rows: np.ndarray, dim: int) -> None:
    if not len(rows):
        np.save(path, np.zeros((0, 0), dtype=columns.dtype), allow_pickle=False)
        return
    out = np.lib.format.open_memmap(path, mode="w+", dtype=columns.dtype, shape=(len(rows), dim))
    matrix, slots = columns.pools[dim].matrix, columns.slot[rows]
    for start in range(0, len(rows), _CHUNK):
        out[start:start + _CHUNK] = matrix[slots[start:start + _CHUNK]]
    out.flush()
    del out


def _own_column(columns: Columns, name: str, rows: list[int]) -> tuple[bytes, np.ndarray]:
    """One text column as a UTF-8 blob and its offsets (ids and keys kept as 16 bytes: one ``hex`` for all)."""
    if name in ("id", "key"):
        packed = [(columns.ids if name == "id" else columns.keys)[row] for row in rows]
        if all(type(value) is bytes for value in packed):
            return b"".join(packed).hex().encode("ascii"), np.arange(len(rows) + 1, dtype=np.int64) * 32  # type: ignore[arg-type]
        parts = [unpack(value).encode("utf-8") for value in packed]  # type: ignore[arg-type]
    elif name == "tags":  # most rows carry none: skip a json.dumps each
        parts = [json.dumps([list(p) for p in columns.tags[row]], ensure_ascii=False).encode("utf-8")
                 if row in columns.tags else b"[]" for row in rows]
    else:
        texts = columns.questions if name == "question" else columns.answers
        parts = [texts[row].encode("utf-8") for row in rows]  # type: ignore[union-attr]
    offsets = np.zeros(len(parts) + 1, dtype=np.int64)
    np.cumsum([len(p) for p in parts], out=offsets[1:])
    return b"".join(parts), offsets


def read(directory: Path, *, version: str, columns: Columns) -> bool:
    """Fill the empty ``columns`` with the rows written as of journal ``version``; False (nothing filled) if there is no such snapshot."""
    try:
        meta = json.loads((directory / "snapshot.json").read_text(encoding="utf-8"))
        if meta.get("format") not in (1, _FORMAT) or meta.get("version") != version:
            return False
        count = int(meta["count"])
        vectors = np.load(directory / "vectors.npy", allow_pickle=False, mmap_mode="r")  # copied chunk by chunk
        times = np.load(directory / "times.npy", allow_pickle=False)
        shared = {name: [_interned(v) for v in meta["shared"][name]] for name in _SHARED}
        codes = [np.load(directory / f"{name}.codes.npy", allow_pickle=False) for name in _SHARED]
        if len(vectors) != count or times.shape != (count, 2) or any(c.shape != (count,) for c in codes):
            return False
        with gc_paused():
            ids, keys = (_packed(directory, name, count) for name in ("id", "key"))
            questions, answers = (_texts(directory, name, count) for name in ("question", "answer"))
            tags = {row: tuple((str(k), str(v)) for k, v in json.loads(text))
                    for row, text in enumerate(_texts(directory, "tags", count)) if text != "[]"}
            kinds, kind = _kinds(codes, shared, int(vectors.shape[1]) if count else 0)
            rows = gens = None
            if meta["format"] == _FORMAT:
                rows, gens = (np.load(directory / f"{name}.npy", allow_pickle=False) for name in ("rows", "gens"))
                rows, gens = rows.astype(np.int64), gens.astype(np.uint32)
                columns.epoch = str(meta["epoch"])
            return columns.load(ids=ids, keys=keys, questions=questions, answers=answers, tags=tags, times=times,
                                kinds=kinds, kind=kind, vectors=vectors, rows=rows, gens=gens)
    except (OSError, ValueError, KeyError, IndexError, TypeError, UnicodeDecodeError):
        return False


def _kinds(codes: list[np.ndarray], shared: dict[str, list[str]], dim: int) -> tuple[list, np.ndarray]:
    """The distinct (scope, namespace, model, tier, embedder, dim) tuples and each row's code into them."""
    if not len(codes[0]):
        return [], np.zeros(0, dtype=np.int32)
    distinct, kind = np.unique(np.stack(codes, axis=1), axis=0, return_inverse=True)
    kinds = [tuple(shared[name][c] for name, c in zip(_SHARED, row)) + (dim,) for row in distinct.tolist()]
    return kinds, kind.reshape(-1).astype(np.int32)


def _packed(directory: Path, name: str, count: int) -> list[str | bytes]:
    """Ids or keys as ``Columns`` keeps them; all 32 lowercase hex digits (the usual case): one ``bytes.fromhex``."""
    blob = (directory / f"{name}.bin").read_bytes()
    offsets = np.load(directory / f"{name}.offsets.npy", allow_pickle=False)
    digits = np.frombuffer(blob, dtype=np.uint8)
    if len(blob) == 32 * count and np.array_equal(offsets, np.arange(count + 1) * 32) \
            and bool((((digits - 48) < 10) | ((digits - 97) < 6)).all()):  # uint8 wraps: 0-9 or a-f
        raw = bytes.fromhex(blob.decode("ascii"))
        return [raw[i:i + 16] for i in range(0, len(raw), 16)]
    return [pack(text) for text in _texts(directory, name, count)]


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


def _interned(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError("a shared field value must be a string")
    return sys.intern(value)
