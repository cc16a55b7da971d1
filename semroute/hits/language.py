"""``LanguageGuard``: a cached answer is served only to a question in the cached question's language.

A multilingual embedder places a question and its translation close together (multilingual-e5:
cosine 0.87-0.94 for xSID's English/Turkish sentence pairs; USE: the shipped USE verifier
served 125 of 1,000 such pairs), so without this guard an English question can be served the
Turkish answer cached for its translation: the right facts in a language the user did not ask in.

The test is evidence, not a label: each text gets a distribution over languages (py3langid's
naive Bayes over byte n-grams, probabilities normalised with its length-aware temperature), and a
pair is refused only when the two distributions overlap much less than two uninformative ones
would: ``L * sum_l p_q(l) p_c(l) < max_overlap`` over ``L`` languages (two flat distributions
give 1, the same confident language about ``L``), and only when each text says something about
its language (its likeliest language has probability >= ``min_confidence``): short texts ("hiya!",
"O Tom mu?") give near-flat distributions and are never refused. Measured (README "Answers in
the asker's language"): at the defaults (0.5, 0.2; the overlap chosen on xSID valid and
banking77/clinc150/TQP train), held out: 0 of 6,367 same-language pairs refused (STSB-TR, TQP
dev, COVID, traffic EN and TR), 73% of xSID test translations and 99% of EN/TR traffic question
pairs refused.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import ConfigError

__all__ = ["LANGUAGE_REFUSAL", "ArrayRanker", "LanguageGuard", "LanguageRanker"]

LANGUAGE_REFUSAL = "different language"
"""How a refused verdict's reason starts (counted as ``verifier.language_refused``)."""


@runtime_checkable
class LanguageRanker(Protocol):
    """Ranks languages for a text: ``[(code, probability), ...]`` summing to 1, the same codes for
    every text (py3langid's ``rank``)."""

    def rank(self, text: str) -> Sequence[tuple[str, float]]: ...


@runtime_checkable
class ArrayRanker(LanguageRanker, Protocol):
    """A ``LanguageRanker`` that also gives a text's distribution as one array over fixed ``codes``:
    no list of pairs to build, sort and scatter back (half of py3langid's cost per text)."""

    codes: tuple[str, ...]

    def probabilities(self, text: str) -> np.ndarray: ...


class _Py3Langid:
    """py3langid's normalised naive Bayes, as an ``ArrayRanker``.

    ``rank`` is py3langid's own. ``probabilities`` reads the same scores before ``rank`` sorts
    them into pairs (py3langid's ``_decide``, where a script alias such as srl -> sr is already
    merged into its first column): measured 60 against 120 µs per new text. It is a private
    method of py3langid, so it is used only while it agrees with ``rank`` on probe texts
    (checked when the model loads); otherwise every text goes through ``rank``.
    """

    _PROBES = ("What is the speed limit in the city?", "Şehir içinde hız sınırı kaç?", "¿Dónde está la estación?")

    def __init__(self, identifier: object) -> None:
        self._identifier = identifier
        classes = list(identifier.nb_classes)  # type: ignore[attr-defined]
        first = {code: i for i, code in reversed(list(enumerate(classes)))}
        self.codes = tuple(first)
        self._columns = np.array([first[code] for code in self.codes], dtype=np.intp)
        self._decide = getattr(identifier, "_decide", None)
        if self._decide is not None and not all(self._agrees(text) for text in self._PROBES):
            self._decide = None

    def _agrees(self, text: str) -> bool:
        try:
            fast = self.probabilities(text)
        except Exception:  # noqa: BLE001 - a changed private method: fall back to ``rank``
            return False
        slow = dict(self.rank(text))
        return len(fast) == len(slow) and all(abs(slow.get(c, -1.0) - p) < 1e-6 for c, p in zip(self.codes, fast.tolist()))

    def rank(self, text: str) -> Sequence[tuple[str, float]]:
        return self._identifier.rank(text)  # type: ignore[attr-defined,no-any-return]

    def probabilities(self, text: str) -> np.ndarray:
        if self._decide is None:
            got = dict(self.rank(text))
            return np.array([got[c] for c in self.codes], dtype=np.float32)
        return np.asarray(self._decide(text), dtype=np.float32)[self._columns]


