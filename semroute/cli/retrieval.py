"""``semroute eval --retrieval CACHE QUERIES``: hit quality of a whole cache, not one pair at a time.

CACHE (CSV or JSON Lines) has ``id,question`` and optionally ``answer``; QUERIES has ``query`` and
``expected`` (the id of the entry that answers it, or empty when the query must miss). Every query
is looked up through ``SemanticCache`` as the Router does (top 4 candidates, the configured
verifier, the answer consensus unless turned off, and the language guard unless
``--cross-language``); a hit is correct when it serves the expected entry or another entry with
the same non-empty answer. The cosine-only baseline serves
the nearest entry when its similarity clears a threshold; its best recall at the verifier's
precision is reported too. ``semroute calibrate --retrieval`` sweeps the consensus threshold over
the same lookups and reports the lowest one that reaches a target precision.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click
import numpy as np

from ..errors import ConfigError
from .files import read_rows

if TYPE_CHECKING:
    from ..hits.language import LanguageGuard

__all__ = ["calibrate_retrieval", "run_retrieval"]


def _load(cache_path: str, queries_path: str | None):
    if queries_path is None:
        raise ConfigError("--retrieval needs two files: CACHE.csv QUERIES.csv")
    cache_rows = read_rows(cache_path, ("id", "question"))
    ids = [r["id"].strip() for r in cache_rows]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{cache_path}: ids must be unique")
    queries = read_rows(queries_path, ("query",))
    if "expected" not in queries[0]:
        raise ConfigError(f"{queries_path}: missing column expected (an id from {cache_path}, or empty)")
    for number, q in enumerate(queries, start=2):
        expected = (q.get("expected") or "").strip()
        if expected and expected not in ids:
            raise ConfigError(f"{queries_path}: row {number}: expected id {expected!r} is not in {cache_path}")
    return cache_rows, queries


def run_retrieval(cache_path, queries_path, *, as_json: bool, verifier, embedder, consensus: bool = True,
                  cross_language: bool = False) -> None:
    cache_rows, queries, vc, vq = _prepare(cache_path, queries_path, embedder)
    verify = verifier(embedder)
    voter = _consensus(verify, embedder) if consensus else None
    result = _lookups(cache_rows, queries, vc, vq, verify, voter, embedder.name, language_guard(cross_language))
    result["consensus"] = None if voter is None else {"k": voter.k, "threshold": voter.threshold}
    if as_json:
        click.echo(json.dumps(result, indent=2, ensure_ascii=False))
        return
    click.echo(f"queries {result['queries']} (must hit {result['must_hit']}, must miss {result['must_miss']})")
    click.echo(f"hits {result['hits']}: correct {result['correct']}, false {len(result['false_hits'])}")
    click.echo(f"precision {result['precision']:.3f}  recall {result['recall']:.3f}  F1 {result['f1']:.3f}")
    click.echo(f"cosine only at the same precision: recall {result['baseline']['recall_at_same_precision']:.3f}")
    if result["by_path"]:
        click.echo("served by: " + ", ".join(f"{path} {n['hits']} ({n['correct']} right)"
                                             for path, n in sorted(result["by_path"].items())))
    for f in result["false_hits"]:
        click.echo(f"  {f['query']!r} served {f['served']} (expected {f['expected']})")


def calibrate_retrieval(cache_path, queries_path, *, target: float, verifier, embedder,
                        cross_language: bool = False) -> dict[str, object]:
    """The consensus threshold with the best recall at precision >= ``target`` on this cache."""
    cache_rows, queries, vc, vq = _prepare(cache_path, queries_path, embedder)
    verify = verifier(embedder)
    voter = _consensus(verify, embedder)
    if voter is None:
        raise ConfigError("calibrating the consensus needs the pair verifier (--verifier pair)")
    curve = []
    guard = language_guard(cross_language)  # one for the whole sweep: loaded once, each question ranked once
    for threshold in _GRID:
        r = _lookups(cache_rows, queries, vc, vq, verify, voter.with_threshold(threshold), embedder.name, guard)
        curve.append({"threshold": threshold, "precision": r["precision"], "recall": r["recall"]})
    reached = [c for c in curve if c["precision"] >= target]
    best = max(reached, key=lambda c: (c["recall"], -c["threshold"]), default=None)
    return {"target_precision": target, "reached": best is not None,
            "consensus_threshold": None if best is None else best["threshold"],
            "precision": None if best is None else best["precision"],
            "recall": None if best is None else best["recall"], "curve": curve}


_GRID = (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.88, 0.9, 0.92, 0.94, 0.96, 0.98, 1.0)


def _prepare(cache_path, queries_path, embedder):
    cache_rows, queries = _load(cache_path, queries_path)
    vc = embedder.embed([r["question"] for r in cache_rows])
    vq = embedder.embed([q["query"] for q in queries])
    return cache_rows, queries, vc, vq


def _consensus(verifier, embedder):
    """The shipped consensus over this verifier's pair model, as the Router builds it (None: no pair model)."""
    from ..hits.consensus import AnswerConsensus

    return AnswerConsensus.over(verifier, embedder=embedder.name, dim=embedder.dim)


