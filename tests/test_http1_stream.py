"""``Http1.open`` and ``OllamaBackend``'s streams over it, against FakeOllama on loopback:
chunks arrive in order and the connection is reused after a whole stream; an error status before
the first byte is typed (and fails over in a pool); a stream cut mid-way is typed, after its
chunks, and never retried; a stream left or cancelled mid-way closes its connection."""

from __future__ import annotations

import asyncio

import httpx
import orjson
import pytest

from semroute.backends import OllamaBackend, Pool, Timeout
from semroute.backends.http1 import Http1
from semroute.errors import BackendError, BackendProtocolError, BackendUnavailable
from semroute.testing import Capacity, FakeOllama, Timing, answer_text
from semroute.types import Message

SMALL = "llama3.2:3b"
QUESTION = "How do I reset my password?"
MESSAGES = [Message("user", QUESTION)]
EXPECTED = answer_text(SMALL, QUESTION)
BODY = orjson.dumps({"model": SMALL, "messages": [{"role": "user", "content": QUESTION}], "stream": True})


def _client(url: str, read_s: float = 5.0) -> Http1:
    return Http1(url, headers={"content-type": "application/json"}, connect_s=2.0, read_s=read_s)


def _texts(body: bytes) -> list[str]:
    return [orjson.loads(line)["message"]["content"] for line in body.splitlines() if line.strip()]


async def _chunks(stream) -> tuple[list[str], BaseException | None]:
    texts: list[str] = []
    try:
        async for chunk in stream:
            texts.append(chunk.text)
    except BackendError as exc:
        return texts, exc
    return texts, None


async def test_a_stream_reads_its_lines_in_order_and_reuses_the_connection(fake_ollama):
    fake_ollama.timing = Timing(token_delay_ms=5)
    client = _client(fake_ollama.url)
    for _ in range(2):
        stream = await client.open("/api/chat", BODY)
        assert stream.status == 200 and stream.headers["content-type"] == "application/x-ndjson"
        reads = []
        while (data := await stream.read()) is not None:
            reads.append(data)
        assert await stream.read() is None  # the end stays the end
        assert len(reads) > 3  # tokens 5 ms apart are separate reads, each returned as it came
        assert "".join(_texts(b"".join(reads))) == EXPECTED
        await stream.aclose()
    assert fake_ollama.stats().connections == 1
    await client.aclose()


async def test_an_error_status_comes_before_the_body_and_keeps_the_connection(fake_ollama):
    client = _client(fake_ollama.url)
    fake_ollama.set_fault("busy", count=1)
    stream = await client.open("/api/chat", BODY)
    assert stream.status == 503 and b"error" in await stream.read_all()
    await stream.aclose()
    stream = await client.open("/api/chat", BODY)
    assert "".join(_texts(await stream.read_all())) == EXPECTED
    await stream.aclose()
    assert fake_ollama.stats().connections == 1
    await client.aclose()


async def test_a_stream_cut_mid_way_is_an_httpx_error_after_its_data(fake_ollama):
    fake_ollama.set_fault("drop", after_chunks=2, count=1)
    client = _client(fake_ollama.url)
    stream = await client.open("/api/chat", BODY)
    got = b""
    with pytest.raises(httpx.RemoteProtocolError):
        while (data := await stream.read()) is not None:
            got += data
    assert len(_texts(got)) == 2
    with pytest.raises(httpx.HTTPError):  # a failed stream stays failed
        await stream.read()
    await stream.aclose()
    stream = await client.open("/api/chat", BODY)
    assert "".join(_texts(await stream.read_all())) == EXPECTED
    await stream.aclose()
    assert fake_ollama.stats().connections == 2  # the cut connection was not reused
    await client.aclose()


