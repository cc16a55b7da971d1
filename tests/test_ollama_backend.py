"""OllamaBackend against FakeOllama over HTTP: answers, streams, metadata and error mapping."""

from __future__ import annotations

import socket

import pytest

import semroute.backends as backends
from semroute.backends import Backend, OllamaBackend, Timeout
from semroute.errors import (
    BackendError,
    BackendProtocolError,
    BackendTimeout,
    BackendUnavailable,
    ConfigError,
    InvalidRequest,
)
from semroute.testing import Capacity, FakeOllama, Timing, answer_text
from semroute.types import Chunk, Completion, Message

SMALL, LARGE = "llama3.2:3b", "llama3.1:8b"
QUESTION = "How do I reset my password?"
MESSAGES = [Message("system", "Be brief."), Message("user", QUESTION)]
EXPECTED = answer_text(SMALL, QUESTION)


@pytest.fixture
def backend(fake_ollama):
    with OllamaBackend(fake_ollama.url) as b:
        yield b


def _dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def _collect(iterator) -> tuple[list[Chunk], BaseException | None]:
    chunks: list[Chunk] = []
    try:
        for chunk in iterator:
            chunks.append(chunk)
    except BackendError as exc:
        return chunks, exc
    return chunks, None


async def _acollect(iterator) -> tuple[list[Chunk], BaseException | None]:
    chunks: list[Chunk] = []
    try:
        async for chunk in iterator:
            chunks.append(chunk)
    except BackendError as exc:
        return chunks, exc
    return chunks, None


# -- answers --------------------------------------------------------------------------------


def test_every_exported_name_resolves_and_settings_are_the_top_level_ones():
    import semroute.settings as settings

    for name in backends.__all__:  # lazy names included: a wrong module in the map fails here
        assert getattr(backends, name) is not None, name
    for name in ("Timeout", "PoolSettings", "RetrySettings", "QueueSettings", "BreakerSettings"):
        assert getattr(backends, name) is getattr(settings, name), name


def test_the_backend_factory_seam_carries_the_tier_timeout(fake_ollama):
    from semroute.backends.base import BackendFactory

    factory: BackendFactory = OllamaBackend
    backend = factory(fake_ollama.url, timeout=Timeout(connect=0.5, read=0.3))
    fake_ollama.set_fault("hang", count=1)
    with backend, pytest.raises(BackendTimeout):  # the read timeout given through the seam applies
        backend.chat(SMALL, MESSAGES)


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("127.0.0.1", "http://127.0.0.1:11434"),
        ("gpu-1:8080/", "http://gpu-1:8080"),
        ("https://llm.example.com", "https://llm.example.com:443"),
        ("http://[::1]", "http://[::1]:11434"),
    ],
)
def test_hosts_get_ollama_defaults(host, url):
    assert OllamaBackend(host).host == OllamaBackend(host).name == url


@pytest.mark.parametrize("host", ["", "   ", "ftp://x", "http://h:99999", None])
def test_bad_host_is_a_config_error(host):
    with pytest.raises(ConfigError):
        OllamaBackend(host)


def test_bad_timeout_is_a_config_error():
    with pytest.raises(ConfigError):
        OllamaBackend("127.0.0.1", timeout=5)  # type: ignore[arg-type]


def test_chat(backend, fake_ollama):
    completion = backend.chat(SMALL, MESSAGES)
    assert isinstance(completion, Completion)
    assert completion.text == EXPECTED and completion.model == SMALL
    assert completion.instance == fake_ollama.url == backend.name
    assert completion.prompt_tokens == 8 and completion.completion_tokens == len(EXPECTED.split())
    assert completion.duration_ms > 0


def test_stream(backend):
    chunks = list(backend.stream(LARGE, MESSAGES))
    assert [c.done for c in chunks] == [False] * (len(chunks) - 1) + [True]
    assert "".join(c.text for c in chunks) == answer_text(LARGE, QUESTION)
    assert chunks[0].text == f"[{LARGE}]" and chunks[0].completion_tokens == 0
    assert chunks[-1].completion_tokens == len(chunks) - 1 and chunks[-1].prompt_tokens == 8