def language_guard(cross_language: bool) -> LanguageGuard | None:
    """The Router's language guard, or None with ``--cross-language``."""
    from ..hits.language import LanguageGuard

    return None if cross_language else LanguageGuard()


def _lookups(cache_rows, queries, vc, vq, verifier, consensus, embedder_name: str, language) -> dict[str, object]:
    from ..cache import FaissIndex, MemoryStore
    from ..hits import SemanticCache
    from ..hits.consensus import served_by
    from ..types import CacheEntry
    from ..hits.verify import PLACEHOLDER_ANSWER

    cache = SemanticCache(MemoryStore(max_entries=len(cache_rows) + 1), FaissIndex(vc.shape[1]), verifier,
                          top_k=4, clock=lambda: 0.0, consensus=consensus, language=language)
    cache.insert([CacheEntry(id=r["id"].strip(), key=r["id"].strip(), scope="eval", namespace="eval",
                             question=r["question"], answer=(r.get("answer") or "").strip() or PLACEHOLDER_ANSWER,
                             vector=vc[i], created_at=0.0, embedder=embedder_name) for i, r in enumerate(cache_rows)])
    answers = {r["id"].strip(): (r.get("answer") or "").strip() for r in cache_rows}
    served, top1, false_hits = [], [], []
    by_path: dict[str, dict[str, int]] = {}
    for q, vec in zip(queries, vq):
        expected = (q.get("expected") or "").strip() or None
        hit, judged = cache.semantic(q["query"], vec, "eval")
        nearest = max((c for c, _ in judged), key=lambda c: c.similarity, default=None)
        top1.append((nearest.similarity if nearest else -1.0, _right(nearest and nearest.entry.id, expected, answers)))
        ok = hit is not None and _right(hit.entry.id, expected, answers)
        served.append((hit is not None, ok))
        if hit is None:
            continue
        path = served_by(hit)
        counts = by_path.setdefault(path, {"hits": 0, "correct": 0})
        counts["hits"] += 1
        counts["correct"] += ok
        if not ok:
            false_hits.append({"query": q["query"], "served": hit.entry.id, "expected": expected, "path": path,
                               "similarity": round(hit.similarity, 4), "reason": hit.verdict.reason if hit.verdict else ""})
    summary = _summary(served, top1, sum(1 for q in queries if (q.get("expected") or "").strip()), false_hits)
    return {**summary, "by_path": by_path}


def _right(served: str | None, expected: str | None, answers: dict[str, str]) -> bool:
    """The expected entry, or another one carrying the same (non-empty) answer."""
    if served is None or expected is None:
        return False
    return served == expected or (answers[expected] != "" and answers[served] == answers[expected])


def _summary(served, top1, must_hit: int, false_hits) -> dict[str, object]:
    hits = sum(h for h, _ in served)
    correct = sum(ok for _, ok in served)
    precision = correct / hits if hits else 1.0
    recall = correct / must_hit if must_hit else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    sims = np.asarray([s for s, _ in top1])
    oks = np.asarray([ok for _, ok in top1])
    order = np.argsort(-sims, kind="stable")
    cum = np.cumsum(oks[order])
    prec = cum / np.arange(1, len(order) + 1)
    reach = [cum[i] / max(1, must_hit) for i in range(len(order)) if prec[i] >= precision]
    return {"queries": len(served), "must_hit": must_hit, "must_miss": len(served) - must_hit, "hits": hits,
            "correct": correct, "precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
            "false_hits": false_hits,
            "baseline": {"kind": "cosine top-1", "recall_at_same_precision": round(float(max(reach, default=0.0)), 4)}}
