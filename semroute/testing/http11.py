"""One server-side HTTP/1.1 connection over asyncio streams, parsed by ``h11``.

This is the plumbing under the fake servers, not a web framework: requests on a connection are
served one after another (keep-alive), bodies are read whole (capped), and a response is either
one body or a chunked stream that may be cut short on purpose (to simulate a dropped connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass

import h11

__all__ = ["HttpRequest", "HttpConnection"]

_READ_SIZE = 65536


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes


class HttpConnection:
    """Reads requests from and writes responses to one client connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, max_body: int = 8 << 20):
        self._reader = reader
        self._writer = writer
        self._conn = h11.Connection(h11.SERVER)
        self._max_body = max_body

    async def next_request(self) -> HttpRequest | None:
        """The next whole request, or None when the client is gone or the connection can't go on."""
        conn = self._conn
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
        elif conn.our_state is not h11.IDLE or conn.their_state is not h11.IDLE:
            return None  # a response was cut short or the client asked to close
        try:
            return await self._read_request()
        except h11.RemoteProtocolError as exc:
            await self._reject(exc.error_status_hint, str(exc))
            return None

    async def _read_request(self) -> HttpRequest | None:
        head: h11.Request | None = None
        body = bytearray()
        while True:
            event = self._conn.next_event()
            if event is h11.NEED_DATA:
                self._conn.receive_data(await self._reader.read(_READ_SIZE))
            elif isinstance(event, h11.Request):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > self._max_body:
                    await self._reject(413, "request body too large")
                    return None
            elif isinstance(event, h11.EndOfMessage) and head is not None:
                target = head.target.decode("latin-1").split("?", 1)[0]
                headers = tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in head.headers)
                return HttpRequest(head.method.decode("ascii"), target, headers, bytes(body))
            else:  # ConnectionClosed, or PAUSED after a half-read request
                return None

    async def _reject(self, status: int, message: str) -> None:
        if self._conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            with contextlib.suppress(h11.LocalProtocolError, ConnectionError):
                await self.respond(status, message.encode(), "text/plain; charset=utf-8")

    async def respond(
        self,
        status: int,
        body: bytes,
        content_type: str,
        *,
        headers: tuple[tuple[str, str], ...] = (),
        head_only: bool = False,
    ) -> None:
        """A whole response; ``head_only`` for HEAD requests (headers say the length, no body)."""
        all_headers = [("content-type", content_type), ("content-length", str(len(body))), *headers]
        data = self._conn.send(h11.Response(status_code=status, headers=all_headers))
        if not head_only and body:
            data += self._conn.send(h11.Data(data=body))
        data += self._conn.send(h11.EndOfMessage())
        self._writer.write(data)
        await self._writer.drain()

    async def respond_json(self, status: int, body: object, headers: tuple[tuple[str, str], ...] = ()) -> None:
        await self.respond(status, json.dumps(body).encode(), "application/json; charset=utf-8", headers=headers)

    async def start_stream(self, status: int, content_type: str) -> None:
        """Headers of a chunked response (h11 frames it chunked because no length is given)."""
        self._writer.write(self._conn.send(h11.Response(status_code=status, headers=[("content-type", content_type)])))
        await self._writer.drain()

    async def send_chunk(self, data: bytes) -> None:
        self._writer.write(self._conn.send(h11.Data(data=data)))
        await self._writer.drain()

    async def end_stream(self) -> None:
        self._writer.write(self._conn.send(h11.EndOfMessage()))
        await self._writer.drain()

    async def wait_for_disconnect(self) -> None:
        """Block until the client closes its side (used to hang without answering)."""
        with contextlib.suppress(ConnectionError):
            while await self._reader.read(_READ_SIZE):
                pass

    def abort(self) -> None:
        """Drop the connection at once (RST, unsent data discarded)."""
        self._writer.transport.abort()

    async def aclose(self) -> None:
        """Close gracefully: buffered bytes are sent, then FIN (a cut stream reads as incomplete)."""
        self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()
