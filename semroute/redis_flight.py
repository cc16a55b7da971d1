"""Single-flight across processes: N concurrent identical misses anywhere make one model call.

The first caller of a key (the leader) takes a lease ``SET {p}:fl:<key> <token> NX PX``; every
other caller (a follower, in any process) reads the leader's results from the Stream
``{p}:fr:<token>``: one ``done`` record for ``do``, one ``chunk`` record per chunk for
``stream``, or an ``error`` record. Callers in one process coalesce locally first, so one
process has at most one Redis follower per key.

A leader renews its lease every ``lease_s / 3`` while it works; if it dies the lease runs out
and a follower becomes the leader. A finished leader keeps the lease for ``linger_s`` pointing
at its result, so a caller that missed the cache just before the answer was stored still
gets it without a second call; an error does not linger. Redis down: the in-process flight
takes over (fail open). Values cross processes as JSON (``Answer`` and ``Chunk``), never pickle.
This module does no model call of its own and is not a lock for anything else.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

from . import errors
from .errors import ConfigError, SemrouteError, StoreError
from .flight import SingleFlight
from .redis_conn import Outage, RedisTimeouts, check_binary_client, connect, describe, redact_url
from .types import Answer, Chunk, Verdict

__all__ = ["RedisSingleFlight"]

# ARGV: lease key, token, ms -> 1 if the lease was ours and now lasts ms more
_EXTEND = r"""
if redis.call('GET', ARGV[1]) == ARGV[2] then return redis.call('PEXPIRE', ARGV[1], ARGV[3]) end
return 0
"""
# ARGV: lease key, token -> 1 if the lease was ours and is now gone
_RELEASE = r"""
if redis.call('GET', ARGV[1]) == ARGV[2] then return redis.call('DEL', ARGV[1]) end
return 0
"""


class _Abandoned(Exception):
    """The leader disappeared (its lease ran out) before it published a result."""


class RedisSingleFlight:
    """Cross-process coalescing of ``Answer`` calls (``do``/``ado``) and chunk streams (``stream``)."""

    def __init__(self, client: Any, *, prefix: str = "semroute", lease_s: float = 30.0, linger_s: float = 10.0,
                 wait_s: float = 600.0, outage: Outage | None = None) -> None:
        for name, value in (("lease_s", lease_s), ("linger_s", linger_s), ("wait_s", wait_s)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ConfigError(f"{name} must be a positive number of seconds, got {value!r}")
        check_binary_client(client)
        self.lease_s, self.linger_s, self.wait_s = float(lease_s), float(linger_s), float(wait_s)
        self._p = "{" + prefix + "}:"
        self._client = client
        # A blocking read must return before the client's socket timeout, or it looks like an outage.
        socket_timeout = client.connection_pool.connection_kwargs.get("socket_timeout") or float("inf")
        self._block_ms = max(1, int(min(self.lease_s / 3, socket_timeout / 2) * 1000))
        self._extend = client.register_script(_EXTEND)
        self._release = client.register_script(_RELEASE)
        self.outage = outage if outage is not None else Outage(describe(client))
        self._local: SingleFlight[Answer] = SingleFlight()
        self._fallback: SingleFlight[Answer] = SingleFlight()
        self._leading: dict[str, str] = {}  # lease key -> token, renewed by the thread below
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self._owns_client = False  # a client passed in is closed by whoever made it

    @classmethod
    def from_url(cls, url: str, *, timeouts: RedisTimeouts = RedisTimeouts(), **options: Any) -> RedisSingleFlight:
        flight = cls(connect(url, timeouts=timeouts), **options)
        flight.outage.where = redact_url(url)
        flight._owns_client = True
        return flight

    # -- complete answers ----------------------------------------------------------------------

    def do(self, key: str, fn: Callable[[], Answer], *, wait_s: float | None = None) -> tuple[Answer, bool]:
        """Run ``fn`` once per key across every process; returns (answer, shared).

        A follower waits at most ``wait_s`` seconds (its own deadline; ``TimeoutError`` after).
        """
        answer, shared_here = self._local.do(key, lambda: self._shared_do(key, fn, wait_s), wait_s=wait_s)
        return answer[0], shared_here or answer[1]  # type: ignore[index]

    def _shared_do(self, key: str, fn: Callable[[], Answer], wait_s: float | None) -> tuple[Answer, bool]:
        for _ in range(3):  # a leader that died hands the key to a follower
            try:
                lease, token, leader = self._claim(key)
            except StoreError:
                return self._fallback.do(key, fn)
            if leader:
                return self._lead(lease, token, fn, on_done=lambda a: [("done", _encode_answer(a))]), False
            try:
                for kind, body in self._follow(lease, token, wait_s):
                    if kind == "done":
                        return _decode_answer(body), True
            except (_Abandoned, StoreError):
                continue
        return self._fallback.do(key, fn)

    async def ado(self, key: str, fn: Callable[[], Awaitable[Answer]], *,
                  wait_s: float | None = None) -> tuple[Answer, bool]:
        """``do`` for asyncio: Redis calls and waiting run in worker threads."""
        for _ in range(3):
            try:
                lease, token, leader = await asyncio.to_thread(self._claim, key)
            except StoreError:
                return await fn(), False
            if leader:
                return await self._alead(lease, token, fn), False
            try:
                body = await asyncio.to_thread(self._follow_done, lease, token, wait_s)
                return _decode_answer(body), True
            except (_Abandoned, StoreError):
                continue
        return await fn(), False

    # -- streams -------------------------------------------------------------------------------

    def stream(self, key: str, fn: Callable[[], Iterator[Chunk]], *, wait_s: float | None = None) -> Iterator[Chunk]:
        """Chunks of one generation per key across processes: the leader's as they arrive."""
        try:
            lease, token, leader = self._claim(key)
        except StoreError:
            yield from fn()
            return
        if leader:
            yield from self._lead_stream(lease, token, fn)
            return
        try:
            for kind, body in self._follow(lease, token, wait_s):
                yield _decode_chunk(body)
                if kind == "done":
                    return
        except _Abandoned:
            raise errors.BackendError("the request generating this answer stopped before it finished") from None

    async def astream(self, key: str, fn: Callable[[], AsyncIterator[Chunk]], *,
                      wait_s: float | None = None) -> AsyncIterator[Chunk]:
        try:
            lease, token, leader = await asyncio.to_thread(self._claim, key)
        except StoreError:
            async for chunk in fn():
                yield chunk
            return
        if leader:
            async for chunk in self._alead_stream(lease, token, fn):
                yield chunk
            return
        records = self._follow(lease, token, wait_s)
        while True:
            try:
                record = await asyncio.to_thread(next, records, None)
            except _Abandoned:
                raise errors.BackendError("the request generating this answer stopped before it finished") from None
            if record is None:
                return
            yield _decode_chunk(record[1])
            if record[0] == "done":
                return

    # -- leader side ---------------------------------------------------------------------------

    def _claim(self, key: str) -> tuple[str, str, bool]:
        """(lease key, leader's token, am I the leader)."""
        lease = self._p + "fl:" + key
        token = uuid.uuid4().hex
        while True:
            if self.outage.call(self._client.set, lease, token, nx=True, px=int(self.lease_s * 1000)):
                self._track(lease, token)
                return lease, token, True
            current = self.outage.call(self._client.get, lease)
            if current is not None:
                return lease, current.decode(), False

    def _lead(self, lease: str, token: str, fn: Callable[[], Answer], *, on_done: Callable[[Answer], Any]) -> Answer:
        try:
            answer = fn()
        except BaseException as exc:
            self._finish(lease, token, [("error", _encode_error(exc))], ok=False)
            raise
        self._finish(lease, token, on_done(answer), ok=True)
        return answer

    async def _alead(self, lease: str, token: str, fn: Callable[[], Awaitable[Answer]]) -> Answer:
        try:
            answer = await fn()
        except BaseException as exc:
            await asyncio.to_thread(self._finish, lease, token, [("error", _encode_error(exc))], ok=False)
            raise
        await asyncio.to_thread(self._finish, lease, token, [("done", _encode_answer(answer))], ok=True)
        return answer

    def _lead_stream(self, lease: str, token: str, fn: Callable[[], Iterator[Chunk]]) -> Iterator[Chunk]:
        done = False
        try:
            for chunk in fn():
                done = chunk.done
                self._publish(token, [("done" if done else "chunk", _encode_chunk(chunk))])
                yield chunk
        except BaseException as exc:
            self._finish(lease, token, [("error", _encode_error(exc))], ok=False)
            raise
        self._finish(lease, token, [] if done else [("error", _encode_error(None))], ok=done)

    async def _alead_stream(self, lease: str, token: str, fn: Callable[[], AsyncIterator[Chunk]]) -> AsyncIterator[Chunk]:
        done = False
        try:
            async for chunk in fn():
                done = chunk.done
                await asyncio.to_thread(self._publish, token, [("done" if done else "chunk", _encode_chunk(chunk))])
                yield chunk
        except BaseException as exc:
            await asyncio.to_thread(self._finish, lease, token, [("error", _encode_error(exc))], ok=False)
            raise
        await asyncio.to_thread(self._finish, lease, token, [] if done else [("error", _encode_error(None))], ok=done)

    def _publish(self, token: str, records: list[tuple[str, str]]) -> None:
        stream = self._p + "fr:" + token
        pipe = self._client.pipeline(transaction=True)
        for kind, body in records:
            pipe.xadd(stream, {"kind": kind, "body": body})
        pipe.pexpire(stream, int((self.lease_s + self.linger_s) * 1000))
        try:
            self.outage.call(pipe.execute)
        except StoreError:
            pass  # followers see the lease run out and retry without us

    def _finish(self, lease: str, token: str, records: list[tuple[str, str]], *, ok: bool) -> None:
        with self._lock:
            self._leading.pop(lease, None)
        if records:
            self._publish(token, records)
        try:
            if ok:  # keep pointing at the result for late callers
                self.outage.call(self._extend, keys=[lease], args=[lease, token, int(self.linger_s * 1000)])
            else:
                self.outage.call(self._release, keys=[lease], args=[lease, token])
        except StoreError:
            pass

    def _track(self, lease: str, token: str) -> None:
        with self._lock:
            self._leading[lease] = token
            if self._renewer is None:
                self._renewer = threading.Thread(target=self._renew_loop, name="semroute-flight", daemon=True)
                self._renewer.start()

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            with self._lock:
                leading = dict(self._leading)
            for lease, token in leading.items():
                try:
                    self.outage.call(self._extend, keys=[lease], args=[lease, token, int(self.lease_s * 1000)])
                except StoreError:
                    break

    # -- follower side -------------------------------------------------------------------------

    def _follow(self, lease: str, token: str, wait_s: float | None = None) -> Iterator[tuple[str, str]]:
        """The leader's records as they arrive; ``_Abandoned`` if its lease runs out first.

        ``TimeoutError`` when the caller's own ``wait_s`` (its deadline) ends the wait first.
        """
        stream = self._p + "fr:" + token
        own = wait_s is not None and wait_s < self.wait_s
        last, deadline = b"0-0", time.monotonic() + (wait_s if own else self.wait_s)
        while (left := deadline - time.monotonic()) > 0:
            block_ms = max(1, min(self._block_ms, int(left * 1000)))
            reply = self.outage.call(self._client.xread, {stream: last}, count=100, block=block_ms)
            for _name, records in reply or []:
                for record_id, fields in records:
                    last = record_id
                    kind, body = fields[b"kind"].decode(), fields[b"body"].decode()
                    if kind == "error":
                        raise _decode_error(body)
                    yield kind, body
                    if kind == "done":
                        return
            if not reply:  # nothing new for a while: is the leader still alive?
                if self.outage.call(self._client.get, lease) != token.encode():
                    raise _Abandoned()
        if own:
            raise TimeoutError(f"the caller's deadline ({wait_s:g}s) passed while the leader still works")
        raise errors.BackendTimeout(f"no answer from the leading request within {self.wait_s:g}s")

    def _follow_done(self, lease: str, token: str, wait_s: float | None = None) -> str:
        for kind, body in self._follow(lease, token, wait_s):
            if kind == "done":
                return body
        raise _Abandoned()

    def close(self) -> None:
        self._stop.set()
        if self._owns_client:
            self._client.close()

    def __repr__(self) -> str:
        return f"RedisSingleFlight({self.outage.where!r}, lease_s={self.lease_s:g})"


