"""An embedder wrapper that embeds each distinct text once, optionally persisted between runs.

Training and benchmarks embed the same sentences again and again (and a multilingual embedder
on a small CPU manages a few dozen sentences a second), so vectors are kept by text in memory
and, given a path, in an ``.npz`` (texts + vectors, no pickle). Not for serving: the router
embeds each request itself.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["CachedEmbedder"]


class CachedEmbedder:
    """Wraps an ``Embedder``; ``save()`` writes the vectors seen so far to ``path`` (if given)."""

    def __init__(self, embedder, path: Path | None = None) -> None:
        self.embedder, self.path, self.vectors = embedder, path, {}
        self._saved = 0
        self._saved_at = time.monotonic()
        if path is not None and path.exists():
            with np.load(path, allow_pickle=False) as data:
                self.vectors = dict(zip(data["texts"].tolist(), data["vectors"]))
            self._saved = len(self.vectors)

    @property
    def name(self) -> str:
        return self.embedder.name

    @property
    def dim(self) -> int:
        return self.embedder.dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self(list(texts))

    def __call__(self, texts: Sequence[str], *, chunk: int = 512) -> np.ndarray:
        todo = [t for t in dict.fromkeys(texts) if t not in self.vectors]
        for start in range(0, len(todo), chunk):
            part = todo[start : start + chunk]
            self.vectors.update(zip(part, self.embedder.embed(part)))
            if time.monotonic() - self._saved_at > 120:  # saved as it goes: a long run keeps its work if stopped
                self.save()
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return np.stack([self.vectors[t] for t in texts])

    def save(self) -> None:
        if self.path is not None and len(self.vectors) != self._saved:
            texts = list(self.vectors)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f"{self.path.stem}.{os.getpid()}.tmp.npz")  # runs may share a cache file
            np.savez(tmp, texts=np.asarray(texts, dtype=str), vectors=np.stack([self.vectors[t] for t in texts]))
            tmp.replace(self.path)
            self._saved = len(texts)
        self._saved_at = time.monotonic()