async def test_achat_and_astream(backend, fake_ollama):
    completion = await backend.achat(SMALL, MESSAGES)
    assert completion.text == EXPECTED and completion.instance == fake_ollama.url
    chunks, error = await _acollect(backend.astream(SMALL, MESSAGES))
    assert error is None and chunks[-1].done and "".join(c.text for c in chunks) == EXPECTED
    assert fake_ollama.stats().count("chat", SMALL, completed=True) == 2
    # No aclose() here on purpose: the fixture's close() or the loop's shutdown must do it.


def test_models_loaded_models_and_health(backend):
    assert backend.models() == [SMALL, LARGE]
    assert backend.loaded_models() == []
    backend.chat(LARGE, MESSAGES)
    assert backend.loaded_models() == [LARGE]
    assert backend.health() is True


def test_health_is_false_when_refused(backend, fake_ollama):
    assert backend.health() is True
    fake_ollama.set_fault("refuse")
    assert backend.health() is False


def test_close_is_idempotent_and_reopens(backend, fake_ollama):
    backend.chat(SMALL, MESSAGES)
    backend.close()
    fake_ollama.wait_until(lambda s: s.open_connections == 0)
    backend.close()
    assert backend.chat(SMALL, MESSAGES).text == EXPECTED


# -- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "messages"),
    [("", MESSAGES), (None, MESSAGES), (SMALL, []), (SMALL, "hello"), (SMALL, [{"role": "user", "content": "x"}])],
)
def test_bad_input_raises_before_any_request(backend, fake_ollama, model, messages):
    with pytest.raises(InvalidRequest):
        backend.chat(model, messages)
    with pytest.raises(InvalidRequest):
        backend.stream(model, messages)  # eagerly, not at the first next()
    with pytest.raises(InvalidRequest):
        backend.astream(model, messages)
    assert fake_ollama.stats().count() == 0


def test_timeout_validation():
    with pytest.raises(ConfigError):
        Timeout(connect=0)
    with pytest.raises(ConfigError):
        Timeout(read=-1)
    with pytest.raises(ConfigError):
        Timeout(total=float("inf"))
    assert Timeout(read=60, total=5).effective_read == 5


# -- error mapping --------------------------------------------------------------------------


def test_unknown_model_is_a_protocol_error_404(backend, fake_ollama):
    with pytest.raises(BackendProtocolError) as info:
        backend.chat("mistral:7b", MESSAGES)
    assert info.value.status == 404 and info.value.instance == fake_ollama.url
    assert "not found" in str(info.value) and info.value.__cause__ is not None
    chunks, error = _collect(backend.stream("mistral:7b", MESSAGES))
    assert chunks == [] and isinstance(error, BackendProtocolError) and error.status == 404


def test_server_error_is_a_protocol_error_500(backend, fake_ollama):
    fake_ollama.set_fault("error", count=2)
    with pytest.raises(BackendProtocolError) as info:
        backend.chat(SMALL, MESSAGES)
    assert info.value.status == 500 and info.value.instance == fake_ollama.url
    chunks, error = _collect(backend.stream(SMALL, MESSAGES))
    assert chunks == [] and isinstance(error, BackendProtocolError) and error.status == 500
    assert backend.chat(SMALL, MESSAGES).text == EXPECTED


def test_503_is_unavailable_and_keeps_retry_after():
    with FakeOllama([SMALL], capacity=Capacity(retry_after_s=1.5)) as fake, OllamaBackend(fake.url) as backend:
        fake.set_fault("busy", count=2)
        with pytest.raises(BackendUnavailable) as info:
            backend.chat(SMALL, MESSAGES)
        assert info.value.retry_after == 1.5 and info.value.instance == fake.url
        chunks, error = _collect(backend.stream(SMALL, MESSAGES))
        assert chunks == [] and isinstance(error, BackendUnavailable) and error.retry_after == 1.5


def test_full_queue_is_unavailable_without_retry_after():
    with FakeOllama([SMALL], capacity=Capacity(max_parallel=1, queue=0)) as fake:
        fake.pause()
        with OllamaBackend(fake.url) as holder, OllamaBackend(fake.url) as backend:
            held = holder.stream(SMALL, MESSAGES)
            import threading

            thread = threading.Thread(target=lambda: list(held), daemon=True)
            thread.start()
            fake.wait_until(lambda s: s.active == 1)
            with pytest.raises(BackendUnavailable) as info:
                backend.chat(SMALL, MESSAGES)
            assert info.value.retry_after is None and "503" in str(info.value)
            fake.resume()
            thread.join(5)
            assert not thread.is_alive()


