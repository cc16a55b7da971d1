"""Verifiers decide whether a cached candidate really answers a query.

A semantic hit must be right, not just close: embeddings score "speed limit in the city"
closer to "speed limit on the highway" than to a true paraphrase. The cache asks the
verifier about each of its nearest candidates and serves the best accepted one.
This module holds the seam, the plain cosine gate (``ThresholdVerifier``) and the trained
pair model (``PairVerifier``, features in ``semroute.pairs``, training in
``semroute.train_verifier``). It does not search the index or embed anything.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from ..artifacts import load_artifact, model_dir
from ..errors import ConfigError, ModelError, ModelMismatch
from .lexicon import LEXICON_VERSION
from .pairs import (
    FEATURE_NAMES,
    FEATURES_VERSION,
    Analysed,
    PairFeatures,
    WordVectors,
)
from ..types import Candidate, Verdict

__all__ = [
    "PLACEHOLDER_ANSWER",
    "ByNamespace",
    "PairScorer",
    "PairVerifier",
    "RanksByCosine",
    "SimilarityGate",
    "ThresholdVerifier",
    "Verifier",
    "WrapsVerifier",
    "in_memory",
    "nearest_accepted_wins",
    "pair_scorer",
]


@runtime_checkable
class Verifier(Protocol):
    """Decides hit or miss for one (query, cached candidate) pair."""

    def accept(self, query: str, candidate: Candidate) -> Verdict: ...


@runtime_checkable
class RanksByCosine(Protocol):
    """Optional capability: accepted verdicts score by cosine similarity.

    When ``nearest_accepted_wins`` is true the cache stops judging at the first accepted
    candidate (candidates come nearest first, so nothing later can outrank it).
    """

    nearest_accepted_wins: bool


@runtime_checkable
class PairScorer(Protocol):
    """Optional capability: a pair model's P(the cached question asks what the query asks).

    The answer consensus and the grey-zone judge read it; a plain cosine gate has none.
    """

    def probability(self, query: str, cached: str, similarity: float) -> float: ...


@runtime_checkable
class WrapsVerifier(Protocol):
    """Optional capability: a verifier that delegates to ``inner`` (its pair model is the inner one's)."""

    @property
    def inner(self) -> Verifier: ...


def nearest_accepted_wins(verifier: Verifier) -> bool:
    """Whether judging may stop at the first accepted candidate (see ``RanksByCosine``)."""
    return isinstance(verifier, RanksByCosine) and bool(verifier.nearest_accepted_wins)


def in_memory(verifier: Verifier) -> bool:
    """Whether ``verifier`` is built-in arithmetic on data in memory (no I/O, never waits): the
    cosine gate, the pair model, and the wrappers over them. A caller's own may do anything."""
    if isinstance(verifier, (ThresholdVerifier, PairVerifier)):
        return True
    if isinstance(verifier, SimilarityGate):
        return in_memory(verifier.inner)
    if isinstance(verifier, ByNamespace):
        return all(in_memory(v) for v in (*verifier.verifiers.values(), verifier.default))
    return False


def pair_scorer(verifier: Verifier | None) -> PairScorer | None:
    """The pair model behind ``verifier`` (looking through wrappers), or None for a cosine gate."""
    for _ in range(16):  # wrappers nest a few deep at most; a cycle must not hang
        if verifier is None or isinstance(verifier, PairScorer):
            return verifier
        if not isinstance(verifier, WrapsVerifier):
            return None
        verifier = verifier.inner
    return None


class ThresholdVerifier:
    """Accepts a candidate when its cosine similarity is at least ``min_similarity``.

    The baseline every other semantic cache uses; it cannot tell near-miss questions apart.
    """

    nearest_accepted_wins = True

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


PLACEHOLDER_ANSWER = "[no answer recorded]"
"""The answer ``semroute eval`` stores when a pairs file has no ``answer`` column; ignored by features."""

_FLAGS = (
    ("num_mismatch", "different numbers"),
    ("num_one_side", "a number on one side only"),
    ("neg_mismatch", "negation differs"),
    ("opposite", "opposite action"),
    ("kind_mismatch", "different place/entity/time of the same kind"),
    ("proper_diff", "different proper noun"),
    ("scope_one_side", "different scope"),
)


class PairVerifier:
    """A cosine gate plus a trained near-miss veto over ``semroute.pairs`` features.

    Accepts when the cosine similarity is at least ``min_similarity`` and a small perceptron
    (plain arrays) gives P(same question) >= ``threshold``; or, through the optional *confident
    gate* ``confident = (min_similarity, threshold)``, at a lower cosine when the model is surer
    (such a verdict is ``tentative``). The model sees what differs between the two texts,
    so it vetoes near misses that cosine cannot tell apart (city vs highway,
    enable vs disable, 100 vs 200, drivers vs professional drivers); the verdict score of an
    accepted candidate is its cosine, so the nearest accepted candidate is served. Load the
    shipped model with ``PairVerifier.default()``; tune both gates with ``semroute calibrate``.
    """

    nearest_accepted_wins = True

    def __init__(
        self, arrays: Mapping[str, np.ndarray], *, threshold: float, card: Mapping[str, object],
        min_similarity: float | None = None,
    ) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ConfigError(f"threshold is a probability in [0, 1], got {threshold!r}")
        floor = float(card.get("min_similarity", 0.88) if min_similarity is None else min_similarity)  # type: ignore[arg-type]
        if not -1.0 <= floor <= 1.0:
            raise ConfigError(f"min_similarity is a cosine similarity in [-1, 1], got {floor!r}")
        self.confident = _confident_gate(card.get("confident"))
        try:
            self._mean = np.asarray(arrays["mean"], dtype=np.float64)
            self._scale = np.asarray(arrays["scale"], dtype=np.float64)
            n = sum(1 for k in arrays if k[:1] == "w" and k[1:].isdigit())
            self._layers = [(np.asarray(arrays[f"w{i}"]), np.asarray(arrays[f"b{i}"])) for i in range(n)]
            idf = dict(zip((str(w) for w in arrays["idf_words"]), (float(v) for v in arrays["idf_values"])))
            words = WordVectors([str(w) for w in arrays["wp_vocab"]], arrays["wp_vectors"]) if "wp_vocab" in arrays else None
            self._features = PairFeatures(idf, default_idf=float(arrays["default_idf"]), vectors=words)
        except KeyError as exc:
            raise ModelError(f"verifier model lacks array {exc}") from exc
        if not self._layers or self._mean.shape != (len(FEATURE_NAMES),):
            raise ModelMismatch("verifier model was made for other features; retrain it")
        self.threshold = float(threshold)
        # Two gates: the cosine must clear ``min_similarity`` (the nearest accepted candidate is
        # served) and the pair model must not veto (P >= ``threshold``). The model catches near
        # misses cosine cannot see; the floor keeps it from rewarding pairs far from its data.
        self.min_similarity = floor
        self.card = dict(card)
        # The cache asks about up to top_k candidates for one query in a row: analyse it once.
        # A (text, analysis) tuple is replaced whole, so concurrent callers never see a torn pair.
        # The consensus asks again about one of them: each (question, cosine) is scored once per query.
        self._last_query: tuple[str, Analysed, dict[tuple[str, float], float]] | None = None

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], *, threshold: float, embedder: str, dim: int,
                    min_similarity: float = 0.5) -> PairVerifier:
        card = {"embedder": embedder, "dim": dim, "threshold": threshold, "min_similarity": min_similarity}
        return cls(arrays, threshold=threshold, card=card)

    @classmethod
    def load(cls, directory: str | os.PathLike[str], *, embedder: str | None = None, dim: int | None = None,
             threshold: float | None = None, min_similarity: float | None = None) -> PairVerifier:
        """Load ``model.npz`` + ``card.json``; ``ModelMismatch`` if made for another embedder or features."""
        path = Path(directory)
        card, arrays = load_artifact(path, "verifier", embedder=embedder, dim=dim)
        if (card.get("features") != list(FEATURE_NAMES) or card.get("lexicon_version") != LEXICON_VERSION
                or card.get("features_version") != FEATURES_VERSION):
            raise ModelMismatch(f"verifier in {path} was made for other features; retrain it")
        return cls(arrays, threshold=float(card["threshold"] if threshold is None else threshold), card=card,
                   min_similarity=min_similarity)

    @classmethod
    def default(cls, *, embedder: str | None = None, dim: int | None = None, threshold: float | None = None,
                min_similarity: float | None = None) -> PairVerifier:
        """The model shipped for ``embedder`` (default: the MiniLM set), checked against ``embedder``/``dim``."""
        return cls.load(model_dir("verifier", embedder), embedder=embedder, dim=dim, threshold=threshold, min_similarity=min_similarity)

    def with_operating_point(self, *, threshold: float, min_similarity: float) -> PairVerifier:
        """The same model at another operating point (see ``semroute calibrate``); the confident gate is kept."""
        if not 0.0 <= threshold <= 1.0 or not -1.0 <= min_similarity <= 1.0:
            raise ConfigError(f"bad operating point: threshold {threshold!r}, min_similarity {min_similarity!r}")
        clone = object.__new__(PairVerifier)
        clone.__dict__.update(self.__dict__)
        clone.threshold, clone.min_similarity = float(threshold), float(min_similarity)
        return clone

    def with_confident_gate(self, gate: tuple[float, float] | None) -> PairVerifier:
        """The same model with another confident gate ``(min_similarity, threshold)``, or none."""
        clone = self.with_operating_point(threshold=self.threshold, min_similarity=self.min_similarity)
        clone.confident = _confident_gate(None if gate is None else {"min_similarity": gate[0], "threshold": gate[1]})
        return clone

    def _score(self, x: np.ndarray) -> float:
        h = (x - self._mean) / self._scale
        for w, b in self._layers[:-1]:
            h = np.maximum(h @ w + b, 0.0)
        w, b = self._layers[-1]
        logit = float((h @ w + b)[0])
        return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, logit))))

    def _query(self, query: str) -> tuple[str, Analysed, dict[tuple[str, float], float]]:
        last = self._last_query
        if last is None or last[0] != query:
            last = self._last_query = (query, self._features.analyse(query), {})
        return last

    def probability(self, query: str | Analysed, cached: str, similarity: float) -> float:
        """The pair model's P(the cached question asks what the query asks)."""
        if not isinstance(query, str):
            return self._score(self._features(query, cached, None, similarity))
        _, analysed, scored = self._query(query)
        p = scored.get((cached, similarity))
        if p is None:
            p = scored[cached, similarity] = self._score(self._features(analysed, cached, None, similarity))
        return p

    def accept(self, query: str, candidate: Candidate) -> Verdict:
        floor = self.min_similarity if self.confident is None else min(self.min_similarity, self.confident[0])
        if candidate.similarity < floor:
            # Below every gate the pair model cannot change the verdict: not asked (its features
            # were most of a miss's lookup: a miss's top candidates are usually all down here).
            # Whoever needs its probability (consensus, judge) asks ``probability``.
            return Verdict(accepted=False, score=0.0, reason=(
                f"cosine {candidate.similarity:.3f} < min_similarity {self.min_similarity:.3f}"
                f"{'' if self.confident is None else f' and the confident gate {floor:.3f}'}: pair model not asked"))
        entry = candidate.entry
        _, analysed, scored = self._query(query)
        x = self._features(analysed, entry.question, None, candidate.similarity)
        p = scored[entry.question, candidate.similarity] = self._score(x)
        close = candidate.similarity >= self.min_similarity
        ok = close and p >= self.threshold
        flags = [text for name, text in _FLAGS if x[FEATURE_NAMES.index(name)] > 0]
        relation = ">=" if p >= self.threshold else "<"
        gate = ">=" if close else "<"
        why = f"; {', '.join(flags)}" if flags else ""
        tentative = False
        if not ok and self.confident is not None:  # either gate admits (calibrate measures the union)
            floor, sure = self.confident
            if candidate.similarity >= floor and p >= sure:
                ok = tentative = True
                why = f"; confident gate: cosine >= {floor:.3f}, pair model >= {sure:.3f}{why}"
        # Accepted candidates are ranked by cosine (the nearest accepted wins): measured better on
        # banking77 than ranking by the model's probability, which is a veto, not a distance.
        score = max(0.0, min(1.0, candidate.similarity)) if ok else 0.0
        return Verdict(
            accepted=ok,
            score=score,
            reason=(
                f"cosine {candidate.similarity:.3f} {gate} min_similarity {self.min_similarity:.3f}, "
                f"pair model {p:.3f} {relation} threshold {self.threshold:.3f}{why}"
            ),
            tentative=tentative,
        )


