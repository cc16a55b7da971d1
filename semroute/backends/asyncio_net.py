"""httpx over plain asyncio sockets: an ``httpcore`` network backend for the upstream clients.

httpx's default network layer is anyio's: every socket read and write enters an anyio cancel
scope (``fail_after``) and a checkpoint, and every connection runs anyio's happy-eyeballs task
group. A gateway relaying 1,000 streams pays that once per upstream read: with the h11 parsing
around it, about half of the gateway's CPU per stream (``bench/serve_held.py`` under py-spy,
2026-12-04). Here a connection is an ``asyncio.Protocol`` whose reads are served from its
buffer when data is there (no timer, no future) and otherwise wait on one future with one
timer for the read timeout. HTTP itself stays ``httpcore``'s and ``h11``'s (``httpcore``'s
public ``AsyncNetworkBackend`` seam); errors leave as ``httpcore``'s own, which httpx maps to
``httpx.ReadTimeout``, ``httpx.ConnectError`` and so on, as with its default backend.

``transport(...)`` is the ``httpx.AsyncHTTPTransport`` to give an ``httpx.AsyncClient`` (or
``ollama.AsyncClient``, which passes it on). Only for code running in an asyncio event loop.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import httpcore
import httpx

from .deadline import timeout_at

__all__ = ["AsyncioBackend", "shared_tls", "transport"]

# Bytes buffered before the socket stops being read (the consumer is slower than the server).
_HIGH_WATER = 256 * 1024
_READ_ERROR = "the connection was closed"


class _Connection(asyncio.Protocol, httpcore.AsyncNetworkStream):
    """One TCP (or TLS, after ``start_tls``) connection: a protocol and the stream httpcore reads."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._eof = False
        self._error: BaseException | None = None
        self._reader: asyncio.Future[None] | None = None  # a read waiting for data
        self._writable: asyncio.Future[None] | None = None  # set while the transport's buffer is full
        self._paused = False
        self._read_by: float | None = None  # the waiting read's deadline (loop time)
        self._timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) > _HIGH_WATER and self._transport is not None and not self._paused:
            self._paused = True
            self._transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        return False  # close the transport: HTTP/1.1 never half-closes usefully

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._eof = True
        self._error = exc
        self._wake()
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def pause_writing(self) -> None:
        if self._writable is None or self._writable.done():
            self._writable = self._loop.create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def _wake(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None and not reader.done():
            reader.set_result(None)

    # -- httpcore.AsyncNetworkStream -----------------------------------------------------------

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        if not self._buffer and not self._eof:
            await self._wait(timeout)
        if self._buffer:
            data = bytes(self._buffer[:max_bytes])
            del self._buffer[:max_bytes]
            if self._paused and len(self._buffer) <= _HIGH_WATER // 4 and self._transport is not None:
                self._paused = False
                self._transport.resume_reading()
            return data
        if self._error is not None:
            raise httpcore.ReadError(str(self._error) or _READ_ERROR) from self._error
        return b""  # end of stream: httpcore reads it as the server closing the connection

    async def _wait(self, timeout: float | None) -> None:
        """Until data, end of stream or ``timeout``: one future, and no new timer per read (a
        stream waits once per token; its connection's one timer is moved on only when it fires)."""
        self._reader = waiter = self._loop.create_future()
        if timeout is not None:
            self._read_by = deadline = self._loop.time() + timeout
            if self._timer is None or self._timer.when() > deadline:
                if self._timer is not None:
                    self._timer.cancel()
                self._timer = self._loop.call_at(deadline, self._timed_out)
        try:
            await waiter
        finally:
            self._read_by = None
            if self._reader is waiter:
                self._reader = None

    def _timed_out(self) -> None:
        self._timer = None
        deadline = self._read_by
        if deadline is None:  # no read waits now
            return
        if self._loop.time() < deadline:  # a later read's deadline: wait on
            self._timer = self._loop.call_at(deadline, self._timed_out)
            return
        reader, self._reader = self._reader, None
        if reader is not None and not reader.done():
            reader.set_exception(httpcore.ReadTimeout("timed out waiting for the server"))

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        transport = self._transport
        if transport is None or transport.is_closing() or self._error is not None:
            raise httpcore.WriteError(str(self._error or _READ_ERROR))
        transport.write(buffer)
        writable = self._writable
        if writable is not None and not writable.done():
            try:
                async with _within(timeout):
                    await asyncio.shield(writable)
            except TimeoutError as exc:
                raise httpcore.WriteTimeout("timed out writing to the connection") from exc

    async def aclose(self) -> None:
        if self._transport is not None:
            self._transport.close()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        assert self._transport is not None
        try:
            async with _within(timeout):
                tls = await self._loop.start_tls(self._transport, self, ssl_context, server_hostname=server_hostname)
        except TimeoutError as exc:
            self._transport.close()
            raise httpcore.ConnectTimeout("timed out in the TLS handshake") from exc
        except (OSError, ssl.SSLError) as exc:
            self._transport.close()
            raise httpcore.ConnectError(str(exc)) from exc
        self._transport = tls  # type: ignore[assignment]
        return self

    def get_extra_info(self, info: str) -> Any:
        transport = self._transport
        if info == "is_readable":  # an idle kept-alive connection the server closed (or wrote on)
            return bool(self._buffer) or self._eof or transport is None or transport.is_closing()
        key = {"ssl_object": "ssl_object", "client_addr": "sockname", "server_addr": "peername",
               "socket": "socket"}.get(info)
        if transport is None or key is None or transport.is_closing():  # a closed TLS transport has nothing left
            return None
        return transport.get_extra_info(key)


def _within(timeout: float | None) -> Any:
    """A timeout context for ``timeout`` seconds from now (None: none); Python 3.10 has no ``asyncio.timeout``."""
    return timeout_at(None if timeout is None else asyncio.get_running_loop().time() + timeout)


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """Connections made with the running loop's ``create_connection`` (no thread, no task group)."""

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        local = None if local_address is None else (local_address, 0)
        return await _connect(f"{host}:{port}", timeout, socket_options, lambda: loop.create_connection(
            lambda: _Connection(loop), host, port, local_addr=local))

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        return await _connect(path, timeout, socket_options, lambda: loop.create_unix_connection(
            lambda: _Connection(loop), path))

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


async def _connect(where: str, timeout: float | None, socket_options: Iterable[Any] | None,
                   connect: Callable[[], Awaitable[tuple[asyncio.BaseTransport, _Connection]]]) -> _Connection:
    """``connect()`` within ``timeout``, its errors as httpcore's (which httpx maps to its own)."""
    try:
        async with _within(timeout):
            transport, conn = await connect()
    except TimeoutError as exc:
        raise httpcore.ConnectTimeout(f"timed out connecting to {where}") from exc
    except OSError as exc:
        raise httpcore.ConnectError(str(exc)) from exc
    _apply(transport, socket_options)
    return conn


def _apply(transport: asyncio.BaseTransport, options: Iterable[Any] | None) -> None:
    sock: socket.socket | None = transport.get_extra_info("socket")
    for option in options or ():
        if sock is not None:
            sock.setsockopt(*option)


@functools.cache
def shared_tls() -> ssl.SSLContext:
    """One TLS context for every upstream client: httpx otherwise loads the CA bundle into a new
    one per client (6% of a gateway's samples with 1,000 streams held, bench/serve_held.py)."""
    return httpx.create_ssl_context()


def transport(*, limits: httpx.Limits, ssl_context: ssl.SSLContext | None = None) -> httpx.AsyncHTTPTransport:
    """httpx's own transport (request and response mapping, error translation) over this backend.

    ``ssl_context``: ``shared_tls()`` unless given (loading the CA bundle into a new context
    costs milliseconds, and every upstream client can share one)."""
    ssl_context = shared_tls() if ssl_context is None else ssl_context
    out = httpx.AsyncHTTPTransport(verify=ssl_context, limits=limits)
    out._pool = httpcore.AsyncConnectionPool(  # the one thing httpx does not let a caller choose
        ssl_context=ssl_context, max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections, keepalive_expiry=limits.keepalive_expiry,
        network_backend=AsyncioBackend())
    return out
