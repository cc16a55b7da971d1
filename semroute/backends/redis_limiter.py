"""``RedisLimiter``: per-instance concurrency slots shared by every process, as leases in Redis.

A slot is a member of a sorted set ``{prefix}:slots:<instance>`` scored by its lease deadline.
Taking one (a Lua script) first drops expired leases, so a worker that crashed while holding
slots gives them back after ``lease_s`` at the latest; a live process renews the leases it
holds every ``lease_s / 3`` from one background thread, so a long generation never loses its
slot.

Fairness across processes: a process whose pool has requests queued holds a *ticket* in
``{prefix}:queue:<name>`` (one per pool; scored by when its oldest request started waiting, renewed like a lease).
A slot goes to a caller only if more slots are free than there are tickets older than the
caller's own (a fresh request with nothing queued counts as the newest), so the oldest waiter
anywhere is served first and a busy process cannot keep freed slots to itself.

Redis down: slots fall back to a ``LocalLimiter`` (each process then enforces the limit on its
own), counted and logged once per outage; a slot is returned to wherever it came from. This
module does not queue (``WaitQueue``) or choose instances (``strategy``).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from ..errors import ConfigError, StoreError
from ..redis_conn import Outage, RedisTimeouts, check_binary_client, connect, describe, redact_url
from .limiter import LocalLimiter

__all__ = ["RedisLimiter"]

# ARGV: slots key, queue key, now, deadline, token, limit, my ticket score ('' = none), lease_s.
# ``queue`` holds tickets (process -> when its oldest request began waiting), ``queue`` ..
# ``:seen`` when each was last renewed: a ticket not renewed for a lease belongs to a dead process.
_ACQUIRE = r"""
local slots, queue, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', slots, '-inf', now)
local dead = redis.call('ZRANGEBYSCORE', queue .. ':seen', '-inf', now - tonumber(ARGV[8]))
for _, who in ipairs(dead) do redis.call('ZREM', queue, who) redis.call('ZREM', queue .. ':seen', who) end
local free = tonumber(ARGV[6]) - redis.call('ZCARD', slots)
if free <= 0 then return 0 end
local older
if ARGV[7] == '' then older = redis.call('ZCARD', queue)
else older = redis.call('ZCOUNT', queue, '-inf', '(' .. ARGV[7]) end
if free <= older then return 0 end
redis.call('ZADD', slots, ARGV[4], ARGV[5])
return 1
"""

# ARGV: slots key, now -> live leases
_COUNT = r"""
redis.call('ZREMRANGEBYSCORE', ARGV[1], '-inf', tonumber(ARGV[2]))
return redis.call('ZCARD', ARGV[1])
"""


class RedisLimiter:
    """A ``Limiter`` whose slot counts are shared through Redis; falls back to local counts.

    ``lease_s`` is how long a slot outlives a crashed holder (renewed every ``lease_s / 3``
    while held). ``clock`` is wall time shared by all hosts (leases compare across hosts).
    """

    def __init__(
        self,
        client: Any,
        *,
        prefix: str = "semroute",
        queue: str = "default",
        lease_s: float = 30.0,
        clock: Callable[[], float] = time.time,
        outage: Outage | None = None,
    ) -> None:
        if isinstance(lease_s, bool) or not isinstance(lease_s, int | float) or not lease_s > 0:
            raise ConfigError(f"lease_s must be a positive number of seconds, got {lease_s!r}")
        check_binary_client(client)
        self.lease_s = float(lease_s)
        self._p = "{" + prefix + "}:"
        self._queue = self._p + "queue:" + queue
        self._client = client
        self._clock = clock
        self._acquire = client.register_script(_ACQUIRE)
        self._count = client.register_script(_COUNT)
        self.outage = outage if outage is not None else Outage(describe(client))
        self._local = LocalLimiter()
        self._lock = threading.Lock()
        self._me = uuid.uuid4().hex  # this process's (and object's) name in tickets
        self._held: dict[str, list[str | None]] = {}  # instance -> leases held here (None: local)
        self._ticket: float | None = None  # when this process's oldest queued request started waiting
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self.fallbacks = 0
        self._owns_client = False  # a client passed in is closed by whoever made it

    @classmethod
    def from_url(cls, url: str, *, timeouts: RedisTimeouts = RedisTimeouts(), **options: Any) -> RedisLimiter:
        limiter = cls(connect(url, timeouts=timeouts), **options)
        limiter.outage.where = redact_url(url)
        limiter._owns_client = True
        return limiter

    # -- Limiter protocol ----------------------------------------------------------------------

    def try_acquire(self, instance: str, limit: int) -> bool:
        now = self._clock()
        token = uuid.uuid4().hex
        ticket = "" if self._ticket is None else repr(self._ticket)
        try:
            granted = self.outage.call(self._acquire, keys=[self._slots(instance)], args=[
                self._slots(instance), self._queue, repr(now), repr(now + self.lease_s), token, limit,
                ticket, self.lease_s])
        except StoreError:
            self.fallbacks += 1
            if not self._local.try_acquire(instance, limit):
                return False
            self._hold(instance, None)
            return True
        if not granted:
            return False
        self._hold(instance, token)
        return True

    def release(self, instance: str) -> None:
        with self._lock:
            held = self._held.get(instance)
            if not held:
                raise RuntimeError(f"release of {instance!r} without a slot taken")
            token = held.pop()
        if token is None:
            self._local.release(instance)
            return
        try:
            self.outage.call(self._client.zrem, self._slots(instance), token)
        except StoreError:
            pass  # the lease runs out by itself after lease_s

    def in_flight(self, instance: str) -> int:
        try:
            shared = int(self.outage.call(self._count, keys=[self._slots(instance)],
                                          args=[self._slots(instance), repr(self._clock())]))
        except StoreError:
            shared = 0
        return shared + self._local.in_flight(instance)

    # -- fairness across processes ---------------------------------------------------------------

    def queued(self, since: float | None) -> None:
        """This process's oldest queued request has waited since ``since`` (wall time; None: no queue)."""
        with self._lock:
            self._ticket = since
        pipe = self._client.pipeline(transaction=True)
        if since is None:
            pipe.zrem(self._queue, self._me).zrem(self._queue + ":seen", self._me)
        else:
            pipe.zadd(self._queue, {self._me: since}).zadd(self._queue + ":seen", {self._me: self._clock()})
        try:
            self.outage.call(pipe.execute)
        except StoreError:
            pass  # without Redis the queue is local anyway
        if since is not None:
            self._start_renewer()

    # -- leases ------------------------------------------------------------------------------------

    def _slots(self, instance: str) -> str:
        return self._p + "slots:" + instance

    def _hold(self, instance: str, token: str | None) -> None:
        with self._lock:
            self._held.setdefault(instance, []).append(token)
        if token is not None:
            self._start_renewer()

    def _start_renewer(self) -> None:
        with self._lock:
            if self._renewer is None:
                self._renewer = threading.Thread(target=self._renew_loop, name="semroute-lease", daemon=True)
                self._renewer.start()

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            self.renew()

    def renew(self) -> None:
        """Extend every lease (and the queue ticket) this process holds by ``lease_s`` from now."""
        with self._lock:
            held = {i: [t for t in tokens if t is not None] for i, tokens in self._held.items()}
            ticket = self._ticket
        deadline = self._clock() + self.lease_s
        pipe = self._client.pipeline(transaction=False)
        for instance, tokens in held.items():
            if tokens:
                pipe.zadd(self._slots(instance), dict.fromkeys(tokens, deadline), xx=True)
        if ticket is not None:
            pipe.zadd(self._queue, {self._me: ticket}).zadd(self._queue + ":seen", {self._me: self._clock()})
        try:
            self.outage.call(pipe.execute)
        except StoreError:
            pass

    def close(self) -> None:
        """Stop renewing, give back every lease and the ticket this process still holds."""
        self._stop.set()
        with self._lock:
            held = {i: [t for t in tokens if t is not None] for i, tokens in self._held.items()}
            self._held.clear()
        try:
            pipe = self._client.pipeline(transaction=False)
            for instance, tokens in held.items():
                if tokens:
                    pipe.zrem(self._slots(instance), *tokens)
            pipe.zrem(self._queue, self._me).zrem(self._queue + ":seen", self._me)
            self.outage.call(pipe.execute)
        except StoreError:
            pass
        if self._owns_client:
            self._client.close()

    def __repr__(self) -> str:
        return f"RedisLimiter({self.outage.where!r}, lease_s={self.lease_s:g})"
