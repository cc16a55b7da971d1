"""Test kit for the gateway tests: a deterministic word embedder and a running gateway.

``WordEmbedder`` stands in where the embedding is not what is under test (it loads in no
time and maps texts sharing words to near vectors); ``Gateway`` starts ``semroute serve``'s app
over real HTTP on 127.0.0.1 in front of ``FakeOllama`` instances, and stops it (draining).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from semroute import Router, ThresholdVerifier, Tier
from semroute.batching import BatchingEmbedder
from semroute.server import ServerSettings, create_app
from semroute.server.auth import Tenants
from semroute.server.runner import ServerThread

SMALL, LARGE = "llama3.2:3b", "llama3.1:8b"


class WordEmbedder:
    """Bag of hashed words in 64 dimensions: texts sharing most words are near (cosine ~0.9)."""

    name = "test-words"
    dim = 64

    def embed(self, texts):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in text.lower().replace("?", " ").split():
                out[i, int(hashlib.blake2b(word.encode(), digest_size=4).hexdigest(), 16) % (self.dim - 1)] += 1.0
            out[i, self.dim - 1] = 0.05  # never a zero vector
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def tiers_at(*urls: str, strategy: str = "latency_aware") -> dict[str, Tier]:
    return {"small": Tier(SMALL, tuple(urls), strategy=strategy), "large": Tier(LARGE, tuple(urls), strategy=strategy)}


class Gateway:
    """A started gateway: ``url``, ``router``, ``app``, ``service``; ``stop()`` drains."""

    def __init__(self, urls: list[str], data_dir: Path, *, settings: ServerSettings = ServerSettings(),
                 embedder=None, tenants: Tenants | None = None, verifier=None, **router_kwargs) -> None:
        self.batcher = BatchingEmbedder(embedder or WordEmbedder())
        if "tiers" not in router_kwargs:
            router_kwargs["tiers"] = tiers_at(*urls)
        self.router = Router(data_dir=data_dir, embedder=self.batcher,
                             verifier=verifier or ThresholdVerifier(0.85), **router_kwargs)
        self.app = create_app(self.router, settings, batcher=self.batcher, tenants=tenants)
        self.service = self.app.state.service
        self.server = ServerThread(self.app).start()
        self.url = self.server.url
        self._clients: list = []

    def ollama(self, **kwargs):
        """An ``ollama.Client`` for this gateway, closed by ``stop()``."""
        import ollama

        client = ollama.Client(self.url, **kwargs)
        self._clients.append(client)
        return client

    def stop(self) -> None:
        for client in self._clients:
            client.close()
        self.server.stop()


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``predicate`` (for state another process or thread changes) until true, bounded."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} never held within {timeout}s")
        time.sleep(0.002)
