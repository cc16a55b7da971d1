"""Pair features: what differs between a query and a cached question.

A cosine similarity says how close two questions are, not whether they ask the same thing:
"speed limit in the city" and "... on the highway" are close yet different. These features
describe the difference instead — content words present on one side only, how rare they are,
numbers, negation, opposite actions, same-kind swaps (city/highway, Istanbul/Ankara), proper
nouns, scope modifiers — and how well the words one side lacks align with the other side's words
(static word vectors, ``word_vectors``). Everything else is cheap token work on the two texts, no embedding.

This module only compares two analysed questions and turns the pair into a fixed-order feature
vector; breaking one question into words, stems and lexicon hits is ``semroute.hits.analysis``
(its public names are re-exported here, where they were first defined), the trained model that
weighs the features lives in ``semroute.hits.verify`` and training in ``semroute.training.verifier``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

# _KIND_OF: the lexicon's same-kind members, built once by ``analysis`` (``_same`` keeps them distinct).
from .analysis import _KIND_OF, Analysed, analyse, is_turkish, lower, stem
from .lexicon import OPPOSITES, SCOPE_WORDS
from .word_vectors import WordVectors

__all__ = ["FEATURES_VERSION", "FEATURE_NAMES", "Analysed", "PairFeatures", "WordVectors", "analyse", "idf_table",
           "is_turkish", "lower", "stem"]

FEATURES_VERSION = "5"

FEATURE_NAMES = (
    "cos", "jaccard", "q_only_n", "c_only_n", "q_only_idf_max", "c_only_idf_max", "idf_cover_q",
    "idf_cover_c", "len_ratio", "num_mismatch", "num_one_side", "neg_mismatch", "opposite",
    "kind_mismatch", "kind_one_side", "proper_diff", "scope_one_side", "substitution", "trigram_jaccard", "align_q_mean", "align_q_min", "align_c_mean",
    "align_c_min", "turkish", "cos_turkish",
)


@functools.lru_cache(maxsize=65536)
def _same(a: str, b: str) -> bool:
    """Two stems count as one word when equal or one is a long prefix of the other (suffixes)."""
    if a == b:
        return True
    if a in _KIND_OF and b in _KIND_OF:  # pazar/pazartesi, sun/sunday: distinct members differ
        return False
    short, long_ = (a, b) if len(a) <= len(b) else (b, a)
    if len(short) >= 4 and long_.startswith(short):
        return True
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n >= 6


def _raw(a: Analysed, stems: Iterable[str]) -> list[str]:
    """The lower-cased words behind content stems (word pieces want real words, not stems)."""
    wanted = set(stems)
    return [w for w, s in zip(a.words, a.stems) if s in wanted]


def _unmatched(side: Iterable[str], other: Iterable[str]) -> list[str]:
    # ``_same`` never matches stems that start differently: compare only those that start alike.
    exact: set[str] = set()
    by_first: dict[str, list[str]] = {}
    for o in other:
        exact.add(o)
        by_first.setdefault(o[:1], []).append(o)
    return [w for w in side if w not in exact and not any(_same(w, o) for o in by_first.get(w[:1], ()))]


_OPPOSITE_OF: dict[str, frozenset[str]] = {
    a: frozenset(y if x == a else x for x, y in OPPOSITES if a in (x, y)) for pair in OPPOSITES for a in pair
}
_SCOPE_STEMS = frozenset(stem(w) for w in SCOPE_WORDS) | frozenset(stem(w, True) for w in SCOPE_WORDS)


def _opposite(q: Analysed, c: Analysed) -> bool:
    """One side has an action, the other its opposite, and neither has both."""
    return any(b in c.phrases and b not in q.phrases and a not in c.phrases
               for a in q.phrases for b in _OPPOSITE_OF.get(a, ()))


def _kinds(q: Analysed, c: Analysed) -> tuple[int, int]:
    mismatch = one_side = 0
    for kind in set(q.kinds) | set(c.kinds):
        a, b = q.kinds.get(kind, frozenset()), c.kinds.get(kind, frozenset())
        extra_a, extra_b = a - b, b - a
        if extra_a and extra_b:  # one member swapped for another: city/highway
            mismatch += 1
        elif extra_a or extra_b:  # one side adds a member: "tomorrow" vs "tomorrow morning"
            one_side += 1
    return mismatch, one_side


def idf_table(documents: Iterable[str]) -> dict[str, float]:
    """Inverse document frequency of each content stem over ``documents`` (for training)."""
    df: dict[str, int] = {}
    n = 0
    for doc in documents:
        n += 1
        for s in set(analyse(doc).content):
            df[s] = df.get(s, 0) + 1
    return {s: math.log((n + 1) / (d + 1)) + 1.0 for s, d in df.items()}


def _alignment(only: list[str], other: Sequence[str], vectors: WordVectors | None) -> tuple[float, float]:
    """Mean and min, over the words one side lacks, of their best similarity to the other side's words."""
    if not only:
        return 1.0, 1.0
    if vectors is None or not other:
        return 0.0, 0.0
    # The ufuncs' reductions directly: ``ndarray.mean``/``max``/``min`` are the same reductions
    # behind a Python wrapper each (a third of this function's time, four pairs per lookup).
    best = np.maximum.reduce(vectors.matrix(only) @ vectors.matrix(list(other)).T, axis=1)
    return float(np.add.reduce(best) / len(best)), float(np.minimum.reduce(best))


