"""Streamed answers relayed in groups: the lines that arrived in one upstream read go on together.

``OllamaBackend.astream_groups`` is tested against an upstream that writes its NDJSON in chosen
clumps (several lines in one write, a line cut across two writes, an error line after chunks),
and the gateway's proxy path (a named model, ``cache_models = false``) through the official
``ollama`` client and the ``openai`` SDK: every token arrives once, whole and in order, and a
client that leaves still stops the upstream stream.
"""

from __future__ import annotations

import asyncio
import json
import threading

import httpx
import openai
import pytest
from gateway_kit import SMALL, Gateway, tiers_at, wait_for

from semroute import BackendProtocolError, Message
from semroute.backends.ollama import OllamaBackend
from semroute.server import ServerSettings
from semroute.testing import FakeOllama, Timing

WORDS = [f"w{i}" for i in range(120)]
REPLY = " ".join(WORDS)


def line(text: str, done: bool = False, **extra: object) -> bytes:
    body = {"model": SMALL, "created_at": "2026-12-04T00:00:00Z", "message": {"role": "assistant", "content": text},
            "done": done, **extra}
    return json.dumps(body).encode() + b"\n"


FINAL = line("", True, done_reason="stop", prompt_eval_count=3, eval_count=5)


class ClumpyOllama:
    """An Ollama look-alike that streams ``/api/chat`` as the given writes, pausing between
    them (so each write is its own read), and answers the health probes. In a thread."""

    def __init__(self, writes: list[bytes], pause_s: float = 0.05) -> None:
        self.writes, self.pause_s = writes, pause_s
        self.loop = asyncio.new_event_loop()
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.tasks: set[asyncio.Task[None]] = set()  # connections still answering (a stream may sleep between writes)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> ClumpyOllama:
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self.loop).result(10)
        return self

    @property
    def url(self) -> str:
        assert self.server is not None
        return "http://127.0.0.1:%d" % self.server.sockets[0].getsockname()[1]

    def __exit__(self, *exc_info: object) -> None:
        server = self.server
        assert server is not None

        async def shut() -> None:
            server.close()
            for writer in list(self.writers):
                writer.close()
            for task in list(self.tasks):
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            await server.wait_closed()
            await asyncio.sleep(0.01)  # the transports finish closing

        asyncio.run_coroutine_threadsafe(shut(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            await self._answer(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client left
        finally:
            writer.close()
            self.writers.discard(writer)
            self.tasks.discard(task)

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next((int(h.split(b":")[1]) for h in head.lower().split(b"\r\n") if h.startswith(b"content-length")), 0)
        await reader.readexactly(length)
        path = head.split(b" ")[1]
        if path == b"/api/chat":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\nconnection: close\r\n\r\n")
            for data in self.writes:
                writer.write(data)
                await writer.drain()
                await asyncio.sleep(self.pause_s)
        else:
            models = [{"name": SMALL, "model": SMALL}]
            body = json.dumps({"version": "0.9.0"} if path == b"/api/version" else {"models": models}).encode()
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n"
                         b"content-length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()


async def groups_from(writes: list[bytes]) -> list[list]:
    with ClumpyOllama(writes) as upstream:
        backend = OllamaBackend(upstream.url)
        try:
            return [g async for g in backend.astream_groups(SMALL, [Message("user", "hi")])]
        finally:
            await backend.aclose()


async def test_lines_read_together_come_as_one_group_in_order():
    groups = await groups_from([line("a") + line(" b") + line(" c"), line(" d"), FINAL])
    texts = [[c.text for c in g] for g in groups]
    assert [t for g in texts for t in g] == ["a", " b", " c", " d", ""]
    assert max(len(g) for g in groups) >= 3  # the three lines of one write are one read, one group
    assert groups[-1][-1].done and groups[-1][-1].completion_tokens == 5
    assert all(g for g in groups) and [c.done for g in groups for c in g].count(True) == 1


async def test_a_line_cut_across_reads_is_parsed_once_whole():
    one, two = line("first"), line(" second")
    groups = await groups_from([one + two[:7], two[7:] + FINAL[:10], FINAL[10:]])
    assert [c.text for g in groups for c in g] == ["first", " second", ""]


async def test_chunks_before_an_error_line_in_the_same_read_still_arrive():
    seen = []
    with ClumpyOllama([line("kept") + line(" too") + b'{"error": "model crashed"}\n']) as upstream:
        backend = OllamaBackend(upstream.url)
        with pytest.raises(BackendProtocolError, match="model crashed"):
            async for group in backend.astream_groups(SMALL, [Message("user", "hi")]):
                seen.extend(c.text for c in group)
        await backend.aclose()
    assert seen == ["kept", " too"]


async def test_a_stream_without_a_final_line_is_a_protocol_error_and_astream_flattens_groups():
    with pytest.raises(BackendProtocolError, match="without a final chunk"):
        await groups_from([line("a") + line(" b")])
    with ClumpyOllama([line("a") + line(" b"), FINAL]) as upstream:
        backend = OllamaBackend(upstream.url)
        chunks = [c async for c in backend.astream(SMALL, [Message("user", "hi")])]
        await backend.aclose()
    assert [c.text for c in chunks] == ["a", " b", ""] and chunks[-1].done


# -- through the gateway's proxy path ------------------------------------------------------------


@pytest.fixture
def proxy(tmp_path):
    """A gateway with ``cache_models = false`` in front of a FakeOllama answering ``REPLY`` at once."""
    with FakeOllama([SMALL], reply=lambda model, prompt: REPLY) as fake:
        gw = Gateway([fake.url], tmp_path / "cache", settings=ServerSettings(cache_models=False),
                     tiers={"small": tiers_at(fake.url)["small"]})
        yield fake, gw
        gw.stop()


def test_the_ollama_client_gets_every_token_whole_and_in_order(proxy):
    _, gw = proxy
    parts = list(gw.ollama().chat(model=SMALL, messages=[{"role": "user", "content": "count"}], stream=True))
    assert [p.message.content for p in parts[:-1]] == [w if i == 0 else f" {w}" for i, w in enumerate(WORDS)]
    assert parts[-1].done and parts[-1].eval_count == len(WORDS) and not any(p.done for p in parts[:-1])
    generated = list(gw.ollama().generate(model=SMALL, prompt="count", stream=True))
    assert "".join(p.response for p in generated) == REPLY and generated[-1].done


def test_the_openai_sdk_gets_every_token_in_order_with_usage(proxy):
    _, gw = proxy
    with openai.OpenAI(base_url=f"{gw.url}/v1", api_key="unused", max_retries=0) as sdk:
        chunks = list(sdk.chat.completions.create(model=SMALL, messages=[{"role": "user", "content": "count"}],
                                                  stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == REPLY
    assert [c.choices[0].finish_reason for c in chunks if c.choices].count("stop") == 1
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == len(WORDS)


def test_lines_that_arrive_together_leave_as_valid_ndjson(tmp_path):
    writes = [line("a") + line(" b") + line(" c"), line(" d") + line(" e") + FINAL]
    with ClumpyOllama(writes) as upstream:
        gw = Gateway([upstream.url], tmp_path / "cache", settings=ServerSettings(cache_models=False),
                     tiers={"small": tiers_at(upstream.url)["small"]})
        try:
            body = {"model": SMALL, "messages": [{"role": "user", "content": "hi"}]}
            with httpx.stream("POST", f"{gw.url}/api/chat", json=body, timeout=30) as r:
                lines = [json.loads(raw) for raw in r.iter_lines() if raw]
                assert r.headers["x-semroute-source"] == "small"
            parts = list(gw.ollama().chat(model=SMALL, messages=[{"role": "user", "content": "hi"}], stream=True))
        finally:
            gw.stop()
    assert [x["message"]["content"] for x in lines] == ["a", " b", " c", " d", " e", ""]
    assert [x["done"] for x in lines] == [False] * 5 + [True] and lines[-1]["eval_count"] == 5
    assert all(x["model"] == SMALL for x in lines)
    assert "".join(p.message.content for p in parts) == "a b c d e" and parts[-1].done


def test_a_client_leaving_a_proxied_stream_stops_the_upstream_stream(tmp_path):
    with FakeOllama([SMALL], timing=Timing(token_delay_ms=400)) as fake:
        gw = Gateway([fake.url], tmp_path / "cache", settings=ServerSettings(cache_models=False),
                     tiers={"small": tiers_at(fake.url)["small"]})
        try:
            body = {"model": SMALL, "messages": [{"role": "user", "content": "a slow story"}]}
            with httpx.stream("POST", f"{gw.url}/api/chat", json=body) as r:
                assert json.loads(next(r.iter_lines()))["done"] is False
            pool = gw.router.pipeline.pool("small")
            wait_for(lambda: gw.service.inflight == 0 and all(s.in_flight == 0 for s in pool.states()),
                     what="the stream's slots released")
            assert fake.stats().count("chat", completed=True) == 0  # it never ran to the end
        finally:
            gw.stop()


async def test_many_concurrent_streams_on_one_backend_complete_and_close_every_connection():
    # 150 streams at once: more than one stream client's share, so more clients open beside the first.
    with FakeOllama([SMALL], timing=Timing(token_delay_ms=20)) as fake:
        backend = OllamaBackend(fake.url)

        async def one(i: int) -> str:
            return "".join([c.text async for c in backend.astream(SMALL, [Message("user", f"q{i}")])])

        texts = await asyncio.gather(*(one(i) for i in range(150)))
        assert all(f"q{i}" in text for i, text in enumerate(texts))
        assert fake.stats().count("chat", completed=True) == 150
        await backend.aclose()
        wait_for(lambda: fake.stats().open_connections == 0, what="every upstream connection closed")


def test_tagging_a_chunk_keeps_every_other_field():
    import dataclasses

    from semroute.types import Chunk

    values = {"text": "t", "done": True, "model": "m", "instance": "i", "prompt_tokens": 3,
              "completion_tokens": 4, "source": "", "similarity": 0.5}
    assert set(values) == {f.name for f in dataclasses.fields(Chunk)}  # a new field must be listed here
    tagged = Chunk(**values).with_source("small")
    assert tagged == Chunk(**{**values, "source": "small"})
