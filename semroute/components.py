"""``Components``: the parts one router is made of, passed around as one value.

``Router`` takes its parts as documented keyword arguments and bundles them here, so the
pipeline (and anything built on it: the HTTP server, integrations) receives one object instead
of repeating ten constructor parameters. Every field is a declared seam (``Embedder``,
``Store``, ``Verifier``, ``ComplexityClassifier``, ``BackendFactory``); ``None`` means "the
shipped default, built on first use". This module builds nothing and does no I/O.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .backends.base import BackendFactory
from .cache.base import Store
from .embed import Embedder
from .errors import ConfigError
from .hits.verify import Verifier
from .metrics import Metrics
from .routing.classify import ComplexityClassifier

__all__ = ["Components"]


def _ollama_backend_factory() -> BackendFactory:
    from .backends.ollama import OllamaBackend  # lazy: loads the ollama client and pydantic

    return OllamaBackend


@dataclass(frozen=True, slots=True)
class Components:
    """The router's parts. ``None`` fields get the shipped default on first use.

    ``store``: the truth (``None``: a ``MemoryStore`` persisted under ``data_dir``, or the user
    cache directory). ``backend_factory`` makes one backend per tier host (``None``:
    ``OllamaBackend``). ``clock`` is wall-clock seconds for TTLs and entry timestamps.
    ``redis_url`` shares the cache, instance slots and in-flight misses with every process
    using the same Redis (``RedisStore``, ``RedisLimiter``, ``RedisSingleFlight``).
    """

    embedder: Embedder
    verifier: Verifier | None = None
    classifier: ComplexityClassifier | None = None
    store: Store | None = None
    data_dir: Path | None = None
    backend_factory: BackendFactory | None = None
    metrics: Metrics = field(default_factory=Metrics)
    clock: Callable[[], float] = time.time
    # Shared through Redis when set: the store (unless ``store`` is given), each pool's slots
    # and queue order, and in-flight misses. Kept out of repr: the URL may hold a password.
    redis_url: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        # Not the embedder: on Python < 3.12 isinstance() reads its ``dim`` property, loading the model.
        checks: tuple[tuple[str, object, type], ...] = (
            ("verifier", self.verifier, Verifier),
            ("classifier", self.classifier, ComplexityClassifier),
            ("store", self.store, Store),
            ("backend_factory", self.backend_factory, BackendFactory),
            ("metrics", self.metrics, Metrics),
        )
        for name, value, seam in checks:
            if value is not None and not isinstance(value, seam):
                raise ConfigError(f"{name} must be a {seam.__name__}, got {type(value).__name__}")
        if self.data_dir is not None:
            object.__setattr__(self, "data_dir", Path(self.data_dir))
        if self.redis_url is not None and not isinstance(self.redis_url, str):
            raise ConfigError(f"redis_url must be a redis:// or rediss:// URL string, got {type(self.redis_url).__name__}")
        if not callable(self.clock):
            raise ConfigError(f"clock must be a function returning seconds, got {self.clock!r}")

    def backends(self) -> BackendFactory:
        """The backend factory to use: the caller's, else ``OllamaBackend``."""
        return self.backend_factory if self.backend_factory is not None else _ollama_backend_factory()
