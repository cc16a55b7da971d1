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

A streamed answer (``open``: Ollama's NDJSON) is read the same way: the status and headers first,
then the body as it arrives, everything one socket read brought in one piece (one h11 parse and
no other layer per read: a proxied stream's ~26 reads went through httpx, httpcore and their
stream wrappers, the most of the gateway's CPU per held stream). Its connection is kept only
when the body was read to its end.

Not here: TLS, proxies, credentials in the URL, redirects, compression. Whoever builds an
``Http1`` checks ``plain_http(url)`` and keeps httpx for everything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import urllib.request
from collections.abc import Iterator
from urllib.parse import urlsplit

import h11
import httpcore
import httpx

from .asyncio_net import AsyncioBackend

__all__ = ["Http1", "Reply", "Streamed", "plain_http"]

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
            with _as_httpx_errors():
                await conn.write(self._request(http, path, body), self._read_s)
                reply = await _read_reply(conn, http, self._read_s)
                keep = _reusable(http)
            return reply
        finally:
            await self._release(conn, http, keep, loop)

    async def open(self, path: str, body: bytes) -> Streamed:
        """``POST path`` with ``body``; the answer's status and headers, its body to be read
        (``Streamed.read``) and the answer closed (``Streamed.aclose``) by the caller."""
        loop = asyncio.get_running_loop()
        conn, http = await self._connection(loop)
        try:
            with _as_httpx_errors():
                await conn.write(self._request(http, path, body), self._read_s)
                head = await _read_head(conn, http, self._read_s)
            return Streamed(self, conn, http, head, loop)  # refuses a compressed answer
        except BaseException:
            await conn.aclose()
            raise

    def _request(self, http: h11.Connection, path: str, body: bytes) -> bytes:
        request = h11.Request(method="POST", target=self._base + path,
                              headers=[*self._headers, ("content-length", str(len(body)))])
        return http.send(request) + http.send(h11.Data(data=body)) + http.send(h11.EndOfMessage())

    async def _release(self, conn: httpcore.AsyncNetworkStream, http: h11.Connection, keep: bool,
                       loop: asyncio.AbstractEventLoop) -> None:
        """Back to the idle connections when ``keep``, else closed (``aclose`` of this network
        stream closes the transport at once: it never suspends, even while cancelled)."""
        if keep and not self._closed:
            self._idle.append(((conn, http), loop.time()))
        else:
            await conn.aclose()

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
        if idle:  # a transport's socket closes in the loop's next step: closed when this returns
            await asyncio.sleep(0)


class Streamed:
    """An answer whose body is read as it arrives: ``status``, ``headers``, then ``read()`` until
    None; ``aclose()`` always (the connection is kept only when the body was read to its end)."""

    __slots__ = ("status", "headers", "_owner", "_conn", "_http", "_loop", "_ended")

    def __init__(self, owner: Http1, conn: httpcore.AsyncNetworkStream, http: h11.Connection,
                 head: h11.Response, loop: asyncio.AbstractEventLoop) -> None:
        self.status, self.headers = head.status_code, _headers(head)
        self._owner, self._conn, self._http, self._loop = owner, conn, http, loop
        self._ended = False

    async def read(self) -> bytes | None:
        """The body bytes one socket read brought (several h11 events joined), None at its end."""
        if self._ended:
            return None
        http, parts = self._http, []
        with _as_httpx_errors():
            while True:
                event = http.next_event()
                if isinstance(event, h11.Data):
                    parts.append(event.data)
                elif event is h11.NEED_DATA:
                    if parts:
                        return b"".join(parts)
                    http.receive_data(await self._conn.read(_READ, self._owner._read_s))
                elif isinstance(event, h11.EndOfMessage):
                    self._ended = True
                    return b"".join(parts) if parts else None
                else:  # ConnectionClosed: the server hung up inside the body
                    raise httpx.RemoteProtocolError("the server closed the connection inside the answer")

    async def read_all(self) -> bytes:
        """The rest of the body (an error answer's, to report it)."""
        parts = []
        while (data := await self.read()) is not None:
            parts.append(data)
        return b"".join(parts)

    async def finish(self, wait_s: float = 0.05) -> None:
        """Read the rest of the body if it comes within ``wait_s``, so ``aclose`` keeps the connection.

        A stream whose last line is read has not always read the body's end (the chunked
        terminator may come in the next socket read): closing then drops a connection that was
        fine. Past ``wait_s``, or on an error, the connection is dropped by ``aclose`` as before.
        """
        if self._ended or self._conn is None:
            return
        with contextlib.suppress(asyncio.TimeoutError, httpx.HTTPError):
            await asyncio.wait_for(self.read_all(), wait_s)

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await self._owner._release(conn, self._http, self._ended and _reusable(self._http), self._loop)


# h11's and httpcore's errors, each with the httpx error it is raised as.
_AS_HTTPX: tuple[tuple[type[Exception], type[httpx.HTTPError]], ...] = (
    (h11.RemoteProtocolError, httpx.RemoteProtocolError), (h11.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.ReadTimeout, httpx.ReadTimeout), (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.WriteError, httpx.WriteError), (httpcore.ReadError, httpx.ReadError),
)


@contextlib.contextmanager
def _as_httpx_errors() -> Iterator[None]:
    """h11's and httpcore's errors as httpx's (what ``http_errors.translate`` maps)."""
    try:
        yield
    except tuple(source for source, _ in _AS_HTTPX) as exc:
        raise next(target for source, target in _AS_HTTPX if isinstance(exc, source))(str(exc)) from exc


async def _read_head(conn: httpcore.AsyncNetworkStream, http: h11.Connection, read_s: float | None) -> h11.Response:
    """The answer's status line and headers; 1xx answers (100 Continue) are skipped."""
    while True:
        event = http.next_event()
        if event is h11.NEED_DATA:
            http.receive_data(await conn.read(_READ, read_s))  # b"": the server closed the connection
        elif isinstance(event, h11.Response):
            return event
        elif not isinstance(event, h11.InformationalResponse):  # ConnectionClosed before an answer
            raise httpx.RemoteProtocolError("the server closed the connection without an answer")


async def _read_reply(conn: httpcore.AsyncNetworkStream, http: h11.Connection, read_s: float | None) -> Reply:
    """The whole answer on ``conn``, read through ``http``."""
    head = await _read_head(conn, http, read_s)
    body = bytearray()
    while True:
        event = http.next_event()
        if event is h11.NEED_DATA:
            http.receive_data(await conn.read(_READ, read_s))
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            break
        else:  # ConnectionClosed inside the body
            raise httpx.RemoteProtocolError("the server closed the connection inside the answer")
    return Reply(head.status_code, _headers(head), bytes(body))


def _headers(head: h11.Response) -> dict[str, str]:
    """Lower-case names (as h11 gives them) to values, repeats joined; a compressed answer refused
    (none was asked for)."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in head.headers:
        name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    encoding = headers.get("content-encoding", "identity").lower()
    if encoding not in ("identity", ""):
        raise httpx.DecodingError(f"unexpected content-encoding {encoding!r} (none was accepted)")
    return headers


def _reusable(http: h11.Connection) -> bool:
    """Whether ``http``'s connection may carry another request, and if so, made ready for it:
    both sides done (not ``MUST_CLOSE``: ``connection: close``, HTTP/1.0, a body ended by the
    close) and nothing received past the answer (the connection's state would be unknown)."""
    if http.our_state is not h11.DONE or http.their_state is not h11.DONE or any(http.trailing_data):
        return False
    http.start_next_cycle()
    return True