async def test_a_cancelled_read_and_a_stream_left_half_read_close_their_connections():
    with FakeOllama([SMALL], timing=Timing(token_delay_ms=100)) as fake:
        client = _client(fake.url)
        stream = await client.open("/api/chat", BODY)
        assert await stream.read()
        task = asyncio.ensure_future(stream.read())
        await asyncio.sleep(0.02)  # waiting on the socket between two tokens
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await stream.aclose()  # what the backend's stream does when its read is cancelled
        await asyncio.to_thread(fake.wait_until, lambda s: s.open_connections == 0 and s.active == 0)
        stream = await client.open("/api/chat", BODY)
        assert await stream.read()
        await stream.aclose()  # without reading to the end
        await asyncio.to_thread(fake.wait_until, lambda s: s.open_connections == 0 and s.active == 0)
        assert fake.stats().connections == 2
        await client.aclose()


# -- OllamaBackend.astream over the lean client ---------------------------------------------------


async def test_backend_streams_in_order_over_one_kept_alive_connection(fake_ollama):
    backend = OllamaBackend(fake_ollama.url)
    assert (await backend.achat(SMALL, MESSAGES)).text == EXPECTED
    for _ in range(3):
        texts, error = await _chunks(backend.astream(SMALL, MESSAGES))
        assert error is None and "".join(texts) == EXPECTED and texts[-1] == ""
    assert fake_ollama.stats().connections == 1  # streams share the lean client's connection with achat
    await backend.aclose()


async def test_backend_error_status_before_the_first_byte_is_typed_and_fails_over():
    with FakeOllama([SMALL], capacity=Capacity(retry_after_s=2.0)) as busy, FakeOllama([SMALL]) as good:
        backend = OllamaBackend(busy.url)
        busy.set_fault("busy", count=1)
        texts, error = await _chunks(backend.astream(SMALL, MESSAGES))
        assert texts == [] and isinstance(error, BackendUnavailable) and error.retry_after == 2.0
        busy.set_fault("error", status=404, count=1)
        texts, error = await _chunks(backend.astream(SMALL, MESSAGES))
        assert isinstance(error, BackendProtocolError) and error.status == 404
        await backend.aclose()

        busy.set_fault("busy")
        with Pool([OllamaBackend(busy.url), OllamaBackend(good.url)], strategy="round_robin") as pool:
            for _ in range(2):  # whichever instance is tried first
                texts, error = await _chunks(pool.astream(SMALL, MESSAGES))
                assert error is None and "".join(texts) == EXPECTED
        assert good.stats().count("chat", completed=True) == 2


async def test_backend_stream_cut_mid_way_is_typed_after_its_chunks_and_not_retried():
    with FakeOllama([SMALL]) as first, FakeOllama([SMALL]) as second:
        first.set_fault("drop", after_chunks=2)
        second.set_fault("drop", after_chunks=2)
        with Pool([OllamaBackend(first.url), OllamaBackend(second.url)]) as pool:
            texts, error = await _chunks(pool.astream(SMALL, MESSAGES))
        assert len(texts) == 2 and isinstance(error, BackendUnavailable)
        assert "after 2 streamed chunks" in str(error)
        assert first.stats().count("chat") + second.stats().count("chat") == 1  # never retried


async def test_backend_stream_left_mid_way_closes_its_connection_and_the_next_opens_one():
    with FakeOllama([SMALL], timing=Timing(token_delay_ms=100)) as fake:
        backend = OllamaBackend(fake.url, timeout=Timeout(total=30))
        stream = backend.astream(SMALL, MESSAGES)
        first = await stream.__anext__()
        assert first.text == f"[{SMALL}]"
        task = asyncio.ensure_future(stream.__anext__())
        await asyncio.sleep(0.02)
        task.cancel()  # a client that left while the gateway waited on the upstream
        with pytest.raises(asyncio.CancelledError):
            await task
        await stream.aclose()
        await asyncio.to_thread(fake.wait_until, lambda s: s.open_connections == 0 and s.active == 0)
        fake.timing = Timing()
        texts, error = await _chunks(backend.astream(SMALL, MESSAGES))
        assert error is None and "".join(texts) == EXPECTED
        assert fake.stats().connections == 2
        await backend.aclose()
