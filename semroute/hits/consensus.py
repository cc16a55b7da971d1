"""Answer consensus: when the nearest cached questions agree on one answer, that agreement is evidence.

A cache warmed from a FAQ holds many phrasings per answer. A query whose nearest neighbours
mostly carry the same answer, with no other answer close by, is asking that answer's question
even when no single phrasing is close enough for the pair verifier's cosine floor (measured on
banking77 and clinc150, see ``bench/cache_quality.py``). ``AnswerConsensus`` votes over the
``k`` nearest candidates (weights ``exp(power * (cos - top cos))``, grouped by answer text, with
cosines taken after a small learned linear adapter, see ``Space``) and a small logistic
regression over the winning group's shape (vote share, support, best and mean cosine, margin to
the best other answer, the query's fit to the group's centroid, the pair model's probability for
its best member) gives P(the winning answer answers the query). It only speaks when at least two cached
questions carry the winning answer: a lone entry is the pair verifier's business, so caches
whose answers are all different (grown from LLM answers) behave exactly as without it.

It also vetoes: a pair-verified hit whose answer differs from a supported winning answer is not
served. Not here: searching the index or deciding single pairs (``semroute.verify``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..artifacts import load_artifact, model_dir
from ..errors import ConfigError, ModelError, ModelMismatch
from ..types import Candidate, Hit
from .verify import PLACEHOLDER_ANSWER, Verifier, pair_scorer

__all__ = ["FEATURE_NAMES", "FORMAT", "GENERATED_LEAD", "REASON", "AnswerConsensus", "Group", "Neighbours", "Space", "answer_group",
           "group_key", "neighbourhood", "served_by", "votes"]

FORMAT = "semroute.consensus/1"
REASON = "answer consensus"  # how a consensus hit's Verdict.reason starts (the pipeline counts them)
FEATURE_NAMES = ("share", "support", "best_cos", "mean_cos", "margin", "pair_probability", "is_nearest",
                 "centroid_cos", "centroid_gap")
_PAIR_FEATURE = FEATURE_NAMES.index("pair_probability")


def served_by(hit: Hit) -> str:
    """Which part of the hit path served a semantic hit: "consensus", "confident_gate" or "verifier"."""
    if hit.verdict is not None and hit.verdict.reason.startswith(REASON):
        return "consensus"
    return "confident_gate" if hit.verdict is not None and hit.verdict.tentative else "verifier"


# A supported answer is not served when a model-written entry is nearer to the query than the
# answer's best phrasing by more than this (index cosine). Chosen on the consensus tuning sets
# replayed as streams that store their misses (``bench/cache_stream.py --tuning --warm-answers
# per-intent``; 0, 0.03, 0.06 and no limit tried): the largest lead at which banking77's stream
# kept the precision it had when model-written entries voted (0.956) and clinc150's stayed >= 0.97.
GENERATED_LEAD = 0.03


def votes(candidate: Candidate) -> bool:
    """Whether an entry takes part in the vote: known answers (``Router.warm``) do, model-written ones don't.

    A model writes a different text for every question, so its entries can only split a vote
    (measured: as a FAQ cache stored its misses, recall fell below the frozen cache's), and
    when it repeats itself it is boilerplate ("I can't help with that"), no evidence that two
    questions are one. The router records the model of every answer it stores; warm-up has none.
    """
    return not candidate.entry.model


# The pair model's P(same question) for (query, cached question, cosine).
PairProbability = Callable[[str, str, float], float]


def group_key(candidate: Candidate) -> str:
    """Candidates with the same answer text vote together; placeholders and blanks never do."""
    return answer_group(candidate.entry.answer, candidate.entry.id)


def answer_group(answer: str, own: object) -> str:
    """``group_key`` of an answer text; ``own`` (the entry's id or row label) keeps a placeholder or a
    blank in a group of its own."""
    answer = answer.strip()
    return f"id:{own}" if not answer or answer == PLACEHOLDER_ANSWER else f"a:{answer}"


@dataclass(frozen=True, slots=True)
class Group:
    """The winning answer among the nearest candidates and the shape of its support."""

    members: tuple[int, ...]  # indices into the candidate list, nearest first
    share: float  # its part of the similarity-weighted vote
    margin: float  # its best cosine minus the best cosine of any other answer

    @property
    def support(self) -> int:
        return len(self.members)


def neighbourhood(candidates: Sequence[Candidate], power: float) -> Group | None:
    """Vote the candidates (nearest first) into answer groups; the heaviest group wins."""
    if not candidates:
        return None
    top = candidates[0].similarity
    weight: dict[str, float] = {}
    members: dict[str, list[int]] = {}
    for i, cand in enumerate(candidates):
        key = group_key(cand)
        weight[key] = weight.get(key, 0.0) + math.exp(power * (cand.similarity - top))
        members.setdefault(key, []).append(i)
    winner = max(weight, key=weight.__getitem__)
    best = candidates[members[winner][0]].similarity
    other = max((candidates[idx[0]].similarity for key, idx in members.items() if key != winner), default=0.0)
    return Group(tuple(members[winner]), weight[winner] / sum(weight.values()), best - other)


@dataclass(frozen=True, slots=True)
class Neighbours:
    """The nearest candidates re-scored in the consensus's own space (see ``Space``).

    ``ranked`` holds them nearest first by that space's cosine, ``vectors`` and ``norms`` their
    index vectors and adapted lengths in the same order; ``raw`` each entry id's index cosine.
    """

    ranked: tuple[Candidate, ...]
    vectors: np.ndarray
    norms: np.ndarray
    query: np.ndarray  # the query times W Wᵀ
    query_norm: float
    raw: Mapping[str, float]


class Space:
    """Cosines after the consensus's linear adapter ``W`` (None: the index's own cosines).

    The adapter is learned from paraphrase intents: it pulls phrasings of one question together
    and pushes neighbouring questions apart, which the general-purpose embedding does not
    (measured: it lifts the vote's precision on banking77 and clinc150). Since
    ``(qW)·(cW) = q (W Wᵀ) cᵀ``, one vector-matrix product per query, plus one per cached entry
    whose adapted length is then remembered, replaces mapping
    every candidate. Only vector-matrix products:
    a matrix-matrix product wakes the BLAS thread pool, which then fights the embedding model's
    threads for the cores (measured: embeddings 10 -> 24 ms).
    """

    def __init__(self, adapter: np.ndarray | None, *, remember: int = 200_000) -> None:
        self._gram = None if adapter is None else np.ascontiguousarray(adapter @ adapter.T, dtype=np.float32)
        self._norms: dict[str, tuple[int, float]] = {}
        self._remember = remember

    def _times_gram(self, x: np.ndarray) -> np.ndarray:
        return x if self._gram is None else x @ self._gram

    def _length(self, x: np.ndarray, gx: np.ndarray) -> float:
        return math.sqrt(max(float(x @ gx), 1e-24))

    def norm(self, entry_id: str, vector: np.ndarray) -> float:
        """|vector W|, remembered for ``entry_id`` (with a fingerprint: ids may be reused elsewhere)."""
        v = np.asarray(vector, dtype=np.float32)
        mark = hash(v.tobytes())
        known = self._norms.get(entry_id)
        if known is not None and known[0] == mark:
            return known[1]
        n = self._length(v, self._times_gram(v))
        if len(self._norms) >= self._remember:
            self._norms.clear()  # a bound, not an LRU: recomputing one length is cheap
        self._norms[entry_id] = (mark, n)
        return n

    def rescore(self, vector: np.ndarray, candidates: Sequence[Candidate]) -> Neighbours:
        """Rank ``candidates`` by cosine in this space, nearest first."""
        raw = {c.entry.id: c.similarity for c in candidates}
        q = np.asarray(vector, dtype=np.float32)
        gq = self._times_gram(q)
        q_norm = self._length(q, gq)
        vectors = np.stack([np.asarray(c.entry.vector, dtype=np.float32) for c in candidates])
        norms = np.array([self.norm(c.entry.id, v) for c, v in zip(candidates, vectors)], dtype=np.float32)
        sims = (vectors @ gq) / (norms * q_norm)
        order = np.argsort(-sims, kind="stable")
        ranked = tuple(Candidate(candidates[i].entry, float(sims[i])) for i in order)
        return Neighbours(ranked, vectors[order], norms[order], gq, q_norm, raw)

    def centroid(self, near: Neighbours, members: Sequence[int]) -> tuple[float, float]:
        """Cosine of the query to the members' (adapted, unit) centroid, and the members' mean cosine to it."""
        vectors, norms = near.vectors[list(members)], near.norms[list(members)]
        total = (vectors / norms[:, None]).sum(axis=0)  # the centroid is total @ W, up to scale
        g_total = self._times_gram(total)
        length = self._length(total, g_total)
        centroid_cos = float(near.query @ total) / (near.query_norm * length)
        spread = float(((vectors @ g_total) / norms).mean()) / length
        return centroid_cos, spread


def features(near: Neighbours, group: Group, k: int, pair_probability: float, space: Space) -> np.ndarray:
    """The winning group's shape as the model's input row (``FEATURE_NAMES``).

    The centroid features ask whether the query sits inside the group as its members do, or
    beside it: a question whose answer is not cached often lands next to a dense group
    (measured on clinc150's out-of-scope queries, where they lift recall at equal precision).
    """
    sims = [near.ranked[i].similarity for i in group.members]
    centroid_cos, spread = space.centroid(near, group.members)
    return np.array([group.share, group.support / k, sims[0], float(np.mean(sims)), group.margin,
                     pair_probability, float(group.members[0] == 0), centroid_cos, centroid_cos - spread],
                    dtype=np.float64)


class AnswerConsensus:
    """Logistic P(winning answer is right) over the neighbourhood; speaks for support >= 2.

    ``threshold`` is the probability above which the winning answer is served;
    ``min_pair_probability`` is a hard veto so a FAQ full of "city" phrasings never answers a
    "highway" query, whatever the vote.
    """

    def __init__(self, arrays: Mapping[str, np.ndarray], card: Mapping[str, object], pair: PairProbability, *,
                 threshold: float | None = None) -> None:
        try:
            self._mean = np.asarray(arrays["mean"], dtype=np.float64)
            self._scale = np.asarray(arrays["scale"], dtype=np.float64)
            self._coef = np.asarray(arrays["coef"], dtype=np.float64)
            self._intercept = float(np.asarray(arrays["intercept"]).reshape(-1)[0])
            adapter = np.asarray(arrays["adapter"], dtype=np.float32) if "adapter" in arrays else None
            self.k = int(card["k"])  # type: ignore[call-overload]
            self.power = float(card["power"])  # type: ignore[arg-type]
            self.min_pair_probability = float(card["min_pair_probability"])  # type: ignore[arg-type]
            chosen = float(card["threshold"] if threshold is None else threshold)  # type: ignore[arg-type]
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"consensus model is incomplete: {exc}") from exc
        if self._coef.shape != (len(FEATURE_NAMES),) or list(card.get("features", ())) != list(FEATURE_NAMES):  # type: ignore[call-overload]
            raise ModelMismatch("consensus model was made for other features; retrain it")
        if not 0.0 <= chosen <= 1.0:
            raise ConfigError(f"consensus threshold is a probability in [0, 1], got {chosen!r}")
        if self.k < 2:
            raise ConfigError(f"consensus needs k >= 2 neighbours, got {self.k}")
        if adapter is not None and (adapter.ndim != 2 or adapter.shape[0] != adapter.shape[1]):
            raise ModelMismatch(f"consensus adapter must be a square matrix, got shape {adapter.shape}")
        self.space = Space(adapter)
        self.threshold = chosen
        self.card = dict(card)
        self._pair = pair

    @classmethod
    def load(cls, directory: str | os.PathLike[str], pair: PairProbability, *, embedder: str | None = None,
             dim: int | None = None, threshold: float | None = None) -> AnswerConsensus:
        """Load ``model.npz`` + ``card.json``; ``ModelMismatch`` if made for another embedder."""
        card, arrays = load_artifact(directory, "consensus model", embedder=embedder, dim=dim)
        return cls(arrays, card, pair, threshold=threshold)

    @classmethod
    def default(cls, pair: PairProbability, **kwargs: object) -> AnswerConsensus:
        """The model shipped for ``kwargs["embedder"]`` (default: the MiniLM set)."""
        return cls.load(model_dir("consensus", kwargs.get("embedder")), pair, **kwargs)  # type: ignore[arg-type]

    @classmethod
    def over(cls, verifier: Verifier, *, embedder: str, dim: int, threshold: float | None = None) -> AnswerConsensus | None:
        """The shipped consensus over ``verifier``'s pair model; None when it has none (a cosine gate)."""
        scorer = pair_scorer(verifier)
        if scorer is None:
            return None
        return cls.default(scorer.probability, embedder=embedder, dim=dim, threshold=threshold)

    def with_threshold(self, threshold: float) -> AnswerConsensus:
        """The same model (and remembered lengths) at another operating point."""
        if not 0.0 <= threshold <= 1.0:
            raise ConfigError(f"consensus threshold is a probability in [0, 1], got {threshold!r}")
        clone = object.__new__(AnswerConsensus)
        clone.__dict__.update(self.__dict__)
        clone.threshold = float(threshold)
        return clone

    def probability(self, x: np.ndarray) -> float:
        z = float(((x - self._mean) / self._scale) @ self._coef) + self._intercept
        return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))

    def may_speak(self, candidates: Sequence[Candidate]) -> bool:
        """Whether any answer repeats among the first ``k``: if none does, no vote can win (skip the re-scoring)."""
        return self.repeats([group_key(c) for c in candidates[: self.k]])

    def repeats(self, groups: Sequence[str]) -> bool:
        """Whether any of the first ``k`` answer groups (``answer_group``, voters nearest first) repeats."""
        keys = groups[: self.k]
        return len(set(keys)) < len(keys)

    def neighbours(self, vector: np.ndarray, candidates: Sequence[Candidate]) -> Neighbours:
        """The first ``k`` candidates (nearest first) re-scored in the consensus's space."""
        return self.space.rescore(vector, candidates[: self.k])

    def vote(self, near: Neighbours) -> Group | None:
        """The winning answer; None when no answer has support >= 2."""
        group = neighbourhood(near.ranked, self.power)
        return None if group is None or group.support < 2 else group

    def silenced(self, near: Neighbours, group: Group, nearest_generated: float | None) -> bool:
        """Whether a model-written entry (index cosine ``nearest_generated``) is clearly nearer than the
        winning answer's best phrasing: a question the cache could not answer from those phrasings
        when it was asked, so the vote does not serve them for this one either."""
        best = near.ranked[group.members[0]]
        return nearest_generated is not None and nearest_generated > near.raw[best.entry.id] + GENERATED_LEAD

    def score(self, query: str, near: Neighbours, group: Group) -> tuple[float, bool]:
        """P(the winning answer answers the query) and whether to serve it (0.0 when it cannot be served).

        The pair model is most of a vote's cost (analysing the query, word alignment): it is asked
        only when the neighbourhood alone could reach the threshold, i.e. when P with the best
        possible pair probability would. The decision is the same; measured on banking77/clinc150
        test queries against a 10k-entry FAQ cache (e5), 288 of 499 votes needed no pair model.
        """
        row = features(near, group, self.k, 0.0, self.space)
        if self._ceiling(row) < self.threshold:
            return 0.0, False
        best = near.ranked[group.members[0]]
        p_pair = self._pair(query, best.entry.question, near.raw[best.entry.id])
        if p_pair < self.min_pair_probability:
            return 0.0, False  # a hard veto, whatever the threshold
        row[_PAIR_FEATURE] = p_pair
        p = self.probability(row)
        return p, p >= self.threshold

    def _ceiling(self, row: np.ndarray) -> float:
        """The highest P ``row`` can reach for any pair probability in [0, 1] (P is monotone in each feature)."""
        ends = []
        for value in (0.0, 1.0):
            row[_PAIR_FEATURE] = value
            ends.append(self.probability(row))
        return max(ends)
