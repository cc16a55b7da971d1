"""``OllamaBackend``'s async clients, one set per event loop, and how they end with their loop.

An httpx (or ``Http1``) connection belongs to the loop that opened it, so a backend keeps, per
loop: the ``ollama`` client (its model calls and metadata), the httpx clients its streams are
spread over (``_Shard``s, the first being the ollama client's own) and, for plain ``http://``
hosts, the lean client (``http1.Http1``) of its model calls and streams. They are closed in
their own loop: by ``aclose()``, by ``close()`` for a loop that is not running, or by the loop's
shutdown (``_close_at_loop_shutdown`` is an async generator the loop closes before it ends).
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import AsyncGenerator, Callable

import httpx
import ollama

from .http1 import Http1

__all__: list[str] = []  # private to the backends


class _Shard:
    """One httpx client for streams and the number of streams open on it."""

    __slots__ = ("http", "streams")

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http, self.streams = http, 0


# Streams per httpx client before another client is opened: httpcore's pool scans all of its
# connections and queued requests whenever a request starts or a response closes, so one pool
# with 1,000 open streams spent a quarter of the gateway's samples in that scan
# (bench/serve.py's 1,000 proxied streams under py-spy, 2026-12-04). Below this, one client.
_STREAMS_PER_CLIENT = 64


# The loop's ollama client, its closer, its stream clients and (for plain http://) the lean
# client of its model calls and streams (``http1``).
_AsyncEntry = tuple[ollama.AsyncClient, AsyncGenerator[None, None], list[_Shard], Http1 | None]

LoopClients = weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _AsyncEntry]


async def _close_at_loop_shutdown(client: ollama.AsyncClient, shards: list[_Shard],
                                  lean: Http1 | None) -> AsyncGenerator[None, None]:
    """Closes ``client`` (and the stream clients opened beside it) when closed; the event loop
    closes every live async generator when it shuts down, so this closes the client's
    connections in their own loop, before it ends."""
    try:
        yield
    finally:
        if lean is not None:
            await lean.aclose()
        await client.close()
        for shard in shards[1:]:  # the first is the client's own
            await shard.http.aclose()


async def entry_of(clients: LoopClients, lock: threading.Lock, client: Callable[[], ollama.AsyncClient],
                   lean: Callable[[ollama.AsyncClient], Http1 | None]) -> _AsyncEntry:
    """The running loop's entry, made on first use in that loop with ``client()`` and ``lean``."""
    loop = asyncio.get_running_loop()
    with lock:
        entry = clients.get(loop)
    if entry is not None:
        return entry
    # No await between the check and the store: a burst of first calls in one loop makes one
    # client, not one each (each loads the CA bundle into an SSL context: the first burst of
    # 300 streams through the gateway showed them in its profile).
    made = client()
    shards = [_Shard(made._client)]
    fast = lean(made)
    closer = _close_at_loop_shutdown(made, shards, fast)
    with lock:
        for old in [other for other in clients if other.is_closed()]:
            del clients[old]  # closed with its loop already
        entry = clients.setdefault(loop, (made, closer, shards, fast))
    if entry[1] is closer:
        await anext(closer)  # now the loop tracks it, and closes it before the loop closes
    else:  # another thread stored one for this loop first (a loop is driven by one thread)
        await made.close()
    return entry


def shard_of(shards: list[_Shard], make: Callable[[], httpx.AsyncClient]) -> _Shard:
    """The stream client with fewest open streams; a new one (``make()``) once each has
    ``_STREAMS_PER_CLIENT``. Call without an await since the loop's entry was read."""
    shard = min(shards, key=lambda s: s.streams)
    if shard.streams >= _STREAMS_PER_CLIENT:  # no await since the check: one new client per need
        shard = _Shard(make())
        shards.append(shard)
    return shard


def close_idle_loops(clients: LoopClients, lock: threading.Lock) -> None:
    """Close the clients of every loop that is not running (in that loop), and forget them;
    those of running loops are closed by ``aclose()`` in the loop or at its shutdown."""
    with lock:
        idle = [(loop, entry) for loop, entry in clients.items() if not loop.is_running()]
    for loop, (_, closer, _, _) in idle:
        if not loop.is_closed():  # a loop that is not running can run the close itself
            loop.run_until_complete(closer.aclose())
        with lock:
            clients.pop(loop, None)


async def close_running_loop(clients: LoopClients, lock: threading.Lock) -> None:
    """Close the running loop's clients now."""
    with lock:
        entry = clients.pop(asyncio.get_running_loop(), None)
    if entry is not None:
        await entry[1].aclose()
