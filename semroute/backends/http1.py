"""``Http1``: one plain-HTTP/1.1 server, asked one request at a time per connection, answered whole.

The gateway's model call on a miss is one ``POST`` with a small JSON body and one JSON answer.
Through httpx it passed the request and response mapping, auth and redirect handling, event
hooks, httpcore's connection pool and h11's state machine: about 1 ms more than the same bytes
written and read on an asyncio connection, after the ~14 ms of embedding that precede it
(cache-cold code runs at half speed; FakeOllama over loopback, 2026-12-04: httpx 1.4-1.6 ms,
a bare socket 0.6 ms). Here a request is one write of prebuilt bytes and a response is parsed
from the connection's buffer: status line, headers, then a ``Content-Length``, chunked or
until-close body. Connections are kept alive (most recently used first, idle at most
``keepalive_s``, never one the server has closed or written on while idle).

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

import httpcore
import httpx

from .asyncio_net import AsyncioBackend

__all__ = ["Http1", "Reply", "plain_http"]

_MAX_HEAD = 64 * 1024  # bytes of status line and headers before the answer is refused
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


class Http1:
    """Kept-alive connections to one ``http://host:port``, for the event loop that uses them."""

    def __init__(self, url: str, *, headers: dict[str, str], connect_s: float | None, read_s: float | None,
                 keepalive_s: float = 5.0) -> None:
        parts = urlsplit(url)
        self._host, self._port = parts.hostname or "", parts.port or 80
        self._base = parts.path.rstrip("/")
        netloc = parts.netloc
        lines = [f"host: {netloc}"] + [f"{name}: {value}" for name, value in headers.items() if name.lower() != "host"]
        self._head = ("\r\n".join(lines) + "\r\n").encode("latin-1")
        self._connect_s, self._read_s, self._keepalive_s = connect_s, read_s, keepalive_s
        self._idle: list[tuple[httpcore.AsyncNetworkStream, float]] = []
        self._network = AsyncioBackend()
        self._closed = False

    async def post(self, path: str, body: bytes) -> Reply:
        """``POST path`` with ``body`` (JSON); the whole answer, whatever its status."""
        request = b"POST %s HTTP/1.1\r\n%scontent-length: %d\r\n\r\n%s" % (
            (self._base + path).encode("latin-1"), self._head, len(body), body)
        loop = asyncio.get_running_loop()
        conn = await self._connection(loop)
        keep = False
        try:
            try:
                await conn.write(request, self._read_s)
                reply, keep = await _read_reply(conn, self._read_s)
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
                self._idle.append((conn, loop.time()))
            else:
                await conn.aclose()  # never suspends (it closes the transport), even while cancelled

    async def _connection(self, loop: asyncio.AbstractEventLoop) -> httpcore.AsyncNetworkStream:
        """The most recently used idle connection that is still good, else a new one."""
        now = loop.time()
        while self._idle:
            conn, since = self._idle.pop()
            if now - since < self._keepalive_s and not conn.get_extra_info("is_readable"):
                return conn
            await conn.aclose()
        try:
            return await self._network.connect_tcp(self._host, self._port, timeout=self._connect_s)
        except httpcore.ConnectTimeout as exc:
            raise httpx.ConnectTimeout(str(exc)) from exc
        except httpcore.ConnectError as exc:
            raise httpx.ConnectError(str(exc)) from exc

    async def aclose(self) -> None:
        """Close every idle connection; connections in use close when their request ends."""
        self._closed = True
        idle, self._idle = self._idle, []
        for conn, _ in idle:
            await conn.aclose()


async def _read_reply(conn: httpcore.AsyncNetworkStream, read_s: float | None) -> tuple[Reply, bool]:
    """The answer on ``conn`` and whether the connection may carry another request."""
    buffer = bytearray()
    while True:  # 1xx answers (100 Continue) come before the real one
        end = await _fill_until(conn, buffer, b"\r\n\r\n", read_s, _MAX_HEAD, "the answer's headers")
        version, status, headers = _head(bytes(buffer[:end]))
        del buffer[: end + 4]
        if status >= 200:
            break
    keep = version == "HTTP/1.1" and "close" not in headers.get("connection", "").lower()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = await _chunked(conn, buffer, read_s)
        keep = keep and not buffer  # bytes past the answer: the connection's state is unknown
    elif (length := headers.get("content-length")) is not None:
        if not length.strip().isdigit():
            raise httpx.RemoteProtocolError(f"bad content-length {length[:40]!r}")
        size = int(length)
        while len(buffer) < size:
            data = await conn.read(max(_READ, size - len(buffer)), read_s)
            if not data:
                raise httpx.RemoteProtocolError("the server closed the connection in the middle of the answer")
            buffer += data
        body, keep = bytes(buffer[:size]), keep and len(buffer) == size
    elif status in (204, 304):
        body = b""
    else:  # no length: the body ends with the connection
        while data := await conn.read(_READ, read_s):
            buffer += data
        body, keep = bytes(buffer), False
    encoding = headers.get("content-encoding", "identity").lower()
    if encoding not in ("identity", ""):
        raise httpx.DecodingError(f"unexpected content-encoding {encoding!r} (none was accepted)")
    return Reply(status, headers, body), keep


def _head(raw: bytes) -> tuple[str, int, dict[str, str]]:
    lines = raw.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise httpx.RemoteProtocolError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise httpx.RemoteProtocolError(f"bad header line {line[:80]!r}")
        name, value = name.strip().lower(), value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return version, int(code), headers


async def _fill_until(conn: httpcore.AsyncNetworkStream, buffer: bytearray, marker: bytes, read_s: float | None,
                      limit: int, what: str) -> int:
    """Read into ``buffer`` until it holds ``marker``; its index."""
    start = 0
    while (at := buffer.find(marker, start)) < 0:
        if len(buffer) > limit:
            raise httpx.RemoteProtocolError(f"{what} exceed {limit} bytes")
        start = max(0, len(buffer) - len(marker) + 1)
        data = await conn.read(_READ, read_s)
        if not data:
            raise httpx.RemoteProtocolError(f"the server closed the connection before {what} ended")
        buffer += data
    return at


async def _chunked(conn: httpcore.AsyncNetworkStream, buffer: bytearray, read_s: float | None) -> bytes:
    """A chunked body (RFC 9112 7.1), trailers read and dropped; ``buffer`` keeps what follows."""
    body = bytearray()
    while True:
        end = await _fill_until(conn, buffer, b"\r\n", read_s, _MAX_HEAD, "a chunk's size line")
        size_text = bytes(buffer[:end]).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise httpx.RemoteProtocolError(f"bad chunk size {size_text[:20]!r}") from None
        del buffer[: end + 2]
        if size == 0:
            while True:  # trailer lines, then the empty line
                end = await _fill_until(conn, buffer, b"\r\n", read_s, _MAX_HEAD, "the trailers")
                del buffer[: end + 2]
                if end == 0:
                    return bytes(body)
        while len(buffer) < size + 2:
            data = await conn.read(_READ, read_s)
            if not data:
                raise httpx.RemoteProtocolError("the server closed the connection in the middle of a chunk")
            buffer += data
        if buffer[size : size + 2] != b"\r\n":
            raise httpx.RemoteProtocolError("a chunk does not end with CRLF")
        body += buffer[:size]
        del buffer[: size + 2]
