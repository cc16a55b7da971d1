"""Verifiers decide whether a cached candidate really answers a query.

A semantic hit must be right, not just close: embeddings score "speed limit in the city"
closer to "speed limit on the highway" than to a true paraphrase. The cache asks the
verifier about each of its nearest candidates and serves the best accepted one.
This module holds the seam and the plain cosine gate; trained verifiers plug in here.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from .errors import ConfigError
from .types import Candidate, Verdict

__all__ = ["Verifier", "ThresholdVerifier"]


@runtime_checkable
class Verifier(Protocol):
    """Decides hit or miss for one (query, cached candidate) pair."""

    def accept(self, query: str, candidate: Candidate) -> Verdict: ...


class ThresholdVerifier:
    """Accepts a candidate when its cosine similarity is at least ``min_similarity``.

    The baseline every other semantic cache uses; it cannot tell near-miss questions apart.
    """

    def __init__(self, min_similarity: float = 0.9) -> None:
        if not -1.0 <= min_similarity <= 1.0:
            raise ConfigError(f"min_similarity is a cosine similarity in [-1, 1], got {min_similarity!r}")
        self.min_similarity = float(min_similarity)

    def accept(self, query: str, candidate: Candidate) -> Verdict:
        ok = candidate.similarity >= self.min_similarity
        relation = ">=" if ok else "<"
        return Verdict(
            accepted=ok,
            score=max(0.0, min(1.0, candidate.similarity)),
            reason=f"cosine {candidate.similarity:.3f} {relation} min_similarity {self.min_similarity:.3f}",
        )
