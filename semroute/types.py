"""Value objects that cross seams. Frozen dataclasses only: no dict crosses a seam.

``Answer`` is what callers get; ``CacheEntry`` is what stores keep; ``Hit`` is a cache
answer with its evidence; ``Verdict`` is a verifier's decision; ``Decision`` is the
complexity classifier's tier choice; ``Completion`` and ``Chunk`` come from backends.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

import numpy as np

__all__ = [
    "Source",
    "Message",
    "CacheEntry",
    "Candidate",
    "Verdict",
    "Hit",
    "Decision",
    "Completion",
    "Chunk",
    "Answer",
]

Source = Literal["exact", "semantic", "small", "large"]

_EMPTY: Mapping[str, float] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message, as Ollama's ``/api/chat`` takes it."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """One cached question and its answer; the store's unit of truth.

    ``key`` is the exact-tier key (namespace + policy + normalised question); ``scope`` groups
    entries that may answer each other (namespace + policy) and is the index's filter.
    ``vector`` is the question's L2-normalised embedding, kept so the index can be rebuilt.
    ``tags`` are (name, value) pairs a caller attached (e.g. ``("topic", "speed-limits")``) so
    entries can be invalidated together when what they answer changes.
    """

    id: str
    key: str
    scope: str
    namespace: str
    question: str
    answer: str
    vector: np.ndarray = field(repr=False, compare=False)
    created_at: float
    expires_at: float | None = None
    model: str = ""
    tier: str = ""
    embedder: str = ""
    tags: tuple[tuple[str, str], ...] = ()

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at


@dataclass(frozen=True, slots=True)
class Candidate:
    """A cached entry returned by the index for a query, with its cosine similarity."""

    entry: CacheEntry
    similarity: float


@dataclass(frozen=True, slots=True)
class Verdict:
    """A verifier's decision on one candidate: accept or not, a score in [0, 1] and why.

    ``tentative`` marks an acceptance on weaker evidence (the pair verifier's confident gate,
    below its cosine floor): where the answer consensus has a say, it decides instead.
    """

    accepted: bool
    score: float
    reason: str
    tentative: bool = False


@dataclass(frozen=True, slots=True)
class Hit:
    """A cached answer served for a query, with the evidence that allowed it."""

    entry: CacheEntry
    source: Literal["exact", "semantic"]
    similarity: float
    verdict: Verdict | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """The complexity classifier's choice of tier for a miss."""

    tier: str
    probability: float | None
    reason: str


@dataclass(frozen=True, slots=True)
class Completion:
    """A complete, non-streamed answer from one backend instance."""

    text: str
    model: str
    instance: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    duration_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class Chunk:
    """One piece of a streamed answer. The last chunk has ``done=True``.

    ``source`` is set by the router ("exact", "semantic", "small", "large"); backends leave it empty.
    ``similarity`` is the cached question's cosine similarity on a cache hit (None otherwise).
    """

    text: str
    done: bool = False
    model: str = ""
    instance: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    source: str = ""
    similarity: float | None = None

    def with_source(self, source: str) -> Chunk:
        """This chunk, tagged with who answered it. Built field by field: ``dataclasses.replace``
        costs several times more, and a proxied stream tags every chunk it relays."""
        return Chunk(self.text, self.done, self.model, self.instance, self.prompt_tokens,
                     self.completion_tokens, source, self.similarity)


@dataclass(frozen=True, slots=True)
class Answer:
    """What ``Router.ask`` returns.

    ``source`` says who answered: the exact or semantic cache tier, or the small or large model.
    ``similarity`` is the cosine similarity of the cached question (``None`` on a miss);
    ``nearest_similarity`` is that of the nearest cached question in scope, hit or miss (``None``
    when the scope had no candidate); on a miss ``verdict`` is the verifier's refusal of that
    nearest question (its ``reason`` says why). ``probability`` is P(complex) from the classifier
    when it decided the tier.
    ``timings_ms`` breaks ``latency_ms`` into steps, a read-only mapping of step name to
    milliseconds (``embed``, ``semantic``, ``judge``, ``llm``, ``store``; ``open`` when this
    request opened the store or built the semantic tier).
    """

    text: str
    source: Source
    latency_ms: float
    similarity: float | None = None
    tier: str | None = None
    model: str | None = None
    instance: str | None = None
    probability: float | None = None
    cached_question: str | None = None
    entry_id: str | None = None
    verdict: Verdict | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    nearest_similarity: float | None = None
    timings_ms: Mapping[str, float] = field(default_factory=lambda: _EMPTY, compare=False)

    def __post_init__(self) -> None:
        # Read-only, so a frozen Answer stays frozen; pairs (the old shape) are accepted too.
        object.__setattr__(self, "timings_ms", MappingProxyType(dict(self.timings_ms)))

    @property
    def cached(self) -> bool:
        return self.source in ("exact", "semantic")

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready view (used by the CLI's ``--json``)."""
        return {
            "text": self.text,
            "source": self.source,
            "similarity": self.similarity,
            "tier": self.tier,
            "model": self.model,
            "instance": self.instance,
            "latency_ms": round(self.latency_ms, 3),
            "probability": self.probability,
            "cached_question": self.cached_question,
            "entry_id": self.entry_id,
            "verdict": None
            if self.verdict is None
            else {"accepted": self.verdict.accepted, "score": self.verdict.score, "reason": self.verdict.reason,
                  "tentative": self.verdict.tentative},
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "nearest_similarity": self.nearest_similarity,
            "timings_ms": {k: round(v, 3) for k, v in self.timings_ms.items()},
        }
