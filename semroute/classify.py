"""Complexity classifiers choose the model tier for a cache miss.

The seam takes the embeddings the cache already computed (the router embeds once) and the
texts, and returns P(complex) per request. ``FixedTier`` always picks one tier; the trained
logistic-regression classifier plugs in behind the same seam.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from .types import Decision

__all__ = ["ComplexityClassifier", "FixedTier", "decide"]


@runtime_checkable
class ComplexityClassifier(Protocol):
    """Estimates P(complex) for each request; ``threshold`` turns it into a tier."""

    threshold: float

    def predict_proba(self, vectors: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        """Return shape (n,) probabilities that each request needs the large tier."""
        ...


class FixedTier:
    """Always the same tier (used when no classifier is configured)."""

    def __init__(self, tier: str = "small") -> None:
        self.tier = tier
        self.threshold = 0.5

    def predict_proba(self, vectors: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        return np.full(len(texts), 1.0 if self.tier == "large" else 0.0, dtype=np.float64)


def decide(classifier: ComplexityClassifier, vector: np.ndarray, text: str) -> Decision:
    """Pure decision for one request: large when P(complex) >= threshold."""
    if isinstance(classifier, FixedTier):
        return Decision(tier=classifier.tier, probability=None, reason="fixed tier")
    p = float(classifier.predict_proba(vector.reshape(1, -1), [text])[0])
    tier = "large" if p >= classifier.threshold else "small"
    return Decision(tier=tier, probability=p, reason=f"P(complex)={p:.3f} vs threshold {classifier.threshold:.3f}")
