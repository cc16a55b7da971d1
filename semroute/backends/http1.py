"""``Http1``: one plain-HTTP/1.1 server, asked one request at a time per connection, answered whole.

The gateway's model call on a miss is one ``POST`` with a small JSON body and one JSON answer.
Through httpx it passed the request and response mapping, auth and redirect handling, event
hooks and httpcore's connection pool: about 1 ms more than the same bytes written and read on an
asyncio connection, after the ~14 ms of embedding that precede it (cache-cold code runs at half
speed; FakeOllama over loopback, 2026-12-04: httpx 1.4-1.6 ms, a bare socket 0.6 ms). Here a
request is one write and the answer is read straight off the connection. HTTP itself is ``h11``'s
(one ``h11.Connection`` per connection: framing by ``Content-Length``, chunks with extensions and
trailers, or the connection's end; 1xx answers; whether the connection may carry another
request). Connections are kept alive (most recently used first, idle at most ``keepalive_s``,
never one the server has closed or written on while idle, nor one with bytes past its answer).

Errors leave as httpx's own exceptions (``ConnectError``, ``ConnectTimeout``, ``ReadTimeout``,
``ReadError``, ``WriteError``, ``RemoteProtocolError``), so ``http_errors.translate`` maps them as
it maps httpx's. A request cancelled half way (a deadline, a client that left) closes its
connection: a half-read answer never reaches the next request.

Not here: TLS, proxies, credentials in the URL, redirects, compression, streaming. Whoever builds
an ``Http1`` checks ``plain_http(url)`` and keeps httpx for everything else.
"""

from __future__ import annotations

import asyncio
import urllib.request
from urllib.parse import urlsplit

import h11
import httpcore
import httpx

from .asyncio_net import AsyncioBackend

__all__ = ["Http1", "Reply", "plain_http"]

_MAX_HEAD = 64 * 1024  # bytes of status line and headers (or a chunk's size line) before the answer is refused
_READ = 65536


def plain_http(url: str) -> bool:
    """True when ``url`` can be served here: ``http://``, no userinfo, no proxy from the environment."""
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.username is not None or parts.password is not None or not parts.hostname:
        return False
    proxies = urllib.request.getproxies()
    if not proxies.get("http") and not proxies.get("all"):
        return True
    return bool(urllib.request.proxy_bypass(parts.hostname))


class Reply:
    """A complete answer: status, headers (lower-case names) and body."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body


# A kept-alive connection: the socket and the h11 state machine that has read and written on it.
_Conn = tuple[httpcore.AsyncNetworkStream, h11.Connection]


class Http1:
    """Kept-alive connections to one ``http://host:port``, for the event loop that uses them."""

    def __init__(self, url: str, *, headers: dict[str, str], connect_s: float | None, read_s: float | None,
                 keepalive_s: float = 5.0) -> None:
        parts = urlsplit(url)
        self._host, self._port = parts.hostname or "", parts.port or 80
        self._base = parts.path.rstrip("/")
        self._headers = [("host", parts.netloc)] + [(name, value) for name, value in headers.items()
                                                     if name.lower() != "host"]
        self._connect_s, self._read_s, self._keepalive_s = connect_s, read_s, keepalive_s
        self._idle: list[tuple[_Conn, float]] = []
        self._network = AsyncioBackend()
        self._closed = False

    async def post(self, path: str, body: bytes) -> Reply:
        """``POST path`` with ``body`` (JSON); the whole answer, whatever its status."""
        loop = asyncio.get_running_loop()
        conn, http = await self._connection(loop)
        keep = False
        try:
            try:
                request = h11.Request(method="POST", target=self._base + path,
                                      headers=[*self._headers, ("content-length", str(len(body)))])
                await conn.write(http.send(request) + http.send(h11.Data(data=body)) + http.send(h11.EndOfMessage()),
                                 self._read_s)
                reply = await _read_reply(conn, http, self._read_s)
                keep = _reusable(http)
            except h11.RemoteProtocolError as exc:
                raise httpx.RemoteProtocolError(str(exc)) from exc
            except h11.LocalProtocolError as exc:
                raise httpx.LocalProtocolError(str(exc)) from exc
            except httpcore.ReadTimeout as exc:
                raise httpx.ReadTimeout(str(exc)) from exc
            except httpcore.WriteTimeout as exc:
                raise httpx.WriteTimeout(str(exc)) from exc
            except httpcore.WriteError as exc:
                raise httpx.WriteError(str(exc)) from exc
            except httpcore.ReadError as exc:
                raise httpx.ReadError(str(exc)) from exc
            return reply
        finally:
            if keep and not self._closed:
                self._idle.append(((conn, http), loop.time()))
            else:
                await conn.aclose()  # never suspends (it closes the transport), even while cancelled

    async def _connection(self, loop: asyncio.AbstractEventLoop) -> _Conn:
        """The most recently used idle connection that is still good, else a new one."""
        now = loop.time()
        while self._idle:
            (conn, http), since = self._idle.pop()
            if now - since < self._keepalive_s and not conn.get_extra_info("is_readable"):
                return conn, http
            await conn.aclose()
        try:
            conn = await self._network.connect_tcp(self._host, self._port, timeout=self._connect_s)
        except httpcore.ConnectTimeout as exc:
            raise httpx.ConnectTimeout(str(exc)) from exc
        except httpcore.ConnectError as exc:
            raise httpx.ConnectError(str(exc)) from exc
        return conn, h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_HEAD)

    async def aclose(self) -> None:
        """Close every idle connection; connections in use close when their request ends."""
        self._closed = True
        idle, self._idle = self._idle, []
        for (conn, _), _ in idle:
            await conn.aclose()


async def _read_reply(conn: httpcore.AsyncNetworkStream, http: h11.Connection, read_s: float | None) -> Reply:
    """The answer on ``conn``, read through ``http``; 1xx answers (100 Continue) are skipped."""
    head: h11.Response | None = None
    body = bytearray()
    while True:
        event = http.next_event()
        if event is h11.NEED_DATA:
            http.receive_data(await conn.read(_READ, read_s))  # b"": the server closed the connection
        elif isinstance(event, h11.Response):
            head = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage) and head is not None:
            break
        elif not isinstance(event, h11.InformationalResponse):  # ConnectionClosed before an answer
            raise httpx.RemoteProtocolError("the server closed the connection without an answer")
    headers: dict[str, str] = {}
    for raw_name, raw_value in head.headers:
        name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")  # h11 lower-cases names
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    encoding = headers.get("content-encoding", "identity").lower()
    if encoding not in ("identity", ""):
        raise httpx.DecodingError(f"unexpected content-encoding {encoding!r} (none was accepted)")
    return Reply(head.status_code, headers, bytes(body))


def _reusable(http: h11.Connection) -> bool:
    """Whether ``http``'s connection may carry another request, and if so, made ready for it:
    both sides done (not ``MUST_CLOSE``: ``connection: close``, HTTP/1.0, a body ended by the
    close) and nothing received past the answer (the connection's state would be unknown)."""
    if http.our_state is not h11.DONE or http.their_state is not h11.DONE or any(http.trailing_data):
        return False
    http.start_next_cycle()
    return True