def _confident_gate(spec: object) -> tuple[float, float] | None:
    """The card's ``confident`` entry as ``(min_similarity, threshold)``; ``None`` when absent."""
    if spec is None:
        return None
    try:
        floor, sure = float(spec["min_similarity"]), float(spec["threshold"])  # type: ignore[index]
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"confident gate needs numeric min_similarity and threshold, got {spec!r}") from exc
    if not -1.0 <= floor <= 1.0 or not 0.0 <= sure <= 1.0:
        raise ConfigError(f"bad confident gate: min_similarity {floor!r}, threshold {sure!r}")
    return floor, sure


class ByNamespace:
    """Per-namespace operating points: each namespace's candidates go to its own verifier.

    Namespaces differ in what a false hit costs and in how their users phrase things, so each
    may carry its own calibrated verifier (``semroute calibrate PAIRS.csv --out DIR`` per
    namespace; TOML ``[verifiers]``). Candidates of other namespaces go to ``default``.
    """

    def __init__(self, verifiers: Mapping[str, Verifier], default: Verifier) -> None:
        bad = [ns for ns, v in verifiers.items() if not isinstance(ns, str) or not isinstance(v, Verifier)]
        if bad or not isinstance(default, Verifier):
            raise ConfigError(f"ByNamespace needs str -> Verifier and a default Verifier; bad entries: {bad!r}")
        self.verifiers = dict(verifiers)
        self.default = default
        every = [*self.verifiers.values(), default]
        # early stop is only safe when every verifier ranks accepted candidates by cosine
        self.nearest_accepted_wins = all(nearest_accepted_wins(v) for v in every)

    @property
    def inner(self) -> Verifier:
        """The default verifier: the answer consensus and the judge read its pair model."""
        return self.default

    def accept(self, query: str, candidate: Candidate) -> Verdict:
        return self.verifiers.get(candidate.entry.namespace, self.default).accept(query, candidate)


class SimilarityGate:
    """Shows the inner verifier only candidates with cosine >= ``min_similarity``."""

    def __init__(self, min_similarity: float, inner: Verifier) -> None:
        self.min_similarity = min_similarity
        self.inner = inner
        self.nearest_accepted_wins = nearest_accepted_wins(inner)

    def accept(self, query: str, candidate: Candidate) -> Verdict:
        if candidate.similarity < self.min_similarity:
            return Verdict(False, 0.0, f"cosine {candidate.similarity:.3f} < min_similarity {self.min_similarity:.3f}")
        return self.inner.accept(query, candidate)
