"""``semroute.backends.http1`` against small real asyncio servers on loopback, and
``OllamaBackend.achat`` (which uses it for plain ``http://`` hosts) against FakeOllama: bodies of
every framing arrive whole, connections are kept alive and never reused once closed or half
read, errors are httpx's, and the backend maps statuses as on its httpx path."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx
import pytest

from semroute.backends import OllamaBackend, Timeout
from semroute.backends.http1 import Http1, plain_http
from semroute.errors import BackendProtocolError, BackendTimeout, BackendUnavailable
from semroute.testing import Capacity, FakeOllama
from semroute.types import Message

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
SMALL = "llama3.2:3b"
MESSAGES = (Message("user", "hello"),)


class Server:
    """A loopback server running ``handler`` per connection; counts connections and requests."""

    def __init__(self, handler: Callable[["Server", asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]):
        self.handler, self.connections, self.requests, self.closed = handler, 0, [], asyncio.Event()

    async def __aenter__(self) -> "Server":
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                await self.handler(self, reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()
                self.closed.set()

        self.server = await asyncio.start_server(serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()

    async def request(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        body = await reader.readexactly(length)
        self.requests.append(head + body)
        return body


def _client(url: str, read_s: float = 5.0) -> Http1:
    return Http1(url, headers={"content-type": "application/json", "user-agent": "t"}, connect_s=2.0, read_s=read_s)


async def test_requests_share_one_kept_alive_connection_and_carry_headers_and_body():
    async def handler(server, reader, writer):
        while True:
            body = await server.request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                         % (len(body), body))

    async with Server(handler) as server:
        client = _client(server.url)
        for i in range(3):
            reply = await client.post("/api/chat", b'{"n": %d}' % i)
            assert (reply.status, reply.body) == (200, b'{"n": %d}' % i)
            assert reply.headers["content-type"] == "application/json"
        assert server.connections == 1
        head = server.requests[0].decode()
        assert head.startswith("POST /api/chat HTTP/1.1\r\n") and "host: 127.0.0.1:" in head
        assert "user-agent: t\r\n" in head and "content-length: 8\r\n" in head
        await client.aclose()


async def test_a_chunked_body_with_extensions_and_trailers_arrives_whole_and_the_connection_is_reused():
    async def handler(server, reader, writer):
        while True:
            await server.request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            for part in (b'{"a":', b" " * 70000, b'"b"}'):
                writer.write(b"%x;ext=1\r\n%s\r\n" % (len(part), part))
                await writer.drain()
            writer.write(b"0\r\nx-trailer: 1\r\n\r\n")

    async with Server(handler) as server:
        client = _client(server.url)
        for _ in range(2):
            reply = await client.post("/", b"{}")
            assert reply.body == b'{"a":' + b" " * 70000 + b'"b"}'
        assert server.connections == 1
        await client.aclose()


async def test_connection_close_and_a_body_without_length_are_not_reused():
    async def handler(server, reader, writer):
        await server.request(reader)
        if server.connections == 1:
            writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok")
        else:
            writer.write(b"HTTP/1.0 200 OK\r\n\r\nuntil the end")
        await writer.drain()

    async with Server(handler) as server:
        client = _client(server.url)
        assert (await client.post("/", b"{}")).body == b"ok"
        assert (await client.post("/", b"{}")).body == b"until the end"
        assert server.connections == 2
        await client.aclose()


async def test_an_idle_connection_the_server_closed_is_not_reused():
    async def handler(server, reader, writer):
        await server.request(reader)
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await writer.drain()  # then close: keep-alive ends on the server's side

    async with Server(handler) as server:
        client = _client(server.url)
        assert (await client.post("/", b"{}")).status == 204
        await server.closed.wait()
        await asyncio.sleep(0.05)  # the close reaches the client's buffer
        assert (await client.post("/", b"{}")).status == 204
        assert server.connections == 2
        await client.aclose()


async def test_a_cancelled_request_closes_its_connection():
    answered = asyncio.Event()

    async def handler(server, reader, writer):
        await server.request(reader)
        if server.connections == 1:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhalf")  # and never the rest
            answered.set()
            await reader.read()  # until the client closes
            return
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nwhole")

    async with Server(handler) as server:
        client = _client(server.url)
        task = asyncio.ensure_future(client.post("/", b"{}"))
        await answered.wait()
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(server.closed.wait(), 5)  # the half-read connection was closed
        assert (await client.post("/", b"{}")).body == b"whol"
        assert server.connections == 2
        await client.aclose()


async def test_errors_are_httpx_errors():
    async def silent(server, reader, writer):
        await server.request(reader)
        await asyncio.sleep(5)

    async def garbage(server, reader, writer):
        await server.request(reader)
        writer.write(b"SMTP ready\r\n\r\n")

    async def early_close(server, reader, writer):
        await server.request(reader)

    async with Server(silent) as server:
        with pytest.raises(httpx.ReadTimeout):
            await _client(server.url, read_s=0.2).post("/", b"{}")
    async with Server(garbage) as server:
        with pytest.raises(httpx.RemoteProtocolError):
            await _client(server.url).post("/", b"{}")
    async with Server(early_close) as server:
        with pytest.raises(httpx.RemoteProtocolError):
            await _client(server.url).post("/", b"{}")
        url = server.url
    with pytest.raises(httpx.ConnectError):
        await _client(url).post("/", b"{}")  # nothing listens there any more


async def test_bytes_past_an_answer_make_its_connection_not_reused():
    async def handler(server, reader, writer):
        while True:
            await server.request(reader)
            if server.connections == 1:  # a length-framed answer, then bytes nobody asked for
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n")
            elif server.connections == 2:  # a chunked answer, then the same
                writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\nstray")
            else:
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            await writer.drain()

    async with Server(handler) as server:
        client = _client(server.url)
        for _ in range(4):
            reply = await client.post("/", b"{}")
            assert (reply.status, reply.body) == (200, b"ok")  # the 100 Continue before the last was skipped
        assert server.connections == 3  # the third connection, clean, carried two requests
        await client.aclose()


async def test_oversized_headers_and_a_compressed_body_are_refused():
    async def huge(server, reader, writer):
        await server.request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n" + b"x-pad: %s\r\n" % (b"a" * 1000) * 100)
        await writer.drain()
        await asyncio.sleep(5)

    async def gzipped(server, reader, writer):
        await server.request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: 2\r\n\r\nok")
        await reader.read()

    async with Server(huge) as server:
        with pytest.raises(httpx.RemoteProtocolError):
            await _client(server.url).post("/", b"{}")
    async with Server(gzipped) as server:
        with pytest.raises(httpx.DecodingError):
            await _client(server.url).post("/", b"{}")
        await asyncio.wait_for(server.closed.wait(), 5)  # and its connection was closed


def test_only_plain_http_without_credentials_or_proxy_is_served(monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert plain_http("http://127.0.0.1:11434")
    assert not plain_http("https://ollama.example:443")
    assert not plain_http("http://user:secret@127.0.0.1:11434")
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    assert not plain_http("http://ollama.example:11434")
    monkeypatch.setenv("NO_PROXY", "ollama.example")
    assert plain_http("http://ollama.example:11434")


# -- OllamaBackend.achat over the lean client -------------------------------------------------


async def test_achat_maps_statuses_as_the_httpx_path_does(fake_ollama):
    backend = OllamaBackend(fake_ollama.url)
    with pytest.raises(BackendProtocolError) as info:
        await backend.achat("mistral:7b", MESSAGES)
    assert info.value.status == 404 and "not found" in str(info.value)
    fake_ollama.set_fault("error", count=1)
    with pytest.raises(BackendProtocolError) as info:
        await backend.achat(SMALL, MESSAGES)
    assert info.value.status == 500
    completion = await backend.achat(SMALL, MESSAGES, options={"num_predict": 4})
    assert completion.text and completion.instance == fake_ollama.url and completion.completion_tokens > 0
    assert fake_ollama.stats().connections == 1  # errors did not cost the kept-alive connection
    await backend.aclose()


async def test_achat_503_keeps_retry_after_and_a_hang_times_out():
    with FakeOllama([SMALL], capacity=Capacity(retry_after_s=1.5)) as fake:
        backend = OllamaBackend(fake.url, timeout=Timeout(read=0.3))
        fake.set_fault("busy", count=1)
        with pytest.raises(BackendUnavailable) as info:
            await backend.achat(SMALL, MESSAGES)
        assert info.value.retry_after == 1.5
        fake.set_fault("hang")
        with pytest.raises(BackendTimeout):
            await backend.achat(SMALL, MESSAGES)
        fake.clear_fault()
        assert (await backend.achat(SMALL, MESSAGES)).text
        await backend.aclose()


# -- streamed answers (Http1.open: the gateway's proxied NDJSON streams) ------------------------


async def test_a_streamed_body_arrives_read_by_read_and_its_connection_is_reused_once_read_to_the_end():
    sent = asyncio.Event()

    async def handler(server, reader, writer):
        while True:
            await server.request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            writer.write(b"2\r\na\n\r\n2\r\nb\n\r\n")  # two chunks in one write: one read
            await writer.drain()
            sent.set()
            await asyncio.sleep(0.05)
            writer.write(b"2\r\nc\n\r\n0\r\n\r\n")
            await writer.drain()

    async with Server(handler) as server:
        client = _client(server.url)
        for _ in range(2):
            opened = await client.open("/api/chat", b"{}")
            assert opened.status == 200 and opened.headers["transfer-encoding"] == "chunked"
            reads = []
            while (data := await opened.read()) is not None:
                reads.append(data)
            await opened.aclose()
            assert b"".join(reads) == b"a\nb\nc\n" and reads[0] == b"a\nb\n"  # the first read's chunks joined
        assert server.connections == 1
        await client.aclose()


async def test_a_stream_closed_half_read_or_cut_by_the_server_is_not_reused():
    async def handler(server, reader, writer):
        await server.request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\na\n\r\n")
        await writer.drain()
        if server.connections == 2:
            return  # the server hangs up inside the body
        await asyncio.sleep(5)

    async with Server(handler) as server:
        client = _client(server.url)
        opened = await client.open("/", b"{}")
        assert await opened.read() == b"a\n"
        await opened.aclose()  # the caller left half way: the connection must not carry another request
        opened = await client.open("/", b"{}")
        assert await opened.read() == b"a\n"
        with pytest.raises(httpx.RemoteProtocolError):
            await opened.read()
        await opened.aclose()
        assert server.connections == 2 and not client._idle
        await client.aclose()


async def test_astream_over_the_lean_client_maps_statuses_and_keeps_retry_after(fake_ollama):
    backend = OllamaBackend(fake_ollama.url)
    assert await backend._lean() is not None  # FakeOllama is plain http: the lean client streams
    with pytest.raises(BackendProtocolError) as info:
        [c async for c in backend.astream("mistral:7b", MESSAGES)]
    assert info.value.status == 404 and "not found" in str(info.value)
    chunks = [c async for c in backend.astream(SMALL, MESSAGES)]
    assert len(chunks) > 2 and chunks[-1].done and chunks[-1].completion_tokens > 0
    assert fake_ollama.stats().connections == 1  # the error answer and the stream shared one connection
    await backend.aclose()
    with FakeOllama([SMALL], capacity=Capacity(retry_after_s=1.5)) as fake:
        backend = OllamaBackend(fake.url)
        fake.set_fault("busy", count=1)
        with pytest.raises(BackendUnavailable) as info:
            [c async for c in backend.astream(SMALL, MESSAGES)]
        assert info.value.retry_after == 1.5
        await backend.aclose()
