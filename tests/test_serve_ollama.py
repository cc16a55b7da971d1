"""``semroute serve``'s Ollama API, through the official ``ollama`` client, over real HTTP, in front of FakeOllama."""

from __future__ import annotations

import asyncio
import json
import socket
import threading

import httpx
import numpy as np
import ollama
import pytest

from gateway_kit import LARGE, SMALL, Gateway, WordEmbedder, wait_for
from semroute.server import ServerSettings
from semroute.testing import FakeOllama, Timing

FAKE_MODELS = (SMALL, LARGE)

CITY = "What is the speed limit in the city?"


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One FakeOllama and one default gateway for the tests that need nothing special (each
    uses questions of its own, and counts from fresh stats)."""
    with FakeOllama(FAKE_MODELS) as fake:
        gw = Gateway([fake.url], tmp_path_factory.mktemp("shared-cache"))
        yield fake, gw
        gw.stop()


@pytest.fixture
def fake_ollama(shared):
    fake = shared[0]
    fake.reset_stats()
    yield fake
    fake.clear_fault()
    fake.resume()
    fake.timing = Timing()


@pytest.fixture
def gateway(tmp_path, shared):
    """``gateway()``: the shared one; ``gateway(settings=...)``: a fresh one in front of the same fake."""
    started: list[Gateway] = []

    def make(**kwargs) -> Gateway:
        if not kwargs:
            return shared[1]
        gw = Gateway([shared[0].url], tmp_path / f"cache{len(started)}", **kwargs)
        started.append(gw)
        return gw

    yield make
    for gw in started:
        gw.stop()


def chats(fake) -> int:
    return fake.stats().count("chat")


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_sync_client_miss_then_exact_hit(gateway, fake_ollama):
    gw = gateway()
    client = gw.ollama()
    first = client.chat(model="semroute", messages=user("How do I renew my driving licence?"))
    again = client.chat(model="semroute", messages=user("How do I renew my driving licence?"))
    assert first.message.content and again.message.content == first.message.content
    assert first.done and first.eval_count > 0
    assert chats(fake_ollama) == 1  # the second answer came from the cache


def test_headers_say_who_answered(gateway, fake_ollama):
    gw = gateway()
    body = {"model": "semroute", "messages": user(CITY), "stream": False}
    miss = httpx.post(f"{gw.url}/api/chat", json=body)
    hit = httpx.post(f"{gw.url}/api/chat", json=body)
    near = httpx.post(f"{gw.url}/api/chat", json={**body, "messages": user("what is the speed limit in the city please")})
    assert miss.headers["x-semroute-source"] == "small" and miss.headers["x-semroute-tier"] == "small"
    assert miss.headers["x-semroute-instance"].startswith("http://127.0.0.1:")
    assert miss.headers["x-semroute-model"] == SMALL
    assert hit.headers["x-semroute-source"] == "exact"
    assert near.headers["x-semroute-source"] == "semantic"
    assert 0.85 <= float(near.headers["x-semroute-similarity"]) < 1.0
    assert near.json()["message"]["content"] == miss.json()["message"]["content"]
    assert set(miss.json()) >= {"model", "created_at", "message", "done", "eval_count", "prompt_eval_count"}


def test_server_timing_breaks_a_routed_answer_into_steps(gateway, fake_ollama):
    gw = gateway()
    body = {"model": "semroute", "messages": user("How long is a learner permit valid?"), "stream": False}
    miss = httpx.post(f"{gw.url}/api/chat", json=body)
    hit = httpx.post(f"{gw.url}/v1/chat/completions", json={**body, "model": "semroute"})
    steps = {name: float(dur.removeprefix("dur=")) for name, dur in
             (part.strip().split(";") for part in miss.headers["server-timing"].split(","))}
    assert {"embed", "llm", "total"} <= set(steps) and all(ms >= 0 for ms in steps.values())
    assert steps["total"] >= steps["embed"] + steps["llm"]
    assert hit.headers["x-semroute-source"] == "exact" and hit.headers["server-timing"].startswith("total;dur=")


def test_streaming_chat_and_generate(gateway, fake_ollama):
    gw = gateway()
    client = gw.ollama()
    parts = list(client.chat(model="semroute", messages=user("Tell me about cats"), stream=True))
    assert len(parts) > 2 and parts[-1].done and not any(p.done for p in parts[:-1])
    streamed = "".join(p.message.content for p in parts)
    whole = client.chat(model="semroute", messages=user("Tell me about cats"))  # now an exact hit
    assert whole.message.content == streamed
    gen = list(client.generate(model="semroute", prompt="Tell me about dogs", stream=True))
    assert gen[-1].done and "".join(g.response for g in gen)
    hit = list(client.generate(model="semroute", prompt="Tell me about dogs", stream=True))
    assert len(hit) == 1 and hit[0].done and hit[0].response == "".join(g.response for g in gen)


async def test_async_client_concurrent_requests(gateway, fake_ollama):
    gw = gateway()
    client = ollama.AsyncClient(gw.url)
    # Distinct words: the test kit's word embedder scores "question number 3 ..." and "... 7 ..."
    # above the gateway's 0.85 cosine gate, so a late caller could rightly get a semantic hit.
    # ("ferries" hashed onto "parking": cosine 1.0, a right semantic hit for whichever came second)
    topics = ["parking", "tyres", "helmets", "tolls", "licences", "radar", "towing", "bridges",
              "tunnels", "signals", "bicycles", "mirrors"]
    questions = [f"question about {topic}" for topic in topics]
    vectors = WordEmbedder().embed(questions)
    assert (vectors @ vectors.T - np.eye(len(questions))).max() < 0.85  # every pair below the gate
    replies = await asyncio.gather(*(client.chat(model="semroute", messages=user(q)) for q in questions))
    for q, r in zip(questions, replies):
        assert q in r.message.content  # FakeOllama's answers echo the question: no answer went to the wrong caller
    stream = await client.generate(model="semroute", prompt="async streaming", stream=True)
    assert "".join([part.response async for part in stream])
    await client.close()


def test_a_named_tier_model_goes_to_its_tier(gateway, fake_ollama):
    gw = gateway()
    body = {"model": LARGE, "messages": user("Which lane is for overtaking?"), "stream": False}
    first = httpx.post(f"{gw.url}/api/chat", json=body)
    again = httpx.post(f"{gw.url}/api/chat", json=body)
    assert first.headers["x-semroute-tier"] == "large" and first.headers["x-semroute-model"] == LARGE
    assert fake_ollama.stats().count("chat", LARGE) == 1
    assert again.headers["x-semroute-source"] == "exact"


def test_named_models_skip_the_cache_when_turned_off(gateway, fake_ollama):
    gw = gateway(settings=ServerSettings(cache_models=False))
    client = gw.ollama()
    client.chat(model=SMALL, messages=user("Where may I park overnight?"))
    client.chat(model=SMALL, messages=user("Where may I park overnight?"))
    assert chats(fake_ollama) == 2


def test_a_conversation_with_history_skips_the_cache(gateway, fake_ollama):
    gw = gateway()
    history = [{"role": "user", "content": "What is the speed limit in town?"}, {"role": "assistant", "content": "50 km/h."},
               {"role": "user", "content": "And on the highway?"}]
    client = gw.ollama()
    client.chat(model="semroute", messages=history)
    response = httpx.post(f"{gw.url}/api/chat", json={"model": "semroute", "messages": history, "stream": False})
    assert chats(fake_ollama) == 2 and response.headers["x-semroute-source"] == "small"


def test_tags_ps_version_and_embed(gateway, fake_ollama):
    gw = gateway()
    client = gw.ollama()
    names = [m.model for m in client.list().models]
    assert names == ["semroute", SMALL, LARGE]
    client.chat(model=SMALL, messages=user("load the small model"))
    gw.router.pipeline.pool("small").check_health()  # learns what is loaded (/api/ps)
    assert SMALL in [m.model for m in client.ps().models]
    assert httpx.get(f"{gw.url}/api/version").json()["version"]
    vectors = client.embed(model=SMALL, input=["one", "two"]).embeddings
    assert len(vectors) == 2 and len(vectors[0]) == 384
    assert fake_ollama.stats().count("embed") == 1


def test_bad_requests_get_ollamas_error_shape(gateway, fake_ollama):
    gw = gateway(settings=ServerSettings(max_body_bytes=2048))
    bad_json = httpx.post(f"{gw.url}/api/chat", content=b"{not json", headers={"content-type": "application/json"})
    assert bad_json.status_code == 400 and "invalid JSON" in bad_json.json()["error"]
    with pytest.raises(ollama.ResponseError) as unknown:
        gw.ollama().chat(model="nope:1b", messages=user(CITY))
    assert unknown.value.status_code == 404 and "not found" in unknown.value.error
    big = httpx.post(f"{gw.url}/api/generate", json={"model": "semroute", "prompt": "x" * 5000})
    assert big.status_code == 413 and "limit" in big.json()["error"]
    no_model = httpx.post(f"{gw.url}/api/chat", json={"messages": user(CITY)})
    assert no_model.status_code == 400 and no_model.json() == {"error": "model is required"}
    images = httpx.post(f"{gw.url}/api/chat", json={"model": "semroute", "messages": [
        {"role": "user", "content": "what is this", "images": ["aGk="]}]})
    assert images.status_code == 400 and "images" in images.json()["error"]
    assert chats(fake_ollama) == 0


def test_an_empty_prompt_loads_like_ollama(gateway, fake_ollama):
    gw = gateway()
    body = httpx.post(f"{gw.url}/api/generate", json={"model": "semroute"}).json()
    assert body["done"] and body["done_reason"] == "load" and fake_ollama.stats().count("generate") == 0


def test_queue_full_is_ollamas_503_with_retry_after(gateway, fake_ollama):
    gw = gateway(settings=ServerSettings(max_inflight=1))
    fake_ollama.pause()
    held = threading.Thread(target=lambda: httpx.post(f"{gw.url}/api/chat", timeout=30, json={
        "model": "semroute", "messages": user("the held question"), "stream": False}))
    held.start()
    try:
        fake_ollama.wait_until(lambda s: s.count("chat") == 1)
        busy = httpx.post(f"{gw.url}/api/chat", json={"model": "semroute", "messages": user(CITY)})
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
        assert "server busy" in busy.json()["error"]
    finally:
        fake_ollama.resume()
        held.join(timeout=30)
    assert gw.service.inflight == 0


def test_a_client_disconnect_cancels_the_upstream_call(gateway, fake_ollama):
    gw = gateway()
    fake_ollama.set_fault("hang")
    body = json.dumps({"model": "semroute", "messages": user("hang on"), "stream": False}).encode()
    with socket.create_connection(("127.0.0.1", gw.server.port)) as sock:
        sock.sendall(b"POST /api/chat HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                     b"content-length: %d\r\n\r\n%s" % (len(body), body))
        during = fake_ollama.wait_until(lambda s: s.fault_count("hang") == 1).open_connections
        assert gw.service.inflight == 1
    # The client is gone: the gateway cancels its call (the pool slot comes back at once, not
    # when a model answers) and closes the upstream connection the hung request was on.
    pool = gw.router.pipeline.pool("small")
    wait_for(lambda: gw.service.inflight == 0 and all(s.in_flight == 0 for s in pool.states()),
             what="the gateway's and the pool's slots released")
    wait_for(lambda: fake_ollama.stats().open_connections < during, what="the upstream connection closed")


def test_a_stream_abandoned_midway_stops_the_upstream_stream(gateway, fake_ollama):
    gw = gateway()
    # ~12 chunks at 400 ms: the whole answer would take ~5 s, far longer than noticing the
    # disconnect takes even on a loaded machine (at 50 ms a chunk it once ran to the end first).
    fake_ollama.timing = Timing(token_delay_ms=400)
    with httpx.stream("POST", f"{gw.url}/api/chat", json={"model": "semroute", "messages": user("a slow story")}) as r:
        first = next(r.iter_lines())
        assert json.loads(first)["done"] is False
    pool = gw.router.pipeline.pool("small")
    # The gateway's slot is released as the handler ends; the pool's once the cancelled upstream
    # stream has closed, a moment later.
    wait_for(lambda: gw.service.inflight == 0 and all(s.in_flight == 0 for s in pool.states()),
             what="the stream's slots released")
    assert fake_ollama.stats().count("chat", completed=True) == 0  # it never ran to the end


def test_shutdown_drains_requests_in_flight(gateway, fake_ollama):
    gw = gateway(settings=ServerSettings())  # its own: this test stops it
    fake_ollama.pause()
    result: dict[str, httpx.Response] = {}
    caller = threading.Thread(target=lambda: result.setdefault("r", httpx.post(f"{gw.url}/api/chat", timeout=30, json={
        "model": "semroute", "messages": user("answer me before you go"), "stream": False})))
    caller.start()
    fake_ollama.wait_until(lambda s: s.count("chat") == 1)
    stopper = threading.Thread(target=gw.stop)
    stopper.start()
    port = gw.server.port

    def refused() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return True
        return False

    wait_for(refused, what="the listener closed")  # shutdown has begun, the request is still held
    assert caller.is_alive()
    fake_ollama.resume()
    caller.join(timeout=30)
    stopper.join(timeout=30)
    assert result["r"].status_code == 200 and "answer me before you go" in result["r"].json()["message"]["content"]


def test_an_upstream_failure_mid_stream_ends_with_an_error_line(gateway, fake_ollama):
    gw = gateway()
    fake_ollama.set_fault("drop", after_chunks=2, count=1)
    with httpx.stream("POST", f"{gw.url}/api/chat", json={"model": "semroute", "messages": user("drop me midway")}) as r:
        lines = [json.loads(line) for line in r.iter_lines() if line]
    assert r.status_code == 200 and lines[0]["done"] is False
    assert "error" in lines[-1] and not any(line.get("done") for line in lines)
    fake_ollama.set_fault("drop", after_chunks=2, count=1)
    with pytest.raises(ollama.ResponseError):  # the official client surfaces the error line
        list(gw.ollama().chat(model="semroute", messages=user("drop me midway"), stream=True))
    again = gw.ollama().chat(model="semroute", messages=user("drop me midway"))
    assert again.message.content  # nothing broken was cached: this one came from the model
    assert fake_ollama.stats().count("chat") == 3


@pytest.mark.reliability
def test_the_instance_header_never_shows_credentials(gateway, fake_ollama):
    from gateway_kit import tiers_at

    secret_url = fake_ollama.url.replace("http://", "http://ops:hunter2@") + "/?token=s3cret"
    gw = gateway(tiers=tiers_at(secret_url))
    reply = httpx.post(f"{gw.url}/api/chat", json={"model": "semroute", "messages": user("a credentialed host?"),
                                                   "stream": False})
    assert reply.status_code == 200, reply.text
    shown = reply.headers["x-semroute-instance"]
    assert "127.0.0.1" in shown and "hunter2" not in shown and "s3cret" not in shown and "ops" not in shown
