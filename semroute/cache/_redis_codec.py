"""How a cache entry and a change-feed record look inside Redis: JSON plus raw vector bytes.

One module for the wire format so a reader and a writer of ``RedisStore`` can never disagree:
the entry's fields as JSON (``ensure_ascii=False``: Turkish text stays one byte per ASCII char
and two per ``ş``), the vector as little-endian ``float32`` or ``float16`` bytes, its dtype named
in the JSON so a store switched to ``float16`` still reads the entries written before. Nothing is
pickled: a shared Redis must not be a way to run code in every worker.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from ..errors import StoreError
from ..types import CacheEntry
from ._local import Record

__all__ = ["DTYPES", "decode_entry", "decode_record", "encode_entry"]

DTYPES = {"float32": "<f4", "float16": "<f2"}


def encode_entry(entry: CacheEntry, dtype: str) -> tuple[Any, ...]:
    """The arguments of the PUT script for one entry (id, key, namespace, tags, expiry, JSON, vector)."""
    meta = {
        "id": entry.id, "key": entry.key, "scope": entry.scope, "namespace": entry.namespace,
        "question": entry.question, "answer": entry.answer, "created_at": entry.created_at,
        "expires_at": entry.expires_at, "model": entry.model, "tier": entry.tier,
        "embedder": entry.embedder, "tags": [list(pair) for pair in entry.tags], "dtype": dtype,
    }
    vector = np.ascontiguousarray(entry.vector, dtype=DTYPES[dtype]).tobytes()
    tags = "\n".join(f"{name}={value}" for name, value in entry.tags)
    expires = "" if entry.expires_at is None else repr(float(entry.expires_at))
    return (entry.id, entry.key, entry.namespace, tags, expires,
            json.dumps(meta, ensure_ascii=False, separators=(",", ":")), vector)


def decode_entry(m: bytes, v: bytes, where: str) -> CacheEntry:
    """The entry stored as JSON ``m`` and vector bytes ``v``; ``StoreError`` naming ``where`` if malformed."""
    try:
        meta = _loads(m)
        vector = np.frombuffer(v, dtype=DTYPES[meta["dtype"]]).astype(np.float32)
        vector.setflags(write=False)
        return CacheEntry(
            id=meta["id"], key=meta["key"], scope=meta["scope"], namespace=meta["namespace"],
            question=meta["question"], answer=meta["answer"], vector=vector,
            created_at=float(meta["created_at"]), expires_at=meta["expires_at"], model=meta["model"],
            tier=meta["tier"], embedder=meta["embedder"], tags=tuple(tuple(p) for p in meta["tags"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise StoreError(f"malformed cache entry in Redis at {where}: {type(exc).__name__}") from exc


def _loads(m: bytes) -> Any:
    """``orjson`` (a follower decodes every candidate of every lookup: ~4x faster than ``json``),
    ``json`` for what orjson refuses and ``json`` reads (``NaN``, which ``json.dumps`` writes)."""
    try:
        return orjson.loads(m)
    except orjson.JSONDecodeError:
        return json.loads(m)


def decode_record(stream_id: bytes, flat: Sequence[bytes], where: str) -> Record:
    """One change-feed record (a stream id and the field list a script returns flat)."""
    seq = int(stream_id.split(b"-", 1)[1])
    fields = dict(zip(flat[::2], flat[1::2]))
    entry_id = fields[b"id"].decode()
    if fields[b"op"] == b"put":
        return seq, "put", entry_id, decode_entry(fields[b"m"], fields[b"v"], where), None
    key = fields.get(b"k")  # absent in records written before deletes carried their key
    return seq, "delete", entry_id, None, None if key is None else key.decode()
