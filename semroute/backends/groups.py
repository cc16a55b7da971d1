"""Chunk groups: the chunks of a stream that arrived together, in one upstream read.

A proxy that handles each chunk on its own pays its per-chunk costs (a generator hop per layer,
one socket write to the client) once per token. Handed over in groups, those costs are paid
once per read instead, and a busy gateway catches up by itself: the longer it takes to come
back to a stream, the more lines its next read holds. ``bench/serve.py``'s 300 proxied streams
(20 ms between tokens) spent most of the gateway's CPU writing one chunk per socket write.

A backend may offer ``astream_groups(model, messages)`` (non-empty lists of chunks, in order);
``groups_of`` falls back to one-chunk groups for a backend that has only ``astream``, and
``flatten`` turns groups back into the ``astream`` chunk iterator everyone else uses.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

from ..types import Chunk, Message
from .base import Backend, GroupStreaming

__all__ = ["close_iterator", "flatten", "groups_of", "singletons"]


async def flatten(groups: AsyncIterator[Sequence[Chunk]]) -> AsyncIterator[Chunk]:
    """The chunks of ``groups``, one by one; closing this closes ``groups`` (its slot, its socket)."""
    try:
        async for group in groups:
            for chunk in group:
                yield chunk
    finally:
        await close_iterator(groups, suppress=_RUNNING)


async def singletons(chunks: AsyncIterator[Chunk]) -> AsyncIterator[Sequence[Chunk]]:
    """Each chunk as a group of its own (a source that cannot tell which chunks came together)."""
    try:
        async for chunk in chunks:
            yield (chunk,)
    finally:
        await close_iterator(chunks, suppress=_RUNNING)


def groups_of(backend: Backend, model: str, messages: Sequence[Message], **extra: Any) -> AsyncIterator[Sequence[Chunk]]:
    """The backend's ``astream_groups`` when it has one (``GroupStreaming``), else its ``astream``
    in one-chunk groups. ``extra`` is ``options=`` when the caller gave some (a backend without
    an ``options`` keyword still works without)."""
    if isinstance(backend, GroupStreaming):
        return backend.astream_groups(model, messages, **extra)
    return singletons(backend.astream(model, messages, **extra))


# Closing a generator another task is still running raises RuntimeError: its own consumer closes it.
_RUNNING = (RuntimeError,)


async def close_iterator(iterator: object, *, suppress: tuple[type[BaseException], ...] = ()) -> None:
    """``aclose()`` an async iterator that has one (its slot, its socket); errors of the
    ``suppress`` types are ones the caller cannot act on, the rest propagate."""
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(*suppress):
            await aclose()
