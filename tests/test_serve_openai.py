"""``semroute serve``'s OpenAI API through the ``openai`` SDK, and the OpenAI-compatible backend.

The backend is tested against a real OpenAI-compatible server: a second gateway's ``/v1``
(itself in front of FakeOllama), so pools mixing Ollama and OpenAI instances run for real.
"""

from __future__ import annotations

import threading

import httpx
import openai
import pytest

from gateway_kit import LARGE, SMALL, Gateway, tiers_at
from semroute import BackendProtocolError, BackendUnavailable, Message
from semroute.backends import Pool
from semroute.backends.kinds import backend_for
from semroute.backends.openai import OpenAIBackend
from semroute.server import ServerSettings
from semroute.testing import FakeOllama

FAKE_MODELS = (SMALL, LARGE)


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    with FakeOllama(FAKE_MODELS) as fake:
        gw = Gateway([fake.url], tmp_path_factory.mktemp("openai-cache"))
        yield fake, gw
        gw.stop()


@pytest.fixture
def fake(shared):
    shared[0].reset_stats()
    yield shared[0]
    shared[0].clear_fault()
    shared[0].resume()


@pytest.fixture
def client(shared):
    with openai.OpenAI(base_url=f"{shared[1].url}/v1", api_key="unused", max_retries=0) as sdk:
        yield sdk


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_chat_completion_miss_then_hit_with_headers(client, fake):
    raw = client.chat.completions.with_raw_response.create(model="semroute", messages=user("Can I turn right on red?"))
    first = raw.parse()
    again = client.chat.completions.with_raw_response.create(model="semroute", messages=user("Can I turn right on red?"))
    assert first.choices[0].message.content and first.choices[0].finish_reason == "stop"
    assert first.usage.completion_tokens > 0 and first.model == "semroute"
    assert raw.headers["x-semroute-source"] == "small" and again.headers["x-semroute-source"] == "exact"
    assert again.parse().choices[0].message.content == first.choices[0].message.content
    assert fake.stats().count("chat") == 1


def test_streaming_with_usage(client, fake):
    stream = client.chat.completions.create(model="semroute", messages=user("Explain roundabouts"), stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Explain roundabouts" in text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    hit = list(client.chat.completions.create(model="semroute", messages=user("Explain roundabouts"), stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in hit if c.choices) == text


def test_models_and_sampling_options_reach_the_model(client, fake, shared):
    assert [m.id for m in client.models.list()] == ["semroute", SMALL, LARGE]
    history = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"},
               {"role": "assistant", "content": "hello"}, {"role": "user", "content": "what now?"}]
    done = client.chat.completions.create(model=SMALL, messages=history, max_tokens=3)
    # FakeOllama honours num_predict: max_tokens reached it as Ollama's option
    assert done.usage.completion_tokens == 3


def test_errors_in_openais_shape(client, fake, shared):
    with pytest.raises(openai.NotFoundError) as unknown:
        client.chat.completions.create(model="gpt-nope", messages=user("hi"))
    assert unknown.value.body["code"] == "model_not_found" and unknown.value.body["param"] == "model"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="semroute", messages=user("hi"), n=2)
    bad = httpx.post(f"{shared[1].url}/v1/chat/completions", content=b"[1,", headers={"content-type": "application/json"})
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    assert fake.stats().count("chat") == 0


def test_busy_is_429_with_retry_after(tmp_path, fake):
    gw = Gateway([fake.url], tmp_path / "cache", settings=ServerSettings(max_inflight=1))
    fake.pause()
    sdk = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="unused", max_retries=0)
    held = threading.Thread(target=lambda: httpx.post(f"{gw.url}/v1/chat/completions", timeout=30, json={
        "model": "semroute", "messages": user("the held one")}))
    held.start()
    try:
        fake.wait_until(lambda s: s.count("chat") == 1)
        with pytest.raises(openai.RateLimitError) as busy:
            sdk.chat.completions.create(model="semroute", messages=user("Am I next?"))
        assert busy.value.response.headers["retry-after"] == "1"
        assert busy.value.body["code"] == "server_overloaded"
    finally:
        fake.resume()
        held.join(timeout=30)
        sdk.close()
        gw.stop()


def test_openai_backend_against_a_real_openai_compatible_server(shared):
    backend = OpenAIBackend(f"{shared[1].url}")
    try:
        assert backend.health() and backend.models() == ["semroute", SMALL, LARGE]
        history = [Message("user", "hi"), Message("assistant", "hello"), Message("user", "backend sync question")]
        done = backend.chat(SMALL, history, options={"num_predict": 2})  # history: uncached, options reach the model
        assert done.completion_tokens == 2 and done.instance == backend.name
        chunks = list(backend.stream(SMALL, [Message("user", "backend stream question")]))
        assert chunks[-1].done and chunks[-1].completion_tokens > 0
        assert "backend stream question" in "".join(c.text for c in chunks)
        with pytest.raises(BackendProtocolError) as missing:
            backend.chat("no-such-model", [Message("user", "x")])
        assert missing.value.status == 404
    finally:
        backend.close()
    with pytest.raises(BackendUnavailable):
        OpenAIBackend("http://127.0.0.1:9").chat(SMALL, [Message("user", "x")])


async def test_a_pool_mixing_ollama_and_openai_instances(shared):
    fake, front = shared
    with FakeOllama(FAKE_MODELS) as direct:
        urls = [direct.url, f"openai+{front.url}"]
        pool = Pool([backend_for(u) for u in urls], strategy="round_robin")
        try:
            answers = [await pool.achat(SMALL, [Message("user", f"mixed pool question {i}")]) for i in range(4)]
            streamed = [c async for c in pool.astream(SMALL, [Message("user", "mixed stream")])]
            vectors = await pool.aembed(SMALL, ["embed me"])
        finally:
            await pool.aclose()
        assert {a.instance for a in answers} == {direct.url, f"openai+{front.url}"}
        assert streamed[-1].done and len(vectors[0]) == 384
        assert direct.stats().count("chat") >= 2


def test_the_gateway_serves_through_an_openai_upstream(tmp_path, shared):
    front = shared[1]
    gw = Gateway([], tmp_path / "cache", tiers=tiers_at(f"openai+{front.url}"), backend_factory=backend_for)
    try:
        first = httpx.post(f"{gw.url}/api/chat", json={"model": "semroute", "stream": False,
                                                       "messages": user("through two gateways")})
        assert first.status_code == 200 and "through two gateways" in first.json()["message"]["content"]
        assert first.headers["x-semroute-instance"] == f"openai+{front.url}"
    finally:
        gw.stop()


def test_instance_url_kinds():
    from semroute import ConfigError
    from semroute.backends.ollama import OllamaBackend

    assert isinstance(backend_for("http://127.0.0.1:11434"), OllamaBackend)
    assert isinstance(backend_for("ollama+http://127.0.0.1:11434"), OllamaBackend)
    openai_backend = backend_for("openai+http://127.0.0.1:8000")
    assert isinstance(openai_backend, OpenAIBackend) and openai_backend.base == "http://127.0.0.1:8000/v1"
    assert openai_backend.name == "openai+http://127.0.0.1:8000"
    with pytest.raises(ConfigError, match="unknown backend kind"):
        backend_for("grpc+http://127.0.0.1:1")
    with pytest.raises(ConfigError):
        OpenAIBackend("ftp://nowhere")
