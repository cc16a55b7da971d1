"""Complexity classifiers choose the model tier for a cache miss.

The seam takes the embeddings the cache already computed (the router embeds once) and the
texts, and returns P(complex) per request. ``FixedTier`` always picks one tier;
``LogisticComplexityClassifier`` is a logistic regression over the embedding plus cheap text
features that read the ask rather than the length (``routing.features``; raw length has weight 0
in this head), trained with scikit-learn but stored and applied as plain
numpy arrays (one dot product per request, no pickle). Its ``threshold`` is calibrated either
to a target share of large-tier calls on reference traffic or to a target recall of complex
prompts. The trained default ships in ``models/<embedder>/complexity`` with a JSON card.

An optional *routing head* (``fit_routing``) is a second logistic regression over the same
inputs, trained on "did the small model fail where the large one succeeded" labels. With it the
score is ``clip(complexity logit, -c, c) + weight * routing logit + length_weight * scaled
log_chars`` (defaults c = 1, weight 0.5, length_weight 0): the complexity head still separates
simple from complex, and among prompts it is sure about, the routing head decides which most need
the large tier.

Not here: reading label files and measuring a model (``semroute.training.complexity``), choosing
instances or falling back between tiers (the router's pipeline).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..artifacts import card_embedder, load_artifact, model_dir, write_artifact
from ..errors import ConfigError, DimensionMismatch, ModelError, ModelMismatch
from ..types import Decision
from .features import FEATURE_NAMES, LENGTH_FREE, text_features
from .thresholds import threshold_for_recall, threshold_for_share

__all__ = [
    "ARTIFACT_FORMAT",
    "ComplexityClassifier",
    "FixedTier",
    "LogisticComplexityClassifier",
    "decide",
    "default_model_dir",
    "load_default_classifier",
    "threshold_for_recall",
    "threshold_for_share",
]

# /3: the text features read the ask, not the length (``features.FEATURE_NAMES``); the routing head
# is optional within the format (its arrays and the card's ``routing`` go together).
ARTIFACT_FORMAT = "semroute.complexity/3"
ROUTING_FORMAT = ARTIFACT_FORMAT
_FORMATS = (ARTIFACT_FORMAT,)
# Cards of the length-reading feature set (log_chars, log_words, ...): their weights mean nothing
# for today's features, so loading one is a mismatch to retrain, not a corrupt file.
_OLD_FORMATS = ("semroute.complexity/1", "semroute.complexity/2")
_CARD = "card.json"
_ARRAYS = ("coef", "feature_coef", "intercept", "feature_mean", "feature_scale")
_ROUTE_ARRAYS = ("route_coef", "route_feature_coef", "route_intercept")
_LENGTH = FEATURE_NAMES.index("log_chars")
# Columns the complexity head fits; the others (raw length) keep weight 0 there.
_HEAD_COLUMNS = np.array([i for i, name in enumerate(FEATURE_NAMES) if name not in LENGTH_FREE])


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


def _sigmoid(z: np.ndarray) -> np.ndarray:
    # Split by sign so large |z| never overflows exp().
    out = np.empty_like(z, dtype=np.float64)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out


class LogisticComplexityClassifier:
    """P(complex) = sigmoid(w·embedding + v·scaled text features + b).

    scikit-learn conventions: the constructor only stores its arguments, ``fit`` returns self,
    learned state ends in ``_``. ``threshold`` is a setting, not learned: ``calibrate_share``
    and ``calibrate_recall`` set it from data, and the card records how.
    ``class_weight="balanced"`` makes 0.5 a sensible threshold whatever the class mix.
    """

    def __init__(
        self, *, C: float = 1.0, threshold: float = 0.5, seed: int = 0, class_weight: str | None = "balanced"
    ) -> None:
        self.C = C
        self.threshold = threshold
        self.seed = seed
        self.class_weight = class_weight

    # -- training ---------------------------------------------------------------------------

    def fit(self, vectors: np.ndarray, texts: Sequence[str], labels: Sequence[int] | np.ndarray):
        """Learn weights from unit embeddings, their texts and labels (1 = complex, 0 = simple)."""
        from sklearn.linear_model import LogisticRegression

        x_emb = self._check_vectors(vectors, texts, dim=None)
        y = np.asarray(labels, dtype=np.int64).reshape(-1)
        if y.shape[0] != x_emb.shape[0]:
            raise ConfigError(f"{x_emb.shape[0]} vectors but {y.shape[0]} labels")
        if set(np.unique(y).tolist()) != {0, 1}:
            raise ConfigError("training needs both simple (0) and complex (1) examples, and only those labels")
        raw = text_features(texts)
        mean = raw.mean(axis=0)
        scale = raw.std(axis=0)
        scale[scale == 0] = 1.0  # a constant feature carries no signal; keep it finite
        scaled = (raw - mean) / scale
        x = np.hstack([x_emb.astype(np.float64), scaled[:, _HEAD_COLUMNS]])
        model = LogisticRegression(C=self.C, class_weight=self.class_weight, random_state=self.seed, max_iter=5000)
        model.fit(x, y)
        dim = x_emb.shape[1]
        self.coef_ = model.coef_[0, :dim].copy()
        self.feature_coef_ = np.zeros(len(FEATURE_NAMES))
        self.feature_coef_[_HEAD_COLUMNS] = model.coef_[0, dim:]  # LENGTH_FREE columns stay 0
        self.intercept_ = float(model.intercept_[0])
        self.feature_mean_ = mean
        self.feature_scale_ = scale
        self.feature_names_ = FEATURE_NAMES
        self.dim_ = dim
        self.n_train_ = int(y.shape[0])
        for stale in ("routing_", "route_coef_", "route_feature_coef_", "route_intercept_"):
            self.__dict__.pop(stale, None)  # a routing head belongs to the feature scaling it was fitted with
        return self

    def fit_routing(
        self,
        vectors: np.ndarray,
        texts: Sequence[str],
        labels: Sequence[int] | np.ndarray,
        *,
        C: float = 0.3,
        clip: float = 1.0,
        weight: float = 0.5,
        length_weight: float = 0.0,
    ):
        """Add a routing head fitted on ``labels`` (1 = only the large model answers well).

        Uses the complexity head's feature scaling, so call ``fit`` first. Unweighted classes:
        its logit should rank prompts by how likely the large tier helps, not balance them.
        The defaults were chosen on training data only, for the ask features (format /3): the
        highest APGR of 5-fold out-of-fold routing logits on the train half of RouteLLM's labels
        (grid clip 1-6, weight 0.5-2, length_weight 0-2) among settings whose out-of-fold accuracy
        on ``complexity_train.csv`` stays >= 0.95 overall and >= 0.9 on its chatty-simple and
        terse-complex rows (``complexity_ask.csv``). Clip 1, weight 0.5, length_weight 0 gave
        train-half APGR 0.609 (the format /2 setting 3/1/1: 0.592) at out-of-fold accuracy 0.966
        (0.945 on those rows). Raw length then enters only as one routing-head feature. The
        held-out half and the hard set were never consulted.
        """
        from sklearn.linear_model import LogisticRegression

        self._require_fitted()
        x_emb = self._check_vectors(vectors, texts, dim=self.dim_)
        y = np.asarray(labels, dtype=np.int64).reshape(-1)
        if y.shape[0] != x_emb.shape[0] or set(np.unique(y).tolist()) != {0, 1}:
            raise ConfigError("the routing head needs one 0/1 label per vector, with both labels present")
        if not (clip > 0 and weight >= 0 and length_weight >= 0):
            raise ConfigError("routing clip must be > 0 and its weights >= 0")
        x = np.hstack([x_emb.astype(np.float64), self._scaled_features(texts)])
        model = LogisticRegression(C=C, random_state=self.seed, max_iter=5000).fit(x, y)
        self.route_coef_ = model.coef_[0, : self.dim_].copy()
        self.route_feature_coef_ = model.coef_[0, self.dim_ :].copy()
        self.route_intercept_ = float(model.intercept_[0])
        self.routing_ = {"C": C, "clip": clip, "weight": weight, "length_weight": length_weight, "rows": int(y.shape[0])}
        return self

    def calibrate_share(self, vectors: np.ndarray, texts: Sequence[str], share: float):
        """Set ``threshold`` so that about ``share`` of this reference traffic goes to the large tier."""
        if not 0.0 <= share <= 1.0:
            raise ConfigError(f"target large-tier share must be in [0, 1], got {share}")
        p = self.predict_proba(vectors, texts)
        if len(p) == 0:
            raise ConfigError("calibrating to a share needs at least one reference prompt")
        self.threshold = threshold_for_share(p, share)
        return self

    def calibrate_recall(
        self, vectors: np.ndarray, texts: Sequence[str], labels: Sequence[int] | np.ndarray, recall: float
    ):
        """Set the highest ``threshold`` that still sends ``recall`` of the complex prompts to large."""
        p = self.predict_proba(vectors, texts)
        self.threshold = threshold_for_recall(p, np.asarray(labels), recall)
        return self

    # -- prediction -------------------------------------------------------------------------

    def decision_function(self, vectors: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        """Log-odds of complex, shape (n,)."""
        self._require_fitted()
        x_emb = self._check_vectors(vectors, texts, dim=self.dim_)
        feats = self._scaled_features(texts)
        z = x_emb @ self.coef_ + feats @ self.feature_coef_ + self.intercept_
        routing = getattr(self, "routing_", None)
        if routing is None:
            return z
        # Clipping keeps the complexity head's verdict (|z| is large for clear cases) while
        # letting the routing head and length order the prompts it is already sure about.
        return np.clip(z, -routing["clip"], routing["clip"]) + self._routing_terms(x_emb, feats)

    def _routing_terms(self, x_emb: np.ndarray, feats: np.ndarray) -> np.ndarray:
        route = x_emb @ self.route_coef_ + feats @ self.route_feature_coef_ + self.route_intercept_
        return self.routing_["weight"] * route + self.routing_["length_weight"] * feats[:, _LENGTH]

    def _scaled_features(self, texts: Sequence[str]) -> np.ndarray:
        return (text_features(texts) - self.feature_mean_) / self.feature_scale_

    def predict_proba(self, vectors: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        """P(complex) per request, shape (n,)."""
        return _sigmoid(np.asarray(self.decision_function(vectors, texts), dtype=np.float64))

    def predict(self, vectors: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        """True where the request goes to the large tier."""
        return self.predict_proba(vectors, texts) >= self.threshold

    # -- artifact ---------------------------------------------------------------------------

    def save(self, directory: str | Path, card: Mapping[str, Any]) -> Path:
        """Write ``model.npz`` (plain arrays) and ``card.json``; return the directory."""
        self._require_fitted()
        full = dict(card)
        routing = getattr(self, "routing_", None)
        if routing is not None:
            full["routing"] = {**dict(full.get("routing", {})), **routing}
        full.update(
            format=ARTIFACT_FORMAT,
            threshold=float(self.threshold),
            features=list(self.feature_names_),
            dim=int(self.dim_),
            hyperparameters={"C": self.C, "seed": self.seed, "class_weight": self.class_weight},
        )
        arrays = {
            "coef": self.coef_,
            "feature_coef": self.feature_coef_,
            "intercept": np.array([self.intercept_]),
            "feature_mean": self.feature_mean_,
            "feature_scale": self.feature_scale_,
        }
        if routing is not None:
            arrays.update(route_coef=self.route_coef_, route_feature_coef=self.route_feature_coef_,
                          route_intercept=np.array([self.route_intercept_]))
        write_artifact(directory, arrays, full)
        self.card_ = MappingProxyType(full)
        return Path(directory)

    @classmethod
    def load(cls, path: str | Path | None = None, *, embedder_name: str | None = None, dim: int | None = None):
        """Read an artifact directory (default: the shipped one) and check it fits the embedder.

        Raises ``ModelError`` if it is missing or unreadable and ``ModelMismatch`` if it was
        trained for another embedder name or dimension, or with other text features.
        """
        where = model_dir("complexity", embedder_name) if path is None else Path(path)
        card, arrays = _read(where)
        hyper = card.get("hyperparameters", {})
        clf = cls(
            C=float(hyper.get("C", 1.0)),
            threshold=float(card["threshold"]),
            seed=int(hyper.get("seed", 0)),
            class_weight=hyper.get("class_weight", "balanced"),
        )
        clf.coef_ = arrays["coef"].astype(np.float64)
        clf.feature_coef_ = arrays["feature_coef"].astype(np.float64)
        clf.intercept_ = float(arrays["intercept"].reshape(-1)[0])
        clf.feature_mean_ = arrays["feature_mean"].astype(np.float64)
        clf.feature_scale_ = arrays["feature_scale"].astype(np.float64)
        clf.feature_names_ = tuple(card["features"])
        clf.dim_ = int(card["dim"])
        clf.n_train_ = int(card.get("training", {}).get("rows", 0))
        clf.card_ = MappingProxyType(card)
        if "route_coef" in arrays:
            clf._load_routing(where, card, arrays)
        clf._check_artifact(where)
        clf.check_embedder(embedder_name, dim)
        return clf

    def check_embedder(self, name: str | None, dim: int | None) -> None:
        """Raise ``ModelMismatch`` unless the artifact was trained for this embedder (None = skip)."""
        self._require_fitted()
        trained_for = card_embedder(dict(getattr(self, "card_", {})))
        if name is not None and trained_for is not None and name != trained_for:
            raise ModelMismatch(f"complexity model was trained for embedder {trained_for!r}, not {name!r}")
        if dim is not None and dim != self.dim_:
            raise ModelMismatch(f"complexity model expects {self.dim_}-d embeddings, the embedder gives {dim}")

    # -- internals --------------------------------------------------------------------------

    def _load_routing(self, where: Path, card: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
        routing = card.get("routing")
        try:
            self.routing_ = {k: float(routing[k]) for k in ("clip", "weight", "length_weight")}
        except (TypeError, KeyError, ValueError) as exc:
            raise ModelError(f"{where / _CARD}: routing needs clip, weight and length_weight") from exc
        self.route_coef_ = arrays["route_coef"].astype(np.float64)
        self.route_feature_coef_ = arrays["route_feature_coef"].astype(np.float64)
        self.route_intercept_ = float(arrays["route_intercept"].reshape(-1)[0])
        ok = (self.route_coef_.shape == (self.dim_,) and self.route_feature_coef_.shape == (len(FEATURE_NAMES),)
              and all(np.isfinite(a).all() for a in (self.route_coef_, self.route_feature_coef_))
              and math.isfinite(self.route_intercept_) and all(map(math.isfinite, self.routing_.values())))
        if not ok:
            raise ModelError(f"{where}: routing head shapes do not match the card or are not finite")

    def _check_artifact(self, where: Path) -> None:
        if self.feature_names_ != FEATURE_NAMES:
            raise ModelMismatch(f"{where}: trained with text features {list(self.feature_names_)}, this library computes {list(FEATURE_NAMES)}")
        k = len(FEATURE_NAMES)
        shapes_ok = (
            self.coef_.shape == (self.dim_,)
            and self.feature_coef_.shape == (k,)
            and self.feature_mean_.shape == (k,)
            and self.feature_scale_.shape == (k,)
        )
        if not shapes_ok:
            raise ModelError(f"{where}: weight shapes do not match the card (dim {self.dim_}, {k} features)")
        finite = all(np.isfinite(a).all() for a in (self.coef_, self.feature_coef_, self.feature_mean_, self.feature_scale_))
        if not finite or not math.isfinite(self.intercept_) or (self.feature_scale_ == 0).any():
            raise ModelError(f"{where}: weights contain NaN, infinite or zero-scale values")

    def _require_fitted(self) -> None:
        if not hasattr(self, "coef_"):
            raise ModelError("the classifier is not fitted: call fit() or load()")

    @staticmethod
    def _check_vectors(vectors: np.ndarray, texts: Sequence[str], *, dim: int | None) -> np.ndarray:
        arr = np.asarray(vectors)
        if arr.ndim != 2:
            raise DimensionMismatch(f"expected a 2-d array of vectors, got shape {arr.shape}")
        if dim is not None and arr.shape[1] != dim:
            raise DimensionMismatch(f"complexity model expects {dim}-d embeddings, got {arr.shape[1]}")
        if arr.shape[0] != len(texts):
            raise DimensionMismatch(f"{arr.shape[0]} vectors but {len(texts)} texts")
        return arr


def default_model_dir(embedder_name: str | None = None) -> Path:
    """The shipped artifact for ``embedder_name`` (default: the MiniLM set)."""
    return model_dir("complexity", embedder_name)


def load_default_classifier(embedder: Any | None = None) -> LogisticComplexityClassifier:
    """The shipped classifier, checked against ``embedder`` (its ``name`` and ``dim``) if given."""
    if embedder is None:
        return LogisticComplexityClassifier.load()
    return LogisticComplexityClassifier.load(embedder_name=embedder.name, dim=embedder.dim)


def _read(where: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Card and arrays through the one artifact reader, checked for what this model needs."""
    if not (where / _CARD).exists():
        raise ModelError(f"{where}: no {_CARD}; train one with `semroute train-router`")
    card, arrays = load_artifact(where, "complexity model")
    if card.get("format") in _OLD_FORMATS:
        raise ModelMismatch(f"{where / _CARD}: a {card['format']} card reads the old length features; this library "
                            f"computes {list(FEATURE_NAMES)} ({ARTIFACT_FORMAT}): retrain with `semroute train-router`")
    if card.get("format") not in _FORMATS:
        raise ModelError(f"{where / _CARD}: not a {' or '.join(_FORMATS)} card")
    missing = [k for k in ("threshold", "features", "dim", "embedder") if k not in card]
    names = _ARRAYS + (_ROUTE_ARRAYS if "route_coef" in arrays or "routing" in card else ())
    missing += [name for name in names if name not in arrays]
    if missing:
        raise ModelError(f"{where}: missing {', '.join(missing)}")
    return card, {name: arrays[name] for name in names}