async def test_refused_connection_is_unavailable_everywhere(fake_ollama):
    backend = OllamaBackend(fake_ollama.url)
    backend.chat(SMALL, MESSAGES)
    fake_ollama.set_fault("refuse")
    with pytest.raises(BackendUnavailable) as info:
        backend.chat(SMALL, MESSAGES)
    assert info.value.instance == fake_ollama.url
    assert isinstance(_collect(backend.stream(SMALL, MESSAGES))[1], BackendUnavailable)
    with pytest.raises(BackendUnavailable):
        await backend.achat(SMALL, MESSAGES)
    assert isinstance((await _acollect(backend.astream(SMALL, MESSAGES)))[1], BackendUnavailable)
    assert backend.health() is False
    with pytest.raises(BackendUnavailable):
        backend.models()
    fake_ollama.clear_fault()
    assert (await backend.achat(SMALL, MESSAGES)).text == EXPECTED
    await backend.aclose()


def test_nothing_listening_is_unavailable_and_unhealthy():
    with OllamaBackend(_dead_url(), timeout=Timeout(connect=0.5)) as backend:
        assert backend.health() is False
        with pytest.raises(BackendUnavailable):
            backend.chat(SMALL, MESSAGES)


def test_hang_is_a_timeout(fake_ollama):
    fake_ollama.set_fault("hang")
    with OllamaBackend(fake_ollama.url, timeout=Timeout(read=0.2)) as backend:
        with pytest.raises(BackendTimeout) as info:  # a hang becomes the read timeout, not a wait forever
            backend.chat(SMALL, MESSAGES)
        assert info.value.instance == fake_ollama.url
        chunks, error = _collect(backend.stream(SMALL, MESSAGES))
        assert chunks == [] and isinstance(error, BackendTimeout)


async def test_async_hang_is_a_timeout(fake_ollama):
    fake_ollama.set_fault("hang")
    backend = OllamaBackend(fake_ollama.url, timeout=Timeout(read=5, total=0.2))
    with pytest.raises(BackendTimeout):
        await backend.achat(SMALL, MESSAGES)
    chunks, error = await _acollect(backend.astream(SMALL, MESSAGES))
    assert chunks == [] and isinstance(error, BackendTimeout)
    await backend.aclose()


def test_total_timeout_cuts_a_slow_stream():
    with FakeOllama([SMALL], timing=Timing(token_delay_ms=200)) as fake:  # as in the async twin below
        with OllamaBackend(fake.url, timeout=Timeout(total=1.0)) as backend:
            chunks, error = _collect(backend.stream(SMALL, MESSAGES))
    assert isinstance(error, BackendTimeout) and "after" in str(error)
    assert 1 <= len(chunks) < len(EXPECTED.split()) and not any(c.done for c in chunks)


async def test_async_total_timeout_cuts_a_slow_stream():
    # ~15 tokens 200 ms apart take ~3 s; a 1 s total leaves room for the first chunk on a busy machine
    with FakeOllama([SMALL], timing=Timing(token_delay_ms=200)) as fake:
        backend = OllamaBackend(fake.url, timeout=Timeout(total=1.0))
        chunks, error = await _acollect(backend.astream(SMALL, MESSAGES))
        await backend.aclose()
    assert isinstance(error, BackendTimeout)
    assert 1 <= len(chunks) < len(EXPECTED.split()) and not any(c.done for c in chunks)


def test_drop_mid_stream_raises_after_the_first_chunks(backend, fake_ollama):
    fake_ollama.set_fault("drop", after_chunks=2, count=1)
    chunks, error = _collect(backend.stream(SMALL, MESSAGES))
    assert [c.text for c in chunks] == [f"[{SMALL}]", " answer"]
    assert isinstance(error, BackendError) and error.instance == fake_ollama.url
    assert "after 2 streamed chunks" in str(error) and error.__cause__ is not None
    assert backend.chat(SMALL, MESSAGES).text == EXPECTED  # the instance itself is fine


