"""Training and measuring the complexity classifier from labelled prompts.

A ``LabelledSet`` is prompts with labels (simple = 0, complex = 1) and where they came from;
``train`` embeds them once, fits a ``LogisticComplexityClassifier``, calibrates its threshold
(fixed, to a target large-tier share, or to a target recall of complex prompts, using
out-of-fold probabilities so the training rows are not judged by a model that saw them) and
measures it on held-out rows; ``evaluate`` computes the metrics a card and the CLI report.

Not here: reading files (the CLI does that and hands over rows), the model itself (``classify``).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..routing.classify import (
    LogisticComplexityClassifier,
    threshold_for_recall,
    threshold_for_share,
)
from ..errors import ConfigError

__all__ = ["Evaluation", "LabelledSet", "ThresholdRule", "evaluate", "labelled_set", "parse_label", "train"]

_LABELS = {"simple": 0, "0": 0, "complex": 1, "1": 1}
LABEL_DEFINITION = (
    "simple = a single fact, definition, lookup or short instruction a small model answers in a sentence "
    "or two; complex = multi-step reasoning, calculation, comparison, planning, code, or a long multi-part request"
)


ROUTING_LABEL_DEFINITION = (
    "for the routing head: complex (1) = the weak model answered wrong and the strong model right; "
    "simple (0) = otherwise (the weak model was right, or neither was: a larger model does not help)"
)


def parse_label(value: str, *, where: str = "") -> int:
    """``simple``/``0`` -> 0, ``complex``/``1`` -> 1; anything else is a ``ConfigError``."""
    key = str(value).strip().lower()
    if key not in _LABELS:
        raise ConfigError(f"{where}unknown label {value!r}; use simple|complex or 0|1")
    return _LABELS[key]


@dataclass(frozen=True)
class LabelledSet:
    """Prompts with labels (1 = complex) and optional per-row groups such as source or language."""

    name: str
    prompts: tuple[str, ...]
    labels: np.ndarray = field(repr=False, compare=False)
    sha256: str = ""
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict, repr=False, compare=False)

    def counts(self) -> dict[str, int]:
        n_complex = int(self.labels.sum())
        return {"simple": len(self.prompts) - n_complex, "complex": n_complex}

    def without(self, prompts: Collection[str]) -> tuple[LabelledSet, int]:
        """This set minus rows whose prompt (case-folded) is in ``prompts``; and how many went."""
        banned = {p.strip().casefold() for p in prompts}
        keep = [i for i, p in enumerate(self.prompts) if p.casefold() not in banned]
        if len(keep) == len(self.prompts):
            return self, 0
        groups = {g: tuple(v[i] for i in keep) for g, v in self.groups.items()}
        kept = LabelledSet(self.name, tuple(self.prompts[i] for i in keep), self.labels[keep], self.sha256, groups)
        return kept, len(self.prompts) - len(keep)


def labelled_set(rows: Sequence[Mapping[str, str]], *, name: str, sha256: str = "") -> LabelledSet:
    """Build a set from rows with ``prompt`` and ``label`` (plus optional ``lang``/``source``)."""
    if not rows:
        raise ConfigError(f"{name}: no rows")
    prompts, labels = [], []
    for number, row in enumerate(rows, start=2):
        prompt = str(row.get("prompt") or "").strip()
        if not prompt:
            raise ConfigError(f"{name}: row {number} has an empty prompt")
        prompts.append(prompt)
        labels.append(parse_label(row.get("label", ""), where=f"{name}: row {number}: "))
    groups = {g: tuple(str(r.get(g) or "") for r in rows) for g in ("lang", "source", "kind") if g in rows[0]}
    return LabelledSet(name, tuple(prompts), np.array(labels, dtype=np.int64), sha256, groups)


@dataclass(frozen=True)
class ThresholdRule:
    """How the threshold is set: ``fixed`` (value), ``share`` (target large share) or ``recall``."""

    kind: str = "fixed"
    target: float = 0.5

    def __post_init__(self) -> None:
        if self.kind not in ("fixed", "share", "recall"):
            raise ConfigError(f"threshold rule must be fixed, share or recall, not {self.kind!r}")
        if not 0.0 <= self.target <= 1.0:
            raise ConfigError(f"threshold target must be in [0, 1], got {self.target}")


@dataclass(frozen=True)
class Evaluation:
    """Metrics of a classifier at its threshold on one labelled set."""

    n: int
    threshold: float
    accuracy: float
    roc_auc: float | None
    precision: Mapping[str, float]
    recall: Mapping[str, float]
    confusion: tuple[tuple[int, int], tuple[int, int]]  # rows: true simple, complex; cols: predicted
    large_share: float
    by_group: Mapping[str, Mapping[str, Mapping[str, float]]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "threshold": round(self.threshold, 6),
            "accuracy": round(self.accuracy, 6),
            "roc_auc": None if self.roc_auc is None else round(self.roc_auc, 6),
            "precision": {k: round(v, 6) for k, v in self.precision.items()},
            "recall": {k: round(v, 6) for k, v in self.recall.items()},
            "confusion": {"rows=true simple,complex; cols=predicted simple,complex": [list(r) for r in self.confusion]},
            "large_share": round(self.large_share, 6),
            "by_group": {g: {k: dict(v) for k, v in d.items()} for g, d in self.by_group.items()},
        }


def _ratio(a: int, b: int) -> float:
    return a / b if b else 0.0


def _auc(labels: np.ndarray, p: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, p)) if len(set(labels.tolist())) == 2 else None


def evaluate(classifier: LogisticComplexityClassifier, vectors: np.ndarray, data: LabelledSet) -> Evaluation:
    """Accuracy, per-class precision/recall, ROC AUC, confusion and large share at the threshold."""
    p = classifier.predict_proba(vectors, data.prompts)
    y, pred = data.labels, (p >= classifier.threshold).astype(np.int64)
    tp = int(((pred == 1) & (y == 1)).sum())
    tn = int(((pred == 0) & (y == 0)).sum())
    fp = int(((pred == 1) & (y == 0)).sum())
    fn = int(((pred == 0) & (y == 1)).sum())
    by_group: dict[str, dict[str, dict[str, float]]] = {}
    for group, values in data.groups.items():
        col = np.array(values)
        by_group[group] = {}
        for value in sorted(set(values)):
            mask = col == value
            auc = _auc(y[mask], p[mask])
            entry = {"n": int(mask.sum()), "accuracy": round(float((pred[mask] == y[mask]).mean()), 6)}
            if auc is not None:
                entry["roc_auc"] = round(auc, 6)
            by_group[group][value] = entry
    return Evaluation(
        n=len(y),
        threshold=float(classifier.threshold),
        accuracy=_ratio(tp + tn, len(y)),
        roc_auc=_auc(y, p),
        precision={"simple": _ratio(tn, tn + fn), "complex": _ratio(tp, tp + fp)},
        recall={"simple": _ratio(tn, tn + fp), "complex": _ratio(tp, tp + fn)},
        confusion=((tn, fp), (fn, tp)),
        large_share=_ratio(tp + fp, len(y)),
        by_group=by_group,
    )


def _out_of_fold(vectors: np.ndarray, data: LabelledSet, *, C: float, seed: int, folds: int = 5,
                 like: LogisticComplexityClassifier | None = None) -> np.ndarray:
    """P(complex) for each training row from a model fitted without that row's fold.

    With ``like`` (a classifier with a routing head) each fold model borrows that head: it was
    fitted on other rows (the routing set), so the training rows stay out of sample for it.
    """
    from sklearn.model_selection import StratifiedKFold

    p = np.empty(len(data.prompts), dtype=np.float64)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    texts = np.array(data.prompts, dtype=object)
    for fit_idx, held_idx in splitter.split(vectors, data.labels):
        fold = LogisticComplexityClassifier(C=C, seed=seed).fit(vectors[fit_idx], list(texts[fit_idx]), data.labels[fit_idx])
        held_texts = list(texts[held_idx])
        z = fold.decision_function(vectors[held_idx], held_texts)
        if like is not None and hasattr(like, "routing_"):
            z = _with_routing(z, like, vectors[held_idx], held_texts)
        p[held_idx] = 1.0 / (1.0 + np.exp(-np.clip(z, -500, 500)))
    return p


def _with_routing(z: np.ndarray, full: LogisticComplexityClassifier, vectors: np.ndarray, texts) -> np.ndarray:
    """A fold's complexity logit combined with the full model's routing head (fitted on other rows)."""
    clip = full.routing_["clip"]
    return np.clip(z, -clip, clip) + full._routing_terms(vectors, full._scaled_features(texts))


def _calibrate(clf, rule: ThresholdRule, vectors, data, reference) -> dict[str, Any]:
    like = clf if hasattr(clf, "routing_") else None
    if rule.kind == "fixed":
        clf.threshold = rule.target
        return {"kind": "fixed", "target": rule.target}
    if rule.kind == "recall":
        oof = _out_of_fold(vectors, data, C=clf.C, seed=clf.seed, like=like)
        clf.threshold = threshold_for_recall(oof, data.labels, rule.target)
        return {"kind": "recall", "target": rule.target, "on": f"{data.name} (5-fold out-of-fold)"}
    if reference is not None:
        ref_vectors, ref_texts, ref_name = reference
        clf.calibrate_share(ref_vectors, ref_texts, rule.target)
        return {"kind": "share", "target": rule.target, "on": ref_name}
    oof = _out_of_fold(vectors, data, C=clf.C, seed=clf.seed, like=like)
    clf.threshold = threshold_for_share(oof, rule.target)
    return {"kind": "share", "target": rule.target, "on": f"{data.name} (5-fold out-of-fold)"}


def train(
    data: LabelledSet,
    *,
    embedder: Any,
    heldout: LabelledSet | None = None,
    rule: ThresholdRule = ThresholdRule(),
    reference: tuple[Sequence[str], str] | None = None,
    routing: LabelledSet | None = None,
    C: float = 1.0,
    seed: int = 0,
    keep_out: Collection[str] = (),
    progress: Callable[[str], None] = lambda _msg: None,
) -> tuple[LogisticComplexityClassifier, dict[str, Any]]:
    """Embed, fit, calibrate and measure; return the classifier and its card (not yet saved).

    ``reference`` is (prompts, name) of unlabelled traffic for a ``share`` rule. ``routing`` is
    an optional set labelled 1 where only the large model answered well (e.g. RouteLLM's
    golden labels); it trains the routing head (``fit_routing``) before the threshold is set.
    ``keep_out`` are prompts no fit or calibration may see (the hard set,
    ``data/complexity_hard.csv``): matching rows are dropped and counted on the card.
    """
    data, dropped = data.without(keep_out)
    if routing is not None:
        routing, dropped_routing = routing.without(keep_out)
        dropped += dropped_routing
    if reference is not None:
        banned = {p.strip().casefold() for p in keep_out}
        kept_ref = [p for p in reference[0] if p.strip().casefold() not in banned]
        dropped += len(reference[0]) - len(kept_ref)
        reference = (kept_ref, reference[1])
    if dropped:
        progress(f"left out {dropped} rows that are in the held-out hard set")
    counts = data.counts()
    if min(counts.values()) == 0:
        raise ConfigError(f"{data.name}: needs both simple and complex rows, got {counts}")
    progress(f"embedding {len(data.prompts)} training prompts with {embedder.name}")
    vectors = embedder.embed(list(data.prompts))
    progress("fitting logistic regression")
    clf = LogisticComplexityClassifier(C=C, seed=seed).fit(vectors, data.prompts, data.labels)
    if routing is not None:
        progress(f"embedding {len(routing.prompts)} routing prompts")
        clf.fit_routing(embedder.embed(list(routing.prompts)), routing.prompts, routing.labels)
    ref = None
    if reference is not None:
        progress(f"embedding {len(reference[0])} reference prompts")
        ref = (embedder.embed(list(reference[0])), list(reference[0]), reference[1])
    threshold_rule = _calibrate(clf, rule, vectors, data, ref)
    progress(f"threshold {clf.threshold:.4f} ({threshold_rule['kind']} {threshold_rule['target']})")
    card: dict[str, Any] = {
        "model": "logistic regression on [embedding, scaled text features] -> P(complex)",
        "label_definition": LABEL_DEFINITION,
        "embedder": {"name": embedder.name, "dim": int(vectors.shape[1])},
        "threshold_rule": threshold_rule,
        "training": {**_describe(data), "kept_out_rows": dropped},
        **({"routing": {**_describe(routing), "label_definition": ROUTING_LABEL_DEFINITION}} if routing else {}),
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "library": _versions(),
    }
    if heldout is not None:
        progress(f"embedding {len(heldout.prompts)} held-out prompts")
        result = evaluate(clf, embedder.embed(list(heldout.prompts)), heldout)
        card["heldout"] = {**_describe(heldout), "metrics": result.as_dict()}
        progress(f"held-out accuracy {result.accuracy:.3f}, ROC AUC {result.roc_auc}")
    return clf, card


def _describe(data: LabelledSet) -> dict[str, Any]:
    out: dict[str, Any] = {"file": data.name, "sha256": data.sha256, "rows": len(data.prompts), "counts": data.counts()}
    for group, values in data.groups.items():
        tally: dict[str, int] = {}
        for value, label in zip(values, data.labels.tolist()):
            key = f"{value}/{'complex' if label else 'simple'}"
            tally[key] = tally.get(key, 0) + 1
        out[f"by_{group}"] = dict(sorted(tally.items()))
    return out


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("semroute", "scikit-learn", "numpy"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = _source_version() if dist == "semroute" else "unknown"
    return out


def _source_version() -> str:
    """The version in pyproject.toml when running from a source tree without installing."""
    from pathlib import Path

    try:
        import tomllib  # Python 3.11+
    except ImportError:
        return "unknown"
    try:
        with (Path(__file__).resolve().parent.parent / "pyproject.toml").open("rb") as f:
            return str(tomllib.load(f)["project"]["version"]) + " (source tree)"
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown"
