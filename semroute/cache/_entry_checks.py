"""What a valid cache entry is: field types, tags and invalidation criteria, checked before a store changes.

Shared by ``MemoryStore`` and ``RedisStore`` so both refuse the same input with the same
``InvalidRequest`` (nothing changed). Text fields become plain ``str`` (a subclass's ``__hash__``
never runs in a store) and fields most entries share are interned. No I/O here.
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from ..errors import InvalidRequest
from ..types import CacheEntry
from ._vector import as_unit_vector

__all__ = ["check_criteria", "check_entry_fields", "check_tags", "checked_batch"]


_TAG_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def check_tags(tags: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Validated (name, value) tag pairs: names are identifiers, values one non-empty line."""
    pairs = []
    for pair in tags:
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise InvalidRequest(f"a tag is a (name, value) pair, got {pair!r}")
        name, value = pair
        if not isinstance(name, str) or not _TAG_NAME.match(name):
            raise InvalidRequest(f"tag names are 1-64 letters, digits or _.:- characters, got {name!r}")
        if not isinstance(value, str) or not value or "\n" in value:
            raise InvalidRequest(f"tag {name!r} needs a one-line, non-empty string value, got {value!r}")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:  # the journal could not store it; refuse before anything changes
            raise InvalidRequest(f"tag {name!r} value contains a lone UTF-16 surrogate") from exc
        pairs.append((str.__str__(name), str.__str__(value)))
    return pairs


def check_criteria(namespace: str | None, where: Mapping[str, str] | None) -> set[tuple[str, str]]:
    """The tag pairs an invalidation must match; at least a namespace or one tag is required."""
    if namespace is not None and (not isinstance(namespace, str) or not namespace):
        raise InvalidRequest(f"namespace must be a non-empty string, got {namespace!r}")
    if where is not None and not isinstance(where, Mapping):
        raise InvalidRequest(f"where must be a mapping of tag name to value, got {where!r}")
    pairs = set(check_tags((where or {}).items()))
    if namespace is None and not pairs:
        raise InvalidRequest("invalidate needs a namespace and/or where tags (clearing everything is not invalidation)")
    return pairs


_TEXT_FIELDS = ("id", "key", "scope", "namespace", "question", "answer", "model", "tier", "embedder")
# Fields most entries share: interned, so a million entries hold one copy of each value, not one each.
_SHARED_FIELDS = frozenset(("scope", "namespace", "model", "tier", "embedder"))


def _plain(name: str, value: str) -> str:
    plain = str.__str__(value)
    return sys.intern(plain) if name in _SHARED_FIELDS else plain


def check_entry_fields(entry: CacheEntry) -> CacheEntry:
    """The entry with plain ``str`` fields (a subclass's ``__hash__`` never runs in the store)."""
    for name in _TEXT_FIELDS:
        if not isinstance(getattr(entry, name), str):
            raise InvalidRequest(f"entry {name} must be a str, got {type(getattr(entry, name)).__name__}")
    entry = dataclasses.replace(entry, **{name: _plain(name, getattr(entry, name)) for name in _TEXT_FIELDS})
    for name in ("id", "key", "scope"):
        if not getattr(entry, name):
            raise InvalidRequest(f"entry {name} must be a non-empty str")
    for name in _TEXT_FIELDS:
        try:
            getattr(entry, name).encode("utf-8")
        except UnicodeEncodeError as exc:  # the journal could not store it; refuse before anything changes
            raise InvalidRequest(f"entry {name} contains a lone UTF-16 surrogate") from exc
    if not isinstance(entry.tags, tuple):
        raise InvalidRequest(f"entry {entry.id!r} tags must be a tuple of (name, value) pairs")
    entry = dataclasses.replace(entry, tags=tuple(check_tags(entry.tags)))
    times = [entry.created_at] + ([] if entry.expires_at is None else [entry.expires_at])
    for value in times:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InvalidRequest(f"entry {entry.id!r} times must be finite numbers, got {value!r}")
    return entry


def checked_batch(entries: Sequence[CacheEntry], dims: dict[str, int], vector_dtype: str) -> list[CacheEntry]:
    """A ``MemoryStore.put_many`` batch checked as a whole before anything changes.

    Each entry with plain fields and a read-only unit vector in ``vector_dtype``; one dimension
    per scope (``dims``: the store's scopes, extended by the batch's own).
    """
    if isinstance(entries, CacheEntry) or not isinstance(entries, Iterable):
        raise InvalidRequest("put_many takes a sequence of CacheEntry")
    batch: list[CacheEntry] = []
    dims = dict(dims)
    for entry in entries:
        if not isinstance(entry, CacheEntry):
            raise InvalidRequest(f"put_many takes CacheEntry objects, got {type(entry).__name__}")
        entry = check_entry_fields(entry)
        vector = as_unit_vector(entry.vector, dim=dims.get(entry.scope), what=f"entry {entry.id!r} vector")
        dims.setdefault(entry.scope, vector.shape[0])
        if vector_dtype == "float16":
            vector = vector.astype(np.float16)
            vector.setflags(write=False)
        batch.append(dataclasses.replace(entry, vector=vector))
    return batch
