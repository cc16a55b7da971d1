"""``RedisStore``: the shared cache store (the truth) in a plain Redis 7 server, no modules needed.

Many processes on many hosts share one ``RedisStore``; each keeps its own vector index
(``Replica``) that loads a snapshot (``entries()``) and then follows the change feed
(``changes(since)``, a Redis Stream). Every write and its feed record happen in one Lua
script, so a follower never sees an entry without its record or the reverse (see
``_redis_lua`` for the key layout). Entries are JSON plus raw little-endian float vectors
(``float32``, or ``float16`` to halve the memory); nothing is pickled.

TTL is fixed at write time (reads never extend it); expired entries are swept, with a delete
on the feed, by whoever syncs, fetches or writes. ``max_entries`` evicts the least recently used.
Invalidation: by id (``delete``), by namespace, by tags (``invalidate``).

Redis down: every call raises ``StoreUnavailable`` fast (see ``semroute.redis_conn.Outage``)
and the router answers from the models; redis-py reconnects by itself. It is not an index and
does no embedding or verification.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from ..errors import ConfigError, InvalidRequest, StoreError
from ..redis_conn import Outage, RedisTimeouts, check_binary_client, connect, describe, redact_url
from ..types import CacheEntry
from . import _redis_lua as lua
from ._local import LocalView
from ._redis_codec import DTYPES, decode_entry, decode_record, encode_entry
from ._vector import as_unit_vector
from .base import Change
from ._entry_checks import check_criteria, check_entry_fields

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["RedisStore"]

# Expired entries swept per sync or write: bounds one script's run time (~20 µs per delete,
# measured on loopback) while a backlog still drains at up to this many per request.
_SWEEP_LIMIT = 64
# Ids fetched per round trip while reading a snapshot or deleting a set of entries.
_BATCH = 500
# Entries written per script (~2 KB each: ~130 KB per script). A script blocks the single-threaded
# server: 1000 entries in one script overran the client's 2 s command timeout on a loaded 2-core
# host (bench/redis_scale.py fill), 64 did not.
_PUT_BATCH = 64
# Reads served from the local view reach Redis's LRU order with the next feed catch-up or
# candidate fetch (no round trip of their own), before every write of this process, or on their
# own once this many are pending. A ZADD of its own per 64 reads cost ~8 ms a round trip on a
# loaded 2-core host.
_TOUCH_BATCH = 4096
# ``changes(_HEAD)`` returns the newest sequence number and nothing else.
_HEAD = 2**62


class RedisStore:
    """A ``Store`` in Redis, shared by every process that uses the same ``prefix``.

    ``prefix`` names the cache; it is wrapped in a Cluster hash tag (``{prefix}:``) so all of
    its keys share one slot. ``max_changes`` bounds the feed stream (a follower further behind
    rebuilds from ``entries()``). ``sync_interval_s`` bounds how stale a follower may be about
    other processes' writes: an empty ``changes`` answer is reused for that long (it saves a
    round trip per lookup under load; the process's own writes are always seen at once).
    ``outage`` is the fail-fast circuit (inject one to control
    its back-off clock). ``vector_dtype="float16"`` stores vectors in half the bytes
    (cosine changes by < 1e-3). Build it from a client (bytes replies) or with ``from_url``.

    ``local_entries`` (> 0) keeps a ``LocalView`` in this process: the complete exact-key map
    and up to that many recently used entries, kept coherent by the change feed, so most reads
    need no round trip (a read first catches up with the feed, at most ``sync_interval_s``
    stale, like the index). An entry deleted, evicted, expired or invalidated is never served
    once its feed record is applied; TTL is checked against the entry's absolute expiry.
    ``0`` sends every read to Redis.
    """

    def __init__(
        self,
        client: Any,
        *,
        prefix: str = "semroute",
        max_entries: int = 1_000_000,
        max_changes: int = 20_000,
        vector_dtype: Literal["float32", "float16"] = "float32",
        clock: Any = None,
        outage: Outage | None = None,
        sync_interval_s: float = 0.025,
        local_entries: int = 10_000,
        monotonic: Callable[[], float] | None = None,
    ) -> None:
        for name, value in (("max_entries", max_entries), ("max_changes", max_changes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive int, got {value!r}")
        if isinstance(local_entries, bool) or not isinstance(local_entries, int) or local_entries < 0:
            raise ConfigError(f"local_entries must be an int >= 0, got {local_entries!r}")
        if not isinstance(prefix, str) or not prefix or any(c in prefix for c in "{}\n "):
            raise ConfigError(f"prefix must be a non-empty string without braces or spaces, got {prefix!r}")
        if vector_dtype not in DTYPES:
            raise ConfigError(f"vector_dtype must be 'float32' or 'float16', got {vector_dtype!r}")
        if isinstance(sync_interval_s, bool) or not isinstance(sync_interval_s, int | float) or sync_interval_s < 0:
            raise ConfigError(f"sync_interval_s must be a number of seconds >= 0, got {sync_interval_s!r}")
        check_binary_client(client)
        import time

        self.prefix = prefix
        self.max_entries = max_entries
        self.max_changes = max_changes
        self.vector_dtype = vector_dtype
        self._p = "{" + prefix + "}:"
        self._client = client
        self._clock = clock or time.time
        self.sync_interval_s = float(sync_interval_s)
        self._monotonic = monotonic or time.monotonic  # staleness intervals (inject one in tests)
        # (when, since, newest) of the last empty changes() answer: repeated within
        # sync_interval_s it is answered locally; any write made here forgets it.
        self._quiet: tuple[float, int, int] | None = None
        # Bumped when a write of this process starts and ends: a fetch that overlapped one must
        # not vouch for the feed head (the process's own write is seen by its next read).
        self._writes = 0
        self._where = describe(client)
        self._owns_client = False  # a client passed in is closed by whoever made it
        self.outage = outage if outage is not None else Outage(self._where)
        self._local: LocalView | None = LocalView(local_entries) if local_entries else None
        self._followed_at = float("-inf")  # monotonic time of the view's last own catch-up
        self._epoch: str | None = None  # the feed's identity as the last poll saw it
        self._touches: dict[str, float] = {}  # id -> last local read, not yet sent to Redis's LRU
        self._scripts = {name: client.register_script(getattr(lua, name))
                         for name in ("PUT", "GET", "GET_MANY", "GET_BY_KEY", "DELETE", "CHANGES")}

    @classmethod
    def from_url(cls, url: str, *, timeouts: RedisTimeouts = RedisTimeouts(), **options: Any) -> Self:
        """A store over a new client for ``url`` (``redis://[:password@]host:port/db``, ``rediss://``)."""
        store = cls(connect(url, timeouts=timeouts), **options)
        store._where = redact_url(url)
        store._owns_client = True
        store.outage.where = store._where
        return store

    # -- Store protocol ------------------------------------------------------------------------

    def put_many(self, entries: Sequence[CacheEntry]) -> None:
        """Insert or replace entries (same ``key`` replaces); may evict.

        Every entry is validated before any is written; each run of ``_PUT_BATCH`` entries is one
        atomic script (a script blocks the server, so a large warm-up is cut into short ones).
        """
        rows = [encode_entry(entry, self.vector_dtype) for entry in self._validated(entries)]
        self._flush_touches()
        self._writes += 1
        self._quiet = None
        self._followed_at = float("-inf")  # this process's own writes are seen by its next read
        for start in range(0, len(rows), _PUT_BATCH):
            chunk = rows[start : start + _PUT_BATCH]
            args: list[Any] = [self._p, self.max_changes, self.max_entries, repr(self._clock()), _SWEEP_LIMIT,
                               len(chunk)]
            for row in chunk:
                args.extend(row)
            self._run("PUT", args)
        self._written()

    def get(self, entry_id: str, *, now: float) -> CacheEntry | None:
        if self._local is not None:
            return self.get_many([entry_id], now=now)[0]
        row = self._run("GET", [self._p, self.max_changes, repr(float(now)), entry_id])
        return None if not row else decode_entry(row[0], row[1], self._where)

    def get_many(self, entry_ids: Sequence[str], *, now: float) -> list[CacheEntry | None]:
        if not entry_ids:
            return []
        local = self._local
        if local is None:
            return self._fetch(entry_ids, now)
        seen_at = self._follow()
        found: list[CacheEntry | None] = [local.get(entry_id) for entry_id in entry_ids]
        missing = [entry_id for entry_id, entry in zip(entry_ids, found) if entry is None]
        fetched = dict(zip(missing, self._fetch(missing, now))) if missing else {}
        local.remember([e for e in fetched.values() if e is not None], seen_at=seen_at)
        out: list[CacheEntry | None] = []
        for entry_id, entry in zip(entry_ids, found):
            if entry is None:
                out.append(fetched[entry_id])
            else:
                out.append(self._live(entry, now))
        return out

    def get_by_key(self, key: str, *, now: float) -> CacheEntry | None:
        local = self._local
        seen_at = None if local is None else self._follow()
        if local is not None:
            known, entry = local.by_key(key)
            if known:
                return None if entry is None else self._live(entry, now)
        row = self._run("GET_BY_KEY", [self._p, self.max_changes, repr(float(now)), key])
        entry = None if not row else decode_entry(row[0], row[1], self._where)
        if local is not None and entry is not None:
            local.remember([entry], seen_at=seen_at)
        return entry

    def delete(self, entry_ids: Iterable[str]) -> int:
        if isinstance(entry_ids, str):
            raise InvalidRequest("delete takes an iterable of entry ids, not a single string")
        ids = list(dict.fromkeys(entry_ids))
        if not all(isinstance(i, str) for i in ids):
            raise InvalidRequest("entry ids must be strings")
        removed = 0
        self._flush_touches()
        self._writes += 1
        self._quiet = None
        self._followed_at = float("-inf")  # this process's own writes are seen by its next read
        for start in range(0, len(ids), _BATCH):
            removed += int(self._run("DELETE", [self._p, self.max_changes, *ids[start : start + _BATCH]]))
        self._written()
        return removed

    def entries(self) -> Iterator[CacheEntry]:
        """Every live entry; ZSCAN guarantees each entry present throughout the scan is seen."""
        now = self._clock()
        # a follower rebuilding its index reads everything: the view keeps what fits (following first)
        seen_at = None if self._local is None else self._follow()
        ids: list[bytes] = [member for member, _ in self.outage.call(
            lambda: list(self._client.zscan_iter(self._p + "lru", count=1000)))]
        found: list[CacheEntry] = []
        for start in range(0, len(ids), _BATCH):
            pipe = self._client.pipeline(transaction=False)
            for entry_id in ids[start : start + _BATCH]:
                pipe.hmget(self._p + "e:" + entry_id.decode(), "m", "v")
            for m, v in self.outage.call(pipe.execute):
                if m is not None:
                    entry = decode_entry(m, v, self._where)
                    if not entry.expired(now):
                        found.append(entry)
        if self._local is not None:
            self._local.remember(found[-self._local.capacity:], seen_at=seen_at)
        return iter(found)

    def changes(self, since: int) -> tuple[int, list[Change]] | None:
        """Feed records after ``since`` (at most ``max_changes`` per call); sweeps due expiries first."""
        if isinstance(since, bool) or not isinstance(since, int):
            raise InvalidRequest(f"since must be an int, got {since!r}")
        quiet = self._quiet
        if quiet is not None and quiet[1] == since and self._monotonic() - quiet[0] < self.sync_interval_s:
            return quiet[2], []  # asked again within the interval: other processes' writes wait for the next
        return self._changes(since, quiet=True)

    def _changes(self, since: int, *, quiet: bool) -> tuple[int, list[Change]] | None:
        """One CHANGES round trip; its records also go to the local view. ``quiet``: remember an empty answer."""
        count = min(self.max_changes, 10_000)
        started = self._monotonic()
        # local reads ride along to Redis's LRU order (lost, like the reads' recency, if this fails)
        touches, self._touches = self._touches, {}
        args: list[Any] = [self._p, self.max_changes, repr(self._clock()), max(since, 0), count, _SWEEP_LIMIT]
        for entry_id, used in touches.items():
            args.extend((repr(used), entry_id))
        newest, trimmed, records, epoch = self._run("CHANGES", args)
        epoch = epoch.decode()
        if self._epoch is not None and epoch != self._epoch:
            trimmed = True  # another feed under this name (Redis lost its data): nothing carries over
            self._quiet = None
        self._epoch = epoch
        if trimmed:
            if self._local is not None:
                self._local.clear()
            return None
        parsed = [decode_record(stream_id, fields, self._where) for stream_id, fields in records]
        changes = [Change(seq, op, entry_id, entry) for seq, op, entry_id, entry, _key in parsed]  # type: ignore[arg-type]
        if len(changes) == count:
            newest = changes[-1].seq  # more remain: the follower comes back for them
        if quiet and not changes and since >= newest:
            self._quiet = (self._monotonic(), since, int(newest))
        if self._local is not None:
            self._local.apply(since, int(newest), parsed)
            if len(changes) < count and self._local.applied == int(newest):
                self._followed_at = started  # whoever asked (a replica's sync), the view is now caught up
        return int(newest), changes

    @property
    def feed_epoch(self) -> str | None:
        """The change feed's identity as this store's last poll saw it (``None`` before the first).

        Sequence numbers are only comparable within one epoch: Redis restarted without
        persistence starts the feed again at 1 under a new epoch, so a follower's saved position
        (``Replica.save`` records the epoch) means nothing there and the follower rebuilds. A
        change of epoch seen by a running follower makes ``changes`` answer ``None`` (rebuild).
        """
        return self._epoch

    def invalidate(self, *, namespace: str | None = None, where: Mapping[str, str] | None = None) -> int:
        """Delete every entry of ``namespace`` and/or carrying all ``where`` tags; returns how many.

        At least one criterion is required (clearing a whole cache is ``FLUSHDB``'s job).
        """
        sets = self._criteria(namespace, where)
        ids = [i.decode() for i in self.outage.call(self._client.sinter, sets)]
        return self.delete(ids)

    def __len__(self) -> int:
        return int(self.outage.call(self._client.zcard, self._p + "lru"))

    def close(self) -> None:
        try:
            self._flush_touches()
        except StoreError:
            pass  # Redis is gone: the LRU order loses this process's last few reads, nothing else
        if not self._owns_client:
            return
        try:
            self._client.close()
        except Exception:  # noqa: BLE001 - closing a broken connection must not fail shutdown
            pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RedisStore({self._where!r}, prefix={self.prefix!r}, vector_dtype={self.vector_dtype!r})"

    # -- internals ---------------------------------------------------------------------------

    def _run(self, name: str, args: list[Any]) -> Any:
        script = self._scripts[name]
        return self.outage.call(script, keys=[self._p + "feed"], args=args)

    def _criteria(self, namespace: str | None, where: Mapping[str, str] | None) -> list[str]:
        pairs = check_criteria(namespace, where)
        sets = [] if namespace is None else [self._p + "ns:" + namespace]
        return sets + [self._p + "t:" + name + "=" + value for name, value in sorted(pairs)]

    def _validated(self, entries: Sequence[CacheEntry]) -> list[CacheEntry]:
        if isinstance(entries, CacheEntry) or not isinstance(entries, Iterable):
            raise InvalidRequest("put_many takes a sequence of CacheEntry")
        batch = []
        for entry in entries:
            if not isinstance(entry, CacheEntry):
                raise InvalidRequest(f"put_many takes CacheEntry objects, got {type(entry).__name__}")
            check_entry_fields(entry)
            vector = as_unit_vector(entry.vector, dim=None, what=f"entry {entry.id!r} vector")
            batch.append(dataclasses.replace(entry, vector=vector))
        return batch

    # -- the local view (see ``_local``) -------------------------------------------------------

    def _follow(self) -> int | None:
        """Bring the local view up to the feed (usually no round trip); the seq it then reflects."""
        local = self._local
        assert local is not None
        now = self._monotonic()
        if local.applied is not None and now - self._followed_at < self.sync_interval_s:
            return local.applied  # caught up within the interval (by its own catch-up or a replica's sync)
        if local.applied is None:
            head = self._changes(_HEAD, quiet=False)
            newest = 0 if head is None else head[0]
            keys = self.outage.call(lambda: {k.decode(): v.decode() for k, v in
                                             self._client.hscan_iter(self._p + "keys", count=1000)})
            local.reset(keys, newest)  # changes made during the scan are applied by the catch-up below
        applied = local.applied
        if applied is not None:
            self._changes(applied, quiet=False)
        return local.applied

    def _written(self) -> None:
        # Again after the write: a read in another thread may have caught up while it ran and
        # would otherwise let this process's next read skip its own write for sync_interval_s.
        self._writes += 1
        self._quiet = None
        self._followed_at = float("-inf")

    def _live(self, entry: CacheEntry, now: float) -> CacheEntry | None:
        """A locally held entry, unless expired at ``now`` (Redis sweeps it onto the feed itself)."""
        if entry.expired(float(now)):
            return None
        self._touches[entry.id] = float(now)
        if len(self._touches) >= _TOUCH_BATCH:
            try:
                self._flush_touches()
            except StoreError:
                pass  # a read must not fail for LRU bookkeeping; this batch of uses is lost
        return entry

    def _flush_touches(self) -> None:
        if not self._touches:
            return
        touches, self._touches = self._touches, {}
        self.outage.call(self._client.zadd, self._p + "lru", touches, xx=True)

    def _fetch(self, entry_ids: Sequence[str], now: float) -> list[CacheEntry | None]:
        started, writes = self._monotonic(), self._writes
        # local reads ride along, as on a poll (a fetch may be the only round trip for a while)
        touches, self._touches = self._touches, {}
        args: list[Any] = [self._p, self.max_changes, repr(float(now)), _SWEEP_LIMIT, len(entry_ids), *entry_ids]
        for entry_id, used in touches.items():
            args.extend((repr(used), entry_id))
        newest, rows = self._run("GET_MANY", args)
        self._saw_head(int(newest), started, writes)
        return [decode_entry(row[0], row[1], self._where) if row else None for row in rows]

    def _saw_head(self, newest: int, started: float, writes: int) -> None:
        """The feed's newest seq, as a fetch sent at ``started`` saw it: a follower at that seq is
        caught up as of ``started``, so neither the index's next ``changes`` nor the local view
        needs a round trip of its own for ``sync_interval_s``.

        Under steady lookups this takes the feed poll off the lookup path (154 polls per 2,000
        lookups at 200k entries before, 2 after: README "The follower work"); any change on the
        feed still makes the next ``changes`` ask Redis, exactly as before.
        """
        if writes != self._writes:
            return  # a write of this process overlapped the fetch: its next read must ask
        quiet = self._quiet
        if quiet is None or quiet[1] != newest or quiet[0] < started:
            self._quiet = (started, newest, newest)
        local = self._local
        if local is not None and local.applied == newest and self._followed_at < started:
            self._followed_at = started
