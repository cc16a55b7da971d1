"""httpx over ``semroute.backends.asyncio_net`` against small real asyncio servers on loopback:
bodies arrive whole (flow control included), read timeouts fire on the silence and only on it,
closed kept-alive connections are not reused, refused connections are ``ConnectError``s."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from semroute.backends.asyncio_net import transport

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
LIMITS = httpx.Limits(max_connections=None, max_keepalive_connections=None)


async def _request_head(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


def _client(read_s: float = 5.0) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=transport(limits=LIMITS, ssl_context=ssl.create_default_context()),
                             timeout=httpx.Timeout(5.0, read=read_s))


async def _serve(handler: Handler) -> tuple[asyncio.base_events.Server, str]:
    async def closing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handler(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(closing, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


async def _chunks(writer: asyncio.StreamWriter, parts: AsyncIterator[bytes]) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-type: application/x-ndjson\r\n\r\n")
    async for part in parts:
        writer.write(b"%x\r\n%s\r\n" % (len(part), part))
        await writer.drain()
    writer.write(b"0\r\n\r\n")
    await writer.drain()


async def test_a_large_body_read_slowly_arrives_whole():
    body = bytes(range(256)) * 8192  # 2 MiB: past the buffer's high-water mark, so reading pauses

    async def handler(reader, writer):
        await _request_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()
        writer.close()

    server, url = await _serve(handler)
    async with server, _client() as client, client.stream("GET", url) as response:
        got = bytearray()
        async for part in response.aiter_raw():
            got += part
            await asyncio.sleep(0)  # a consumer slower than loopback
    assert bytes(got) == body


async def test_read_timeout_fires_on_silence_only():
    async def handler(reader, writer):
        await _request_head(reader)

        async def lines() -> AsyncIterator[bytes]:
            for i in range(8):  # 8 x 0.1 s: twice the read timeout in all, never silent for 0.4 s
                await asyncio.sleep(0.1)
                yield b'{"n": %d}\n' % i
            await asyncio.sleep(5)  # then silent: the read timeout must fire

        await _chunks(writer, lines())

    server, url = await _serve(handler)
    async with server, _client(read_s=0.4) as client, client.stream("GET", url) as response:
        got = []
        with pytest.raises(httpx.ReadTimeout):
            async for part in response.aiter_raw():
                got.append(part)
    assert b"".join(got).count(b"\n") == 8


async def test_a_connection_the_server_closed_while_idle_is_not_reused():
    served = []

    async def handler(reader, writer):
        await _request_head(reader)
        served.append(writer)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()  # no "connection: close": the client keeps it alive, then finds it closed

    server, url = await _serve(handler)
    async with server, _client() as client:
        first = await client.get(url)
        await asyncio.sleep(0.1)  # the close reaches the client's idle connection
        second = await client.get(url)
    assert first.text == second.text == "ok" and len(served) == 2


async def test_refused_connection_is_a_connect_error():
    server, url = await _serve(lambda reader, writer: asyncio.sleep(0))
    server.close()
    await server.wait_closed()
    async with _client() as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(url)


async def test_https_through_start_tls(tmp_path):
    """A TLS upstream: the certificate is checked (an untrusted one is a ``ConnectError``) and the
    body arrives whole through the TLS transport ``start_tls`` put under the same connection."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(cert, key)
    body = b'{"ok": 1}\n' * 20_000

    async def handler(reader, writer):
        await _request_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=served)
    port = server.sockets[0].getsockname()[1]
    trusting = ssl.create_default_context(cafile=str(cert))
    async with server:
        async with httpx.AsyncClient(transport=transport(limits=LIMITS, ssl_context=trusting)) as client:
            response = await client.get(f"https://localhost:{port}/")
        assert response.status_code == 200 and response.content == body
        async with httpx.AsyncClient(transport=transport(limits=LIMITS, ssl_context=ssl.create_default_context())) as client:
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await client.get(f"https://localhost:{port}/")
