"""Training and export of the pair verifier (the model behind ``semroute.verify.PairVerifier``).

Fits a small multilayer perceptron (scikit-learn) on ``semroute.pairs`` features of labelled
(query, cached question, cached answer, cosine, label) pairs, then writes it as plain arrays
(``model.npz``, loadable with ``allow_pickle=False``) plus a JSON card (features, lexicon and
embedder it was made for, training data, metrics, operating threshold). No pickle: sklearn
pickles break across versions and run code on load. This module does not collect data; the
script ``bench/train_verifier.py`` does that from ``../shared/data``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..hits.lexicon import LEXICON_VERSION
from ..hits.pairs import FEATURE_NAMES, FEATURES_VERSION, PairFeatures, WordVectors, idf_table

__all__ = ["LabelledPair", "featurize", "card_for", "fit", "threshold_for_precision", "vocabulary", "word_vectors"]


@dataclass(frozen=True, slots=True)
class LabelledPair:
    """One training or evaluation pair. ``label`` 1: the cached answer answers the query."""

    query: str
    cached: str
    answer: str
    similarity: float
    label: int
    source: str = ""


def featurize(pairs: Sequence[LabelledPair], features: PairFeatures) -> np.ndarray:
    return np.stack([features(p.query, p.cached, p.answer or None, p.similarity) for p in pairs])


def vocabulary(documents: Sequence[str], size: int) -> list[str]:
    """The ``size`` most frequent lower-cased words of ``documents`` (>= 2 letters, no digits), plus the
    lexicon's words: the words whose vectors the verifier ships."""
    from collections import Counter

    from ..hits.lexicon import KINDS, OPPOSITES, SCOPE_WORDS
    from ..hits.pairs import analyse

    counts: Counter[str] = Counter()
    for doc in documents:
        counts.update(w for w in analyse(doc).words if len(w) >= 2 and not any(ch.isdigit() for ch in w))
    lexicon = {w for words in KINDS.values() for w in words} | set(SCOPE_WORDS)
    lexicon |= {p for pair in OPPOSITES for p in pair if " " not in p}
    return sorted({w for w, _ in counts.most_common(size)} | lexicon)


def word_vectors(embed, words: Sequence[str], *, dims: int = 64) -> tuple[list[str], np.ndarray]:
    """``words`` embedded one by one with the verifier's own embedder, PCA-reduced to ``dims``, float16.

    ``embed`` maps a list of texts to unit vectors (an ``Embedder.embed``). Replaces MiniLM's
    word-piece table: every embedder can make this table, and it knows Turkish words as whole words.
    """
    table = np.asarray(embed(list(words)), dtype=np.float32)
    centred = table - table.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return list(words), (centred @ vt[:dims].T).astype(np.float16)


def fit(
    pairs: Sequence[LabelledPair],
    *,
    documents: Sequence[str],
    vectors: tuple[list[str], np.ndarray] | None = None,
    weights: np.ndarray | None = None,
    hidden: tuple[int, ...] = (32, 16),
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Fit the pair model; returns the arrays ``PairVerifier`` loads (idf table included).

    ``hidden=()`` fits a logistic regression (one linear layer): monotone in every feature, so
    it cannot, say, reward a lower cosine the way a perceptron may far from its training data.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    idf = idf_table(documents)
    default_idf = math.log(len(documents) + 1) + 1.0
    words = None if vectors is None else WordVectors(vectors[0], vectors[1])
    x = featurize(pairs, PairFeatures(idf, default_idf=default_idf, vectors=words))
    y = np.asarray([p.label for p in pairs])
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    z = (x - mean) / scale
    if not hidden:
        lr = LogisticRegression(C=1.0, max_iter=2000).fit(z, y, sample_weight=weights)
        coefs, intercepts = [lr.coef_.T], [lr.intercept_]
    else:
        if weights is not None:
            # MLPClassifier has no sample weights: resample rows in proportion to their weight.
            rng = np.random.default_rng(seed)
            idx = rng.choice(len(z), size=len(z), p=weights / weights.sum())
            z, y = z[idx], y[idx]
        model = MLPClassifier(hidden_layer_sizes=hidden, alpha=1e-3, max_iter=400, early_stopping=True,
                              random_state=seed)
        model.fit(z, y)
        coefs, intercepts = model.coefs_, model.intercepts_
    stems = sorted(idf)
    arrays = {
        "mean": mean,
        "scale": scale,
        "idf_words": np.asarray(stems, dtype=str),
        "idf_values": np.asarray([idf[w] for w in stems], dtype=np.float32),
        "default_idf": np.asarray(default_idf),
    }
    if vectors is not None:  # key names kept from the word-piece tables older artifacts carry
        arrays["wp_vocab"] = np.asarray(vectors[0], dtype=str)
        arrays["wp_vectors"] = vectors[1]
    for i, (w, b) in enumerate(zip(coefs, intercepts)):
        arrays[f"w{i}"] = w.astype(np.float64)
        arrays[f"b{i}"] = b.astype(np.float64)
    return arrays


CONFIDENT_THRESHOLDS = (0.8, 0.85, 0.9, 0.95)
"""Model thresholds tried for the confident gate (a lower cosine floor where the model is surer)."""
CONFIDENT_GATES = tuple((round(0.70 + 0.02 * i, 2), t) for i in range(13) for t in CONFIDENT_THRESHOLDS)
"""Every ``(min_similarity, threshold)`` confident gate that calibration tries."""


def threshold_for_precision(scores: np.ndarray, labels: np.ndarray, target: float) -> tuple[float, float, float]:
    """Lowest threshold whose accepted set reaches ``target`` precision: (threshold, precision, recall).

    Returns threshold ``inf`` (accept nothing) when no threshold reaches the target.
    """
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order].astype(bool)
    tp = np.cumsum(y)
    precision = tp / np.arange(1, len(y) + 1)
    best = (math.inf, 1.0, 0.0)
    positives = max(1, int(y.sum()))
    for i in range(len(s)):
        # Only cut between distinct scores: every pair at the threshold is accepted.
        if i + 1 < len(s) and s[i + 1] == s[i]:
            continue
        if precision[i] >= target:
            best = (float(s[i]), float(precision[i]), float(tp[i] / positives))
    return best


def card_for(arrays: dict[str, np.ndarray], card: dict[str, object]) -> dict[str, object]:
    """The card to ship with ``arrays``: ``card`` plus library, feature and lexicon versions."""
    import datetime

    from .. import __version__

    return {
        **card,
        "library_version": __version__,
        "created": datetime.date.today().isoformat(),
        "features": list(FEATURE_NAMES),
        "features_version": FEATURES_VERSION,
        "lexicon_version": LEXICON_VERSION,
        "layers": sum(1 for k in arrays if k[:1] == "w" and k[1:].isdigit()),
    }