class PairFeatures:
    """Computes ``FEATURE_NAMES`` for (query, cached question, cached answer, cosine similarity).

    ``idf`` maps content stems to inverse document frequency; unknown stems get ``default_idf``
    (rare words are the distinctive ones).
    """

    def __init__(self, idf: Mapping[str, float], *, default_idf: float, vectors: WordVectors | None = None) -> None:
        self.idf = idf
        self.default_idf = float(default_idf)
        self.vectors = vectors
        # Cached questions are judged again and again: analyse each text once (results are not mutated).
        # Queries go through it too (``PairVerifier``): a miss is stored, and its question, analysed as
        # the query, is then a candidate for the next ones.
        self.analyse = functools.lru_cache(maxsize=16384)(analyse)

    def _idf(self, words: Iterable[str]) -> list[float]:
        return [self.idf.get(w, self.default_idf) for w in words]

    def __call__(
        self, query: str | Analysed, cached: str, answer: str | None, similarity: float
    ) -> np.ndarray:
        """Features in ``FEATURE_NAMES`` order; ``query`` may be pre-analysed (reused across candidates).

        ``answer`` is accepted for the seam's sake but not used: answer features learned from the
        few generated answers we have made the model trust long answers blindly (measured on the
        COVID FAQ: precision fell from ~0.66 to 0.40), so they were taken out.
        """
        q = query if isinstance(query, Analysed) else self.analyse(query)
        c = self.analyse(cached)
        q_only, c_only = _unmatched(q.content, c.content), _unmatched(c.content, q.content)
        iq, ic = self._idf(q.content), self._idf(c.content)
        iqo, ico = self._idf(q_only), self._idf(c_only)
        shared = len(q.content) - len(q_only)
        kind_mismatch, kind_one_side = _kinds(q, c)
        tq, tc = q.trigrams, c.trigrams
        align_q = _alignment(_raw(q, q_only), _raw(c, c.content), self.vectors)
        align_c = _alignment(_raw(c, c_only), _raw(q, q.content), self.vectors)
        lens = (max(1, len(q.words)), max(1, len(c.words)))
        values = (
            similarity,
            shared / max(1, len(q.content) + len(c_only)),
            min(len(q_only), 5),
            min(len(c_only), 5),
            max(iqo, default=0.0),
            max(ico, default=0.0),
            1.0 - sum(iqo) / sum(iq) if iq else 1.0,
            1.0 - sum(ico) / sum(ic) if ic else 1.0,
            min(lens) / max(lens),
            float(bool(q.numbers and c.numbers and q.numbers != c.numbers)),
            float(bool(q.numbers) != bool(c.numbers)),
            float(q.negated != c.negated),
            float(_opposite(q, c)),
            float(kind_mismatch),
            float(kind_one_side),
            float(len(set(q_only) & q.proper) + len(set(c_only) & c.proper)),
            float(any(s in _SCOPE_STEMS for s in q_only + c_only)),
            float(len(q_only) == 1 and len(c_only) == 1),
            len(tq & tc) / max(1, len(tq | tc)),
            *align_q,
            *align_c,
            float(q.turkish or c.turkish),
            similarity if (q.turkish or c.turkish) else 0.0,
        )
        return np.asarray(values, dtype=np.float64)