async def test_async_drop_mid_stream_raises_after_the_first_chunks(backend, fake_ollama):
    fake_ollama.set_fault("drop", after_chunks=3, count=1)
    chunks, error = await _acollect(backend.astream(SMALL, MESSAGES))
    assert len(chunks) == 3 and isinstance(error, BackendError)
    assert (await backend.achat(SMALL, MESSAGES)).text == EXPECTED
    await backend.aclose()


def test_drop_before_any_response_is_unavailable(backend, fake_ollama):
    fake_ollama.set_fault("drop", count=1)
    with pytest.raises(BackendUnavailable):
        backend.chat(SMALL, MESSAGES)


async def test_abandoned_async_stream_releases_its_connection(backend, fake_ollama):
    stream = backend.astream(SMALL, MESSAGES)
    first = await stream.__anext__()
    assert first.text == f"[{SMALL}]"
    await stream.aclose()
    fake_ollama.wait_until(lambda s: s.active == 0)
    await backend.aclose()


def test_async_connections_are_kept_alive_and_closed_with_their_loop(fake_ollama):
    import asyncio

    backend = OllamaBackend(fake_ollama.url)

    async def three_calls() -> None:  # no aclose(): the loop's shutdown must close the pool
        for _ in range(3):
            assert (await backend.achat(SMALL, MESSAGES)).text == EXPECTED

    asyncio.run(three_calls())
    asyncio.run(three_calls())
    assert fake_ollama.stats().connections == 2  # one kept-alive connection per loop
    fake_ollama.wait_until(lambda s: s.open_connections == 0)  # both closed by the client
    backend.close()


async def test_python310_timeout_shim_cancels_at_the_deadline():
    import asyncio

    from semroute.backends.deadline import TimeoutAt as _TimeoutAt  # asyncio.timeout_at stands in on 3.11+

    loop = asyncio.get_running_loop()
    with pytest.raises(TimeoutError):
        async with _TimeoutAt(loop.time() + 0.05):
            await asyncio.sleep(5)
    async with _TimeoutAt(loop.time() + 5):
        await asyncio.sleep(0)
    async with _TimeoutAt(None):
        await asyncio.sleep(0)


def test_models_are_what_each_instance_has():
    from semroute.testing import FakeFleet
    from semroute.testing.fleet import InstanceSpec

    specs = [InstanceSpec(), InstanceSpec(models=(LARGE,))]
    with FakeFleet(specs, models=(SMALL, LARGE)) as fleet:
        seen = []
        for url in fleet.urls:
            with OllamaBackend(url) as backend:
                seen.append(backend.models())
        assert seen == [[SMALL, LARGE], [LARGE]]
        with OllamaBackend(fleet.urls[1]) as backend, pytest.raises(BackendProtocolError) as info:
            backend.chat(SMALL, MESSAGES)  # the instance without the model says 404
        assert info.value.status == 404


def test_ollama_embedder_against_the_fake():
    import numpy as np

    from semroute import OllamaEmbedder
    from semroute.errors import EmbeddingError
    from semroute.testing.fake_content import embed_vector

    with FakeOllama(("all-minilm",)) as fake_ollama:
        embedder, missing = (OllamaEmbedder(m, host=fake_ollama.url) for m in ("all-minilm", "bge-m3"))
        try:
            _check_ollama_embedder(embedder, fake_ollama, np, EmbeddingError, embed_vector)
            with pytest.raises(EmbeddingError, match="not found"):
                missing.embed(["a model the server does not have"])
        finally:
            embedder.close()
            missing.close()


def _check_ollama_embedder(embedder, fake_ollama, np, EmbeddingError, embed_vector) -> None:
    assert embedder.name == "ollama:all-minilm"
    texts = ["How do I reset my password?", "Şifremi nasıl sıfırlarım?"]
    vectors = embedder.embed(texts)
    assert vectors.shape == (2, 384) and vectors.dtype == np.float32 and embedder.dim == 384
    expected = np.asarray([embed_vector("all-minilm:latest", t, 384) for t in texts], dtype=np.float32)
    np.testing.assert_allclose(vectors, expected, atol=1e-6)  # the server's vectors, unit length
    assert fake_ollama.stats().count("embed") == 1  # one batched /api/embed call for both texts
    fake_ollama.set_fault("error", count=1)
    with pytest.raises(EmbeddingError, match="all-minilm"):
        embedder.embed(["anything"])
