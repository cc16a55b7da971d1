"""Shared fixtures. ``fake_ollama``: a started FakeOllama with the two default tier models."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from semroute.testing import FakeOllama

FAKE_MODELS = ("llama3.2:3b", "llama3.1:8b")


@pytest.fixture
def fake_ollama() -> Iterator[FakeOllama]:
    """A fresh FakeOllama per test (faults and counters never leak between tests)."""
    with FakeOllama(FAKE_MODELS) as fake:
        yield fake


@pytest.fixture(scope="session")
def embedder():
    """The real default MiniLM, loaded once per test session (about 5 s)."""
    from semroute import SentenceTransformerEmbedder

    model = SentenceTransformerEmbedder()
    model.embed(["load the model once"])
    return model


@pytest.fixture
def fake_fleet():
    """Three FakeOllama instances serving both tier models (a FakeFleet; ``.urls``, ``[i]``)."""
    from semroute.testing import FakeFleet

    with FakeFleet(3, models=FAKE_MODELS) as fleet:
        yield fleet


@pytest.fixture(scope="session")
def redis_server():
    """A real redis-server on a free loopback port for the whole session (skips without the binary)."""
    from semroute.testing.redis_server import RedisServer, redis_server_binary

    if redis_server_binary() is None:
        pytest.skip("redis-server is not installed (.ci/run installs it)")
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server) -> str:
    """The session server's URL, emptied for this test (FLUSHALL)."""
    import redis

    redis_server.start()  # a test may have killed it
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture
def cheap_router_options(fake_ollama):
    """Router options for tests where the embedding model is not under test (the web integrations):
    FakeOllama's hashed bag-of-words embeddings over real HTTP, a cosine threshold, always the small tier."""
    from semroute import FixedTier, OllamaEmbedder, ThresholdVerifier

    embedder = OllamaEmbedder(FAKE_MODELS[0], host=fake_ollama.url)
    yield {"embedder": embedder, "verifier": ThresholdVerifier(0.95), "classifier": FixedTier("small")}
    embedder.close()


@pytest.fixture
def gateway(tmp_path, fake_ollama):
    """``gateway(**kwargs)``: a running ``semroute serve`` app (``gateway_kit.Gateway``) in front
    of this test's FakeOllama, each with its own cache directory; all stopped after the test."""
    from gateway_kit import Gateway  # the server's dependencies load only for gateway tests

    started: list[Gateway] = []

    def make(**kwargs) -> Gateway:
        gw = Gateway([fake_ollama.url], tmp_path / f"cache{len(started)}", **kwargs)
        started.append(gw)
        return gw

    yield make
    for gw in started:
        gw.stop()