def _py3langid() -> LanguageRanker:
    try:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier
    except ImportError as exc:  # a core dependency: only a broken install lacks it
        raise ConfigError("the language guard needs py3langid (pip install py3langid), or turn it off with "
                          "CacheSettings(cross_language=True)") from exc

    return _Py3Langid(LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True))


class LanguageGuard:
    """Says whether a query and a cached question are in different languages (see the module doc).

    ``ranker`` is built on first use (py3langid's model: ~0.6 s to load, ~0.1 ms per text);
    ``load`` builds it ahead, off the request path. Texts' distributions are kept for the last
    ``memo`` texts (about 0.5 KB each: 8 MB at the default), so a cached question is ranked once,
    not on every lookup that meets it.
    """

    def __init__(self, max_overlap: float = 0.5, *, min_confidence: float = 0.2,
                 ranker: Callable[[], LanguageRanker] = _py3langid, memo: int = 16_384) -> None:
        for name, value in (("max_overlap", max_overlap), ("min_confidence", min_confidence)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value <= 1.0:
                raise ConfigError(f"{name} must be a number in (0, 1], got {value!r}")
        if isinstance(memo, bool) or not isinstance(memo, int) or memo < 0:
            raise ConfigError(f"memo must be an int >= 0, got {memo!r}")
        self.max_overlap = float(max_overlap)
        self.min_confidence = float(min_confidence)
        self._make_ranker = ranker
        self._ranker: LanguageRanker | None = None
        self._probabilities: Callable[[str], np.ndarray] | None = None  # an ``ArrayRanker``'s, set by ``load``
        self._labels: dict[str, int] = {}  # language code -> position in every distribution
        self._lock = threading.Lock()
        self._distribution = functools.lru_cache(maxsize=memo)(self._rank)

    def load(self) -> None:
        """Build the ranker now (the first check would otherwise pay its load)."""
        if self._ranker is None:
            with self._lock:
                if self._ranker is None:
                    ranker = self._make_ranker()
                    if isinstance(ranker, ArrayRanker):  # a Protocol check costs ~40 µs: once, here
                        self._labels = {code: i for i, code in enumerate(ranker.codes)}
                        self._probabilities = ranker.probabilities
                    self._ranker = ranker

    def _rank(self, text: str) -> np.ndarray:
        """P(language) for ``text``, in the order of ``_labels`` (the ranker's ``codes`` when it is an
        ``ArrayRanker``, else fixed by the first text ranked)."""
        self.load()
        assert self._ranker is not None
        if self._probabilities is not None:
            return self._probabilities(text)
        ranked = self._ranker.rank(text)
        if not self._labels:
            with self._lock:
                self._labels = self._labels or {code: i for i, code in enumerate(sorted(c for c, _ in ranked))}
        out = np.zeros(len(self._labels), dtype=np.float32)
        for code, p in ranked:
            out[self._labels[code]] = p
        return out

    def overlap(self, query: str, cached: str) -> float:
        """``L * sum_l p_query(l) p_cached(l)``: 1 for two uninformative texts, about ``L`` for one language."""
        return _overlap(self._distribution(query), self._distribution(cached))

    def mismatch(self, query: str, cached: str) -> str | None:
        """Why the two texts are in different languages, or None when nothing says so."""
        q, c = self._distribution(query), self._distribution(cached)
        iq, ic = int(q.argmax()), int(c.argmax())
        if iq == ic or min(q[iq], c[ic]) < self.min_confidence:
            return None
        overlap = _overlap(q, c)
        if overlap >= self.max_overlap:
            return None
        codes = list(self._labels)
        return (f"{LANGUAGE_REFUSAL}: query {codes[iq]} ({q[iq]:.2f}), cached {codes[ic]} ({c[ic]:.2f}), "
                f"overlap {overlap:.3f} < {self.max_overlap:g}")


def _overlap(q: np.ndarray, c: np.ndarray) -> float:
    return float(len(q) * (q @ c))
