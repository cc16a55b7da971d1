"""FakeOllama over real HTTP, driven by the real ``ollama`` client (and raw httpx for the wire)."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import ollama
import pytest

from semroute.errors import ConfigError
from semroute.testing import Capacity, FakeOllama, Fault, Timing, answer_text
from semroute.testing.fleet import FakeFleet, InstanceSpec

SMALL, LARGE = "llama3.2:3b", "llama3.1:8b"
USER = [{"role": "user", "content": "What is the speed limit in the city?"}]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def client(fake_ollama):
    with ollama.Client(fake_ollama.url) as c:
        yield c


def _in_thread(fn):
    """Run ``fn`` in a thread; returns a join() that gives its result or raises its error."""
    box: dict[str, object] = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the test thread
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def join(timeout: float = 10.0):
        thread.join(timeout)
        assert not thread.is_alive(), "request did not finish"
        if "error" in box:
            raise box["error"]  # type: ignore[misc]
        return box["value"]

    return join


# -- the API as the ollama client sees it ---------------------------------------------------


def test_chat_non_streaming_is_deterministic_with_ollama_fields(client):
    first = client.chat(SMALL, USER)
    second = client.chat(SMALL, USER)
    assert first.message.content == second.message.content == answer_text(SMALL, USER[0]["content"])
    assert first.message.content.startswith(f"[{SMALL}] answer to: What is the speed limit")
    assert first.message.role == "assistant" and first.model == SMALL
    assert first.done is True and first.done_reason == "stop"
    assert first.eval_count == len(first.message.content.split()) and first.prompt_eval_count == 8
    for name in ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration"):
        assert isinstance(getattr(first, name), int) and getattr(first, name) >= 0
    assert first.created_at.endswith("Z")


def test_models_answer_differently(client):
    assert client.chat(SMALL, USER).message.content != client.chat(LARGE, USER).message.content


def test_chat_streams_word_by_word_and_ends_with_counts(client):
    parts = list(client.chat(SMALL, USER, stream=True))
    assert all(p.done is False for p in parts[:-1]) and parts[-1].done is True
    words = [p.message.content for p in parts[:-1]]
    assert len(words) > 5 and "".join(words) == answer_text(SMALL, USER[0]["content"])
    assert parts[-1].message.content == "" and parts[-1].eval_count == len(words)
    assert parts[-1].done_reason == "stop" and parts[-1].total_duration >= parts[-1].eval_duration


def test_stream_is_ndjson_on_the_wire(fake_ollama):
    body = {"model": SMALL, "messages": USER}  # no "stream": Ollama streams by default
    with httpx.stream("POST", f"{fake_ollama.url}/api/chat", json=body) as response:
        assert response.headers["content-type"] == "application/x-ndjson"
        assert response.headers["transfer-encoding"] == "chunked"
        lines = [json.loads(line) for line in response.iter_lines() if line]
    assert lines[-1]["done"] is True and {"eval_count", "prompt_eval_count"} <= set(lines[-1])
    assert all(line["done"] is False and "created_at" in line for line in lines[:-1])


def test_generate_streaming_and_not(client):
    whole = client.generate(LARGE, "Tell me a joke", stream=False)
    assert whole.response == answer_text(LARGE, "Tell me a joke") and whole.done_reason == "stop"
    assert whole.context and len(whole.context) == whole.eval_count
    parts = list(client.generate(LARGE, "Tell me a joke", stream=True))
    assert "".join(p.response for p in parts) == whole.response and parts[-1].done


def test_num_predict_truncates_with_reason_length(client):
    response = client.chat(SMALL, USER, options={"num_predict": 3})
    assert response.eval_count == 3 and response.done_reason == "length"
    assert response.message.content == f"[{SMALL}] answer to:"


def test_empty_chat_loads_the_model(client):
    response = client.chat(SMALL, [])
    assert response.done and response.done_reason == "load" and response.message.content == ""


def test_embed_gives_deterministic_unit_vectors(client):
    texts = ["speed limit in the city", "speed limit in the city centre", "chocolate cake recipe"]
    result = client.embed(SMALL, texts)
    again = client.embed(SMALL, texts[0])
    vectors = result.embeddings
    assert len(vectors) == 3 and all(len(v) == 384 for v in vectors)
    assert all(math.isclose(math.fsum(x * x for x in v), 1.0, rel_tol=1e-9) for v in vectors)
    assert list(again.embeddings[0]) == list(vectors[0])

    def cos(a, b):
        return math.fsum(x * y for x, y in zip(a, b))

    assert cos(vectors[0], vectors[1]) > 0.7 and cos(vectors[0], vectors[2]) < 0.3


def test_tags_ps_version_and_root(fake_ollama, client):
    assert [m.model for m in client.list().models] == [SMALL, LARGE]
    assert client.list().models[0].details.family == "llama"
    assert client.ps().models == []
    client.chat(LARGE, USER)
    loaded = client.ps().models
    assert [m.model for m in loaded] == [LARGE] and loaded[0].expires_at is not None
    assert httpx.get(f"{fake_ollama.url}/api/version").json() == {"version": "0.9.0"}
    assert httpx.get(fake_ollama.url).text == "Ollama is running"
    head = httpx.head(fake_ollama.url)
    assert head.status_code == 200 and head.content == b""


def test_unknown_model_is_404_like_ollama(client, fake_ollama):
    for name in ("mistral:7b", "llama3.2"):  # untagged means :latest, which is not pulled
        with pytest.raises(ollama.ResponseError) as info:
            client.chat(name, USER)
        assert info.value.status_code == 404
        assert info.value.error == f'model "{name}" not found, try pulling it first'
    with pytest.raises(ollama.ResponseError) as info:
        list(client.chat("mistral:7b", USER, stream=True))
    assert info.value.status_code == 404
    assert fake_ollama.stats().count(completed=True) == 0


def test_bad_requests_get_ollama_style_errors(fake_ollama):
    url = fake_ollama.url
    bad_json = httpx.post(f"{url}/api/chat", content=b"{not json")
    assert bad_json.status_code == 400 and "error" in bad_json.json()
    no_model = httpx.post(f"{url}/api/chat", json={"messages": USER})
    assert no_model.status_code == 400 and no_model.json() == {"error": "model is required"}
    bad_input = httpx.post(f"{url}/api/embed", json={"model": SMALL, "input": 3})
    assert bad_input.status_code == 400
    assert httpx.get(f"{url}/api/nothing").status_code == 404
    assert httpx.get(f"{url}/api/chat").status_code == 405
    with socket.create_connection(("127.0.0.1", fake_ollama.port)) as raw:
        raw.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        assert raw.recv(100).startswith(b"HTTP/1.1 400 ")
    assert httpx.get(url).text == "Ollama is running"  # the server shrugged it off


# -- capacity -------------------------------------------------------------------------------


def test_503_when_parallel_slots_and_queue_are_full():
    with FakeOllama([SMALL], capacity=Capacity(max_parallel=1, queue=1, retry_after_s=2)) as fake:
        fake.pause()
        with ollama.Client(fake.url) as a, ollama.Client(fake.url) as b, ollama.Client(fake.url) as c:
            running = _in_thread(lambda: a.chat(SMALL, USER))
            fake.wait_until(lambda s: s.active == 1)
            queued = _in_thread(lambda: b.chat(SMALL, USER))
            fake.wait_until(lambda s: s.pending == 2)
            with pytest.raises(ollama.ResponseError) as info:
                c.chat(SMALL, USER)
            assert info.value.status_code == 503 and "server busy" in info.value.error
            raw = httpx.post(f"{fake.url}/api/chat", json={"model": SMALL, "messages": USER})
            assert raw.status_code == 503 and raw.headers["retry-after"] == "2"
            fake.resume()
            assert running().message.content == queued().message.content
        stats = fake.stats()
    assert stats.rejected == 2 and stats.max_concurrency == 1 and stats.max_pending == 2
    assert stats.count("chat", SMALL, completed=True) == 2


def test_max_concurrency_is_bounded_by_max_parallel():
    with FakeOllama([SMALL], capacity=Capacity(max_parallel=3, queue=10)) as fake:
        fake.pause()
        joins = [
            _in_thread(lambda: httpx.post(f"{fake.url}/api/chat", json={"model": SMALL, "messages": USER}))
            for _ in range(6)
        ]
        fake.wait_until(lambda s: s.pending == 6 and s.active == 3)
        fake.resume()
        assert all(join().status_code == 200 for join in joins)
        assert fake.stats().max_concurrency == 3


async def test_hundreds_of_concurrent_streams():
    import asyncio

    n = 200
    timing = Timing(ttft_ms=50, token_delay_ms=5)
    with FakeOllama([SMALL], capacity=Capacity(max_parallel=n, queue=0), timing=timing, extra_words=2) as fake:
        client = ollama.AsyncClient(fake.url, limits=httpx.Limits(max_connections=None))  # httpx caps at 100

        async def one(i: int) -> str:
            parts = await client.chat(SMALL, [{"role": "user", "content": f"question {i}"}], stream=True)
            return "".join([p.message.content async for p in parts])

        try:
            texts = await asyncio.gather(*(one(i) for i in range(n)))  # one event loop, 200 sockets
        finally:
            await client.close()
        assert texts == [answer_text(SMALL, f"question {i}", extra_words=2) for i in range(n)]
        stats = fake.stats()
    assert stats.count("chat", completed=True) == n and stats.rejected == 0
    assert stats.max_concurrency > n // 4  # they really overlapped


# -- faults ---------------------------------------------------------------------------------


def test_error_fault_counts_down_then_heals(fake_ollama, client):
    fake_ollama.set_fault("error", count=2)
    for _ in range(2):
        with pytest.raises(ollama.ResponseError) as info:
            client.chat(SMALL, USER)
        assert info.value.status_code == 500
    assert client.chat(SMALL, USER).done and fake_ollama.fault is None
    assert fake_ollama.stats().fault_count("error") == 2


def test_fault_after_and_endpoints(fake_ollama, client):
    fake_ollama.set_fault(Fault("error", status=502, after=1, endpoints=frozenset({"chat"})))
    assert client.chat(SMALL, USER).done  # let through
    assert client.generate(SMALL, "hi").done  # other endpoint untouched
    assert client.list().models  # metadata untouched
    with pytest.raises(ollama.ResponseError) as info:
        client.chat(SMALL, USER)
    assert info.value.status_code == 502
    fake_ollama.clear_fault()
    assert client.chat(SMALL, USER).done


def test_busy_fault_is_503(fake_ollama, client):
    fake_ollama.set_fault("busy", count=1)
    with pytest.raises(ollama.ResponseError) as info:
        list(client.chat(SMALL, USER, stream=True))
    assert info.value.status_code == 503
    assert client.chat(SMALL, USER).done


def test_hang_fault_never_answers(fake_ollama):
    fake_ollama.set_fault("hang")
    with ollama.Client(fake_ollama.url, timeout=0.3) as impatient:
        with pytest.raises(httpx.ReadTimeout):  # the client gave up: the fake sent nothing at all
            impatient.chat(SMALL, USER)
    stats = fake_ollama.wait_until(lambda s: s.fault_count("hang") == 1)
    assert stats.count("chat", completed=True) == 0


def test_drop_fault_cuts_the_stream_after_n_chunks(fake_ollama, client):
    fake_ollama.set_fault("drop", after_chunks=3, count=2)
    got = []
    with pytest.raises(httpx.RemoteProtocolError):
        for part in client.chat(SMALL, USER, stream=True):
            got.append(part.message.content)
    assert got == [f"[{SMALL}]", " answer", " to:"]
    with pytest.raises(httpx.RemoteProtocolError):  # not streamed: closed before any response
        client.chat(SMALL, USER)
    assert client.chat(SMALL, USER).done
    assert fake_ollama.stats().count("chat", completed=True) == 1


def test_refuse_stops_listening_until_cleared(fake_ollama, client):
    url = fake_ollama.url
    assert client.chat(SMALL, USER).done  # leaves a keep-alive connection in the pool
    fake_ollama.set_fault("refuse")
    with pytest.raises(ConnectionError):
        client.chat(SMALL, USER)
    with pytest.raises(httpx.ConnectError):
        httpx.get(url)
    fake_ollama.clear_fault()
    assert fake_ollama.url == url and client.chat(SMALL, USER).done


def test_fault_validation():
    with pytest.raises(ConfigError):
        Fault("explode")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        Fault("refuse", count=1)
    with pytest.raises(ConfigError):
        Fault("error", status=200)
    with pytest.raises(ConfigError):
        Fault("error", endpoints=frozenset({"nope"}))
    with pytest.raises(ConfigError):
        Timing(latency_ms=-1)
    with pytest.raises(ConfigError):
        Capacity(max_parallel=0)
    with pytest.raises(ConfigError):
        FakeOllama([])


# -- lifecycle ------------------------------------------------------------------------------


def test_stop_ends_hanging_and_streaming_clients():
    fake = FakeOllama([SMALL], timing=Timing(token_delay_ms=200)).start()
    url = fake.url
    streaming = _in_thread(lambda: list(ollama.Client(url).chat(SMALL, USER, stream=True)))
    fake.wait_until(lambda s: s.active == 1)
    fake.set_fault("hang")
    hanging = _in_thread(lambda: ollama.Client(url).chat(SMALL, USER))
    fake.wait_until(lambda s: s.fault_count("hang") == 1)
    fake.stop()  # returns although two clients are mid-request (pytest-timeout would catch a hang)
    assert not fake.running
    with pytest.raises(httpx.RemoteProtocolError):
        streaming()
    with pytest.raises(httpx.RemoteProtocolError):
        hanging()
    with pytest.raises(httpx.ConnectError):
        httpx.get(url)
    fake.stop()  # idempotent


def test_fleet_speeds_capacities_and_faults():
    specs = [
        InstanceSpec(speed=1),
        InstanceSpec(speed=4, capacity=Capacity(max_parallel=1, queue=0)),
        InstanceSpec(fault=Fault("error", count=1)),
    ]
    with FakeFleet(specs, timing=Timing(latency_ms=10)) as fleet:
        assert len(set(fleet.urls)) == 3 and len(fleet) == 3
        assert fleet[1].timing.latency_ms == 40 and fleet[1].capacity.max_parallel == 1
        with ollama.Client(fleet.urls[2]) as c:
            with pytest.raises(ollama.ResponseError):
                c.chat(SMALL, USER)
            assert c.chat(SMALL, USER).done
        assert fleet.count("chat") == 2 and fleet.count("chat", completed=True) == 1
    assert all(not fake.running for fake in fleet)


def test_cli_prints_url_and_stops_on_sigterm():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [
        sys.executable,
        "-m",
        "semroute.testing.fake_ollama",
        "--port",
        "0",
        "--models",
        "tiny:1b",
        "--latency-ms",
        "1",
        "--max-parallel",
        "2",
        "--queue",
        "3",
    ]
    with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) as proc:
        try:
            url = proc.stdout.readline().strip()
            assert url.startswith("http://127.0.0.1:")
            assert [m["name"] for m in httpx.get(f"{url}/api/tags").json()["models"]] == ["tiny:1b"]
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0 and "stopped after 1 requests" in err
