"""Helpers for the reliability suite: a light router (no torch) over real fake Ollama servers.

``HashEmbedder`` is a deterministic stand-in for MiniLM (a text's hash as a unit vector): the
reliability tests exercise validation, failure and isolation paths, not retrieval quality, so
they must not pay for loading the real model. Everything else in the router is the real part.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from semroute import CacheSettings, Router, RouterSettings, Tier
from semroute.hits.verify import ThresholdVerifier
from semroute.routing.classify import FixedTier

SMALL, LARGE = "llama3.2:3b", "llama3.1:8b"


class HashEmbedder:
    """A text's blake2b digest as a 16-dimensional unit vector: equal texts, equal vectors."""

    name = "test-hash-16"
    dim = 16

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        rows = []
        for text in texts:
            digest = hashlib.blake2b(text.encode("utf-8"), digest_size=64).digest()
            v = np.frombuffer(digest, dtype=np.uint32).astype(np.float32) - 2.0**31
            rows.append(v / np.linalg.norm(v))
        return np.asarray(rows, dtype=np.float32).reshape(len(texts), self.dim)


def light_router(hosts: Sequence[str], data_dir: Path, *, tier: Mapping[str, Any] | None = None,
                 **overrides: object) -> Router:
    """A router with both tiers at ``hosts`` (``tier``: more ``Tier`` fields), the hash embedder,
    an exact-match verifier and every miss sent to the small tier."""
    hosts = tuple(hosts)
    more = dict(tier or {})
    kwargs: dict[str, object] = {
        "tiers": {"small": Tier(SMALL, hosts, **more), "large": Tier(LARGE, hosts, **more)},
        "data_dir": data_dir,
        "embedder": HashEmbedder(),
        "verifier": ThresholdVerifier(0.999),
        "classifier": FixedTier("small"),
        "settings": RouterSettings(cache=CacheSettings(consensus=False)),
    }
    kwargs.update(overrides)
    return Router(**kwargs)  # type: ignore[arg-type]
