"""semroute: a semantic cache and complexity router in front of a fleet of Ollama servers.

``Router`` is the entry point; everything else here is a value object, a seam (Protocol)
or a built-in implementation you can pass to it. Importing semroute never imports torch.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .batching import BatchingEmbedder, BatchSettings
from .embed import AsyncEmbedder, E5Embedder, Embedder, OllamaEmbedder, SentenceTransformerEmbedder, USEEmbedder
from .errors import (
    BackendError,
    BackendProtocolError,
    BackendTimeout,
    BackendUnavailable,
    ConfigError,
    DeadlineExceeded,
    DimensionMismatch,
    EmbeddingError,
    InvalidRequest,
    ModelError,
    ModelMismatch,
    NoInstanceAvailable,
    Overloaded,
    SemrouteError,
    StoreError,
    StoreUnavailable,
)
from .hits import ByNamespace, PairVerifier, ThresholdVerifier, Verifier
from .metrics import Metrics
from .router import Router
from .savings import CostModel
from .routing import ComplexityClassifier, FixedTier, LogisticComplexityClassifier
from .settings import (
    BreakerSettings,
    CacheSettings,
    JudgeSettings,
    PoolSettings,
    QueueSettings,
    RetrySettings,
    RouterSettings,
    Tier,
    Timeout,
)
from .types import Answer, CacheEntry, Candidate, Chunk, Completion, Decision, Hit, Message, Verdict
from .warm_files import read_warm_file
from .warming import WarmReport, WarmRow

try:
    __version__ = version("semroute")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "Router",
    # settings
    "Tier",
    "CacheSettings",
    "JudgeSettings",
    "RouterSettings",
    "Timeout",
    "PoolSettings",
    "RetrySettings",
    "QueueSettings",
    "BreakerSettings",
    # value types
    "Answer",
    "Chunk",
    "Message",
    "CacheEntry",
    "Candidate",
    "Hit",
    "Verdict",
    "Decision",
    "Completion",
    # seams and built-ins
    "Embedder",
    "AsyncEmbedder",
    "SentenceTransformerEmbedder",
    "OllamaEmbedder",
    "E5Embedder",
    "USEEmbedder",
    "BatchingEmbedder",
    "BatchSettings",
    "Verifier",
    "ThresholdVerifier",
    "PairVerifier",
    "ByNamespace",
    "ComplexityClassifier",
    "FixedTier",
    "LogisticComplexityClassifier",
    "Metrics",
    # warm-up and savings
    "WarmRow",
    "WarmReport",
    "read_warm_file",
    "CostModel",
    # errors
    "SemrouteError",
    "InvalidRequest",
    "ConfigError",
    "EmbeddingError",
    "DimensionMismatch",
    "StoreError",
    "StoreUnavailable",
    "BackendError",
    "BackendUnavailable",
    "BackendTimeout",
    "BackendProtocolError",
    "DeadlineExceeded",
    "Overloaded",
    "NoInstanceAvailable",
    "ModelError",
    "ModelMismatch",
    "__version__",
]
