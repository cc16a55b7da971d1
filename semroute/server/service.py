"""``Service``: what every endpoint of the gateway shares for one running server.

It holds the ``Gateway`` (routing), the ``Tenants`` (keys and limits) and the server-wide
admission bound, and gives the API modules the few verbs they need: identify the caller, admit
a request (``Overloaded`` past ``max_inflight``), run work that a client disconnect cancels,
open a stream (its first chunk is awaited before any header is sent, so errors before the
first token still get a proper status) and relay it (an error after the first chunk becomes
the API's in-stream error line; a disconnect closes the upstream stream).

Not here: either API's shapes (``ollama_api``, ``openai_api``), metrics and logs (``observe``).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import TypeVar

from starlette.requests import Request

from ..backends.groups import close_iterator
from ..errors import Overloaded
from ..types import Chunk
from .auth import Tenant, Tenants
from .gateway import ChatCall, Gateway, Reply
from .http import ClientGone, Failure, failure_of, until_disconnect
from .settings import ServerSettings

__all__ = ["Service", "Slot"]

T = TypeVar("T")


class Slot:
    """One admitted request. Released when its block ends, or, once ``detach``ed, by its stream."""

    def __init__(self, service: Service, tenant_hold: contextlib.AbstractContextManager[None]) -> None:
        self._service = service
        self._hold = tenant_hold
        self._released = False
        self._detached = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._hold.__exit__(None, None, None)
            self._service._leave()

    def detach(self) -> Slot:
        """Keep the slot past the handler (a streamed answer holds it until the stream ends)."""
        self._detached = True
        return self

    def __enter__(self) -> Slot:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if not self._detached or exc_info[0] is not None:
            self.release()


class Service:
    """The running gateway's shared state. Thread-safe counters; everything else is read-only."""

    def __init__(self, gateway: Gateway, settings: ServerSettings, tenants: Tenants) -> None:
        self.gateway = gateway
        self.settings = settings
        self.tenants = tenants
        self.tiers = frozenset(gateway.router.tiers)
        self._lock = threading.Lock()
        self._inflight = 0
        self.idle = asyncio.Event()  # set while no admitted request runs (graceful shutdown waits on it)
        self.idle.set()

    @property
    def inflight(self) -> int:
        return self._inflight

    def identify(self, request: Request) -> Tenant:
        tenant = self.tenants.identify(request.headers.get("authorization"))
        request.state.tenant = tenant.name
        return tenant

    def admitted(self, request: Request, tenant: Tenant, model: str) -> Slot:
        """Admit one request or raise ``Overloaded`` (server full) / ``RateLimited`` (key's limits)."""
        request.state.model = model
        with self._lock:
            if self._inflight >= self.settings.max_inflight:
                raise Overloaded(f"{self._inflight} requests in flight (limit {self.settings.max_inflight})",
                                 queue_length=self._inflight)
            self._inflight += 1
            self.idle.clear()
        hold = self.tenants.admit(tenant)
        try:
            hold.__enter__()
        except BaseException:
            self._leave()
            raise
        slot = Slot(self, hold)
        request.state.slot = slot
        return slot

    def _leave(self) -> None:
        with self._lock:
            self._inflight -= 1
            if self._inflight == 0:
                self.idle.set()

    def failure(self, exc: BaseException) -> Failure | None:
        """The HTTP failure for an error; None for what must propagate (cancellation, exit)."""
        if isinstance(exc, ClientGone):
            return Failure(499, "client closed the request", "client_gone")
        if not isinstance(exc, Exception):
            return None
        return failure_of(exc, retry_after_s=self.settings.retry_after_s)

    async def run(self, request: Request, work: Awaitable[T]) -> T:
        return await until_disconnect(request, work)

    async def answer(self, request: Request, call: ChatCall) -> Reply:
        reply = await self.run(request, self.gateway.answer(call))
        request.state.source = reply.source
        return reply

    async def open_stream(self, request: Request, call: ChatCall) -> tuple[Sequence[Chunk], AsyncIterator[Sequence[Chunk]]]:
        """The stream's groups of chunks (``Gateway.stream_groups``) and its first group (awaited
        now, so errors before it get a status)."""
        groups = self.gateway.stream_groups(call)
        try:
            first = await self.run(request, anext(groups))
        except BaseException:
            await close_iterator(groups, suppress=(Exception,))
            raise
        request.state.source = first[0].source
        slot: Slot | None = getattr(request.state, "slot", None)
        if slot is not None:
            slot.detach()
        return first, groups

    async def relay(self, request: Request, first: Sequence[Chunk],
                    rest: AsyncIterator[Sequence[Chunk]]) -> AsyncIterator[Sequence[Chunk] | Failure]:
        """``first`` then the rest, group by group; an error mid-stream ends it with a ``Failure`` item."""
        slot: Slot | None = getattr(request.state, "slot", None)
        try:
            yield first
            if not first[-1].done:
                async for group in rest:
                    yield group
        except Exception as exc:  # noqa: BLE001 - after the first byte an error can only be a line
            failure = self.failure(exc)
            assert failure is not None
            request.state.stream_error = failure.kind
            yield failure
        finally:
            await close_iterator(rest, suppress=(Exception,))  # the client already has its bytes
            if slot is not None:
                slot.release()

