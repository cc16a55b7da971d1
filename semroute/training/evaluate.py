"""Measuring a verifier on labelled pairs: precision, recall, false hits, and the cosine baseline.

For each (query, cached, label) row an empty ``SemanticCache`` holds only the cached question
(with its answer, or ``PLACEHOLDER_ANSWER``) and the query is looked up through the real hit
path, so what is measured is what the cache would serve. The cosine-only baseline's
precision/recall curve comes from the same run's similarities. This module computes; the CLI
(``semroute eval`` / ``calibrate``) reads files and prints, ``bench/`` adds datasets.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from ..embed import Embedder
from ..errors import ConfigError
from .verifier import threshold_for_precision
from ..types import CacheEntry
from ..hits.verify import PLACEHOLDER_ANSWER, Verifier, pair_scorer

if TYPE_CHECKING:
    from ..hits.judge import AnswerJudge
    from ..hits.language import LanguageGuard
    from ..settings import JudgeSettings

__all__ = ["JudgeReport", "Judged", "PairRow", "PairsReport", "cosine_curve", "judge_grey_pairs", "judge_pairs", "report"]

_SCOPE = "eval"


@dataclass(frozen=True, slots=True)
class PairRow:
    query: str
    cached: str
    label: int
    answer: str = ""


@dataclass(frozen=True, slots=True)
class Judged:
    """One row after lookup: served or not, with the cosine similarity and the verdict."""

    row: PairRow
    similarity: float
    hit: bool
    score: float
    reason: str


@dataclass(frozen=True, slots=True)
class PairsReport:
    rows: int
    positives: int
    tp: int
    fp: int
    fn: int
    tn: int
    precision: float
    recall: float
    f1: float
    false_hits: tuple[Judged, ...]
    curve: tuple[tuple[float, float, float], ...]  # cosine baseline: (min_similarity, precision, recall)
    baseline_min_similarity: float  # lowest cosine threshold reaching the verifier's precision
    baseline_recall: float  # the baseline's recall there (0 when it cannot reach it)

    def as_dict(self) -> dict[str, object]:
        return {
            "rows": self.rows,
            "positives": self.positives,
            "negatives": self.rows - self.positives,
            "tp": self.tp, "fp": self.fp, "fn": self.fn, "tn": self.tn,
            "precision": round(self.precision, 4) if self.tp + self.fp else None,  # nothing served: no precision
            "recall": round(self.recall, 4),
            "f1": round(self.f1, 4),
            "false_hits": [
                {"query": j.row.query, "cached": j.row.cached, "similarity": round(j.similarity, 4),
                 "score": round(j.score, 4), "reason": j.reason}
                for j in self.false_hits
            ],
            "baseline": {
                "kind": "cosine",
                "min_similarity_at_same_precision": None if math.isinf(self.baseline_min_similarity)
                else round(self.baseline_min_similarity, 4),
                "recall_at_same_precision": round(self.baseline_recall, 4),
                "curve": [{"min_similarity": round(t, 4), "precision": round(p, 4), "recall": round(r, 4)}
                          for t, p, r in self.curve],
            },
        }


def judge_pairs(rows: Sequence[PairRow], embedder: Embedder, verifier: Verifier,
                language: LanguageGuard | None = None) -> list[Judged]:
    """Look each query up in a cache holding only its row's cached question (with the Router's
    language guard when given one: a pair in two languages is then refused, as the Router would)."""
    from ..cache import FaissIndex, MemoryStore
    from ..hits import SemanticCache

    if not rows:
        raise ConfigError("no pairs to evaluate")
    vq = embedder.embed([r.query for r in rows])
    vc = embedder.embed([r.cached for r in rows])
    out = []
    for i, row in enumerate(rows):
        cache = SemanticCache(MemoryStore(), FaissIndex(embedder.dim), verifier, top_k=1, clock=lambda: 0.0,
                              language=language)
        cache.insert([CacheEntry(
            id=f"row{i}", key=f"row{i}", scope=_SCOPE, namespace="eval", question=row.cached,
            answer=row.answer or PLACEHOLDER_ANSWER, vector=vc[i], created_at=0.0, embedder=embedder.name,
        )])
        hit, judged = cache.semantic(row.query, vq[i], _SCOPE)
        similarity = judged[0][0].similarity if judged else float(vq[i] @ vc[i])
        verdict = judged[0][1] if judged else None
        out.append(Judged(row, float(similarity), hit is not None,
                          verdict.score if verdict else 0.0, verdict.reason if verdict else "not found"))
    return out


def cosine_curve(similarities: np.ndarray, labels: np.ndarray, points: int = 41) -> list[tuple[float, float, float]]:
    """(min_similarity, precision, recall) of a cosine-only cache over a grid of thresholds."""
    out = []
    positives = max(1, int(labels.sum()))
    for t in np.linspace(min(0.0, float(similarities.min())), 1.0, points):
        acc = similarities >= t
        tp = int((acc & (labels == 1)).sum())
        out.append((float(t), tp / int(acc.sum()) if acc.any() else 1.0, tp / positives))
    return out


def report(judged: Sequence[Judged]) -> PairsReport:
    labels = np.asarray([j.row.label for j in judged])
    hits = np.asarray([j.hit for j in judged])
    sims = np.asarray([j.similarity for j in judged])
    tp = int((hits & (labels == 1)).sum())
    fp = int((hits & (labels == 0)).sum())
    fn = int((~hits & (labels == 1)).sum())
    tn = len(judged) - tp - fp - fn
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    threshold, _, base_recall = threshold_for_precision(sims, labels, precision) if tp else (math.inf, 1.0, 0.0)
    return PairsReport(
        rows=len(judged), positives=int(labels.sum()), tp=tp, fp=fp, fn=fn, tn=tn,
        precision=precision, recall=recall, f1=f1,
        false_hits=tuple(j for j in judged if j.hit and j.row.label == 0),
        curve=tuple(cosine_curve(sims, labels)), baseline_min_similarity=threshold, baseline_recall=base_recall,
    )


@dataclass(frozen=True, slots=True)
class JudgeReport:
    """The grey-zone judge on the same pairs: what it was asked, what it cost, and the result with it."""

    model: str
    min_similarity: float
    min_probability: float
    grey_zone: int  # missed rows inside the grey zone (each one judged)
    calls: int  # model calls (repeated rows come from the judge's cache)
    replies: dict[str, int]  # yes / no / unparsed / error
    latency_ms: dict[str, float]  # p50 / p95 of the model calls
    with_judge: PairsReport
    added_hits: int

    def as_dict(self) -> dict[str, object]:
        w = self.with_judge.as_dict()
        return {
            "model": self.model, "min_similarity": self.min_similarity, "min_probability": self.min_probability,
            "grey_zone": self.grey_zone, "calls": self.calls,
            **{k: self.replies.get(k, 0) for k in ("yes", "no", "unparsed")}, "errors": self.replies.get("error", 0),
            "latency_ms": {k: round(v, 3) for k, v in self.latency_ms.items()},
            "with_judge": {k: w[k] for k in ("tp", "fp", "fn", "tn", "precision", "recall", "f1", "false_hits")}
            | {"added_hits": self.added_hits},
        }


def judge_grey_pairs(
    judged: Sequence[Judged], verifier: Verifier, judge: AnswerJudge, settings: JudgeSettings
) -> JudgeReport:
    """Ask ``judge`` about each missed row in the grey zone (as the router would) and report both ways.

    A row is in the grey zone when it missed, its cosine is >= ``settings.min_similarity`` and a
    verifier with a pair model gives P >= ``settings.min_probability``; "yes" turns it into a hit.
    """
    scorer = pair_scorer(verifier)
    probability = None if scorer is None else scorer.probability
    out, replies, grey = [], {"yes": 0, "no": 0, "unparsed": 0, "error": 0}, 0
    for j in judged:
        row = j.row
        if j.hit or j.similarity < settings.min_similarity or (
            probability is not None and probability(row.query, row.cached, j.similarity) < settings.min_probability
        ):
            out.append(j)
            continue
        grey += 1
        verdict = judge.judge(row.query, row.cached, row.answer or PLACEHOLDER_ANSWER)
        replies[verdict.reply] += 1
        out.append(replace(j, hit=True, reason=f"judge {judge.model}: yes; {j.reason}") if verdict.accepted else j)
    latency = judge.metrics.percentiles("judge.call", (50, 95))
    return JudgeReport(
        model=judge.model, min_similarity=settings.min_similarity, min_probability=settings.min_probability,
        grey_zone=grey, calls=int(judge.metrics.count("judge.calls")), replies=replies,
        latency_ms={k: latency[k] for k in ("p50", "p95") if k in latency},
        with_judge=report(out), added_hits=replies["yes"],
    )