def _encode_answer(answer: Answer) -> str:
    raw = {f.name: getattr(answer, f.name) for f in dataclasses.fields(answer)}
    raw["verdict"] = None if answer.verdict is None else dataclasses.asdict(answer.verdict)
    raw["timings_ms"] = dict(answer.timings_ms)  # a read-only mapping: JSON takes a plain dict
    return json.dumps(raw, ensure_ascii=False)


def _decode_answer(body: str) -> Answer:
    raw = json.loads(body)
    raw["verdict"] = None if raw["verdict"] is None else Verdict(**raw["verdict"])
    raw["timings_ms"] = {str(k): float(v) for k, v in raw["timings_ms"].items()}
    return Answer(**raw)


def _encode_chunk(chunk: Chunk) -> str:
    return json.dumps(dataclasses.asdict(chunk), ensure_ascii=False)


def _decode_chunk(body: str) -> Chunk:
    return Chunk(**json.loads(body))


def _encode_error(exc: BaseException | None) -> str:
    if exc is None:
        return json.dumps({"type": "BackendError", "message": "the leading request stopped before it finished"})
    name = type(exc).__name__ if isinstance(exc, SemrouteError) else "SemrouteError"
    return json.dumps({"type": name, "message": str(exc)})


def _decode_error(body: str) -> SemrouteError:
    raw = json.loads(body)
    cls = getattr(errors, raw.get("type", ""), None)
    if not (isinstance(cls, type) and issubclass(cls, SemrouteError)):
        cls = SemrouteError
    return cls(f"(from the leading request) {raw.get('message', '')}")
