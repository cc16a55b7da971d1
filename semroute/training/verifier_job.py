"""One training run of the pair verifier for one embedder: data, word table, fit, gates, card.

``train_verifier`` collects labelled pairs (``pair_data``), embeds a word table with the same
embedder (``verifier.word_vectors``), fits the pair model on 85% of the pairs, chooses both gates
and the confident gate on the tuning caches (``tuning``) and returns the arrays and card that
``semroute train-verifier`` writes to ``models/<embedder name>/verifier/``. Metrics in the card
are on the 15% validation pairs and on the held-out question families (never trained on), next
to cosine alone at the same precision. Not here: reading files or printing (``semroute.cli``).
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence

import numpy as np

from . import minimal_pairs as mp
from .pair_data import collect
from .sources import SharedData, TrafficSet
from .tuning import TuningSet, tuning_sets
from .verifier import CONFIDENT_GATES, LabelledPair, fit, threshold_for_precision, vocabulary, word_vectors

__all__ = ["Candidates", "choose_operating_point", "served", "train_verifier", "candidates"]

# (cosine, pair model P, right answer) of a query's 4 nearest cached rows.
Candidates = list[list[tuple[float, float, bool]]]


def candidates(verifier, embed, cache: Sequence[tuple[str, str]], queries: Sequence[tuple[str, str | None]]) -> Candidates:
    """Per query, its 4 nearest cached rows as (cosine, pair model P, right answer)."""
    vc, vq = embed([t for t, _ in cache]), embed([t for t, _ in queries])
    sims = vq @ vc.T
    top = np.argsort(-sims, axis=1)[:, :4]
    return [[(float(sims[i, j]), verifier.probability(q, cache[j][0], float(sims[i, j])), cache[j][1] == lab)
             for j in top[i]] for i, (q, lab) in enumerate(queries)]


def served(cands: Candidates, accept, must_hit: int | None = None) -> tuple[float, float]:
    """Precision and recall of serving the nearest accepted candidate."""
    picks = [max((c for c in cs if accept(c)), key=lambda c: c[0], default=None) for cs in cands]
    hits = [c for c in picks if c is not None]
    right = sum(c[2] for c in hits)
    return (right / len(hits) if hits else 1.0), right / max(1, must_hit if must_hit is not None else len(cands))


def _must_hit(queries) -> int:
    return sum(label is not None for _, label in queries)


def choose_operating_point(verifier, embed, sets: Sequence[TuningSet], target: float) -> dict[str, object]:
    """Both gates, then a confident gate, with every tuning set at ``target`` precision.

    For each model threshold, the lowest cosine floor (0.005 steps) at which every set reaches
    ``target``; the pair with the best mean recall wins. Then the confident gate (a lower cosine
    floor with a higher model threshold) adding the most mean recall while every set stays at
    ``target``; none when no gate adds any.
    """
    cands = {name: (candidates(verifier, embed, cache, queries), _must_hit(queries)) for name, cache, queries in sets}

    def scores(accept):
        return {name: served(c, accept, n) for name, (c, n) in cands.items()}

    best = {"threshold": 0.5, "min_similarity": 0.99, "mean_recall": 0.0}
    for tp in (0.3, 0.5, 0.7, 0.9):
        for tc in np.arange(0.60, 0.995, 0.005):
            got = scores(lambda c, tc=tc, tp=tp: c[0] >= tc and c[1] >= tp)
            if all(p >= target for p, _ in got.values()):
                mean = float(np.mean([r for _, r in got.values()]))
                if mean > best["mean_recall"]:
                    best = {"threshold": tp, "min_similarity": round(float(tc), 3), "mean_recall": round(mean, 4)}
                break
    floor, tp = best["min_similarity"], best["threshold"]
    base = scores(lambda c: c[0] >= floor and c[1] >= tp)
    gate, gain = None, 0.0
    for low, sure in (g for g in _gates() if g[0] < floor):
        got = scores(lambda c, low=low, sure=sure: (c[0] >= floor and c[1] >= tp) or (c[0] >= low and c[1] >= sure))
        if all(p >= target for p, _ in got.values()):
            more = float(np.mean([got[n][1] - base[n][1] for n in cands]))
            if more > gain + 1e-9:
                gate, gain = {"min_similarity": low, "threshold": sure, **_rounded(got)}, more
    return {**best, "confident": gate, "without_confident": _rounded(base), "target_precision": target,
            "chosen_on": {name: {"cache": len(cache), "queries": len(queries)} for name, cache, queries in sets}}


def _gates():
    # CONFIDENT_GATES spans cosines 0.70-0.94; multilingual embedders score higher, so go on to 0.98.
    return tuple(CONFIDENT_GATES) + tuple((round(0.96 + 0.02 * i, 2), t) for i in range(2) for t in (0.8, 0.85, 0.9, 0.95))


def _rounded(got):
    return {n: {"precision": round(p, 4), "recall": round(r, 4)} for n, (p, r) in got.items()}


def report(pairs: Sequence[LabelledPair], scores: np.ndarray, threshold: float) -> dict[str, float]:
    """AUC, precision and recall at ``threshold``, and cosine's recall at the same precision."""
    from sklearn.metrics import roc_auc_score

    labels = np.asarray([p.label for p in pairs])
    cos = np.asarray([p.similarity for p in pairs])
    acc = scores >= threshold
    tp = int((acc & (labels == 1)).sum())
    out = {"n": len(pairs), "positives": int(labels.sum()),
           "precision": round(tp / max(1, int(acc.sum())), 4), "recall": round(tp / max(1, int(labels.sum())), 4)}
    if 0 < labels.sum() < len(labels):
        out["auc"] = round(float(roc_auc_score(labels, scores)), 4)
        out["cosine_auc"] = round(float(roc_auc_score(labels, cos)), 4)
    _, _, cr = threshold_for_precision(cos, labels, min(out["precision"] or 1.0, 0.999))
    out["cosine_recall_at_same_precision"] = round(cr, 4)
    return out


def train_verifier(embed, *, data: SharedData, traffic: TrafficSet | None, exclude: frozenset[str] = frozenset(),
                   scale: float = 1.0, target: float = 0.97, hidden: tuple[int, ...] = (32, 16), seed: int = 0,
                   words: int | None = None, covid: bool = False, tune_on: frozenset[str] | None = None,
                   log=lambda line: None) -> tuple[dict[str, np.ndarray], dict[str, object]]:
    """Train the verifier for ``embed`` (an embedder; ``CachedEmbedder`` to reuse vectors); (arrays, card).

    ``tune_on``: the tuning sets the gates are chosen on (default: every one not excluded).
    """
    from ..hits.verify import PairVerifier

    t0 = time.time()
    rng = random.Random(seed)
    pairs = collect(data, traffic, embed, seed=seed, exclude=exclude, scale=scale, covid=covid)
    log(f"{len(pairs)} pairs collected ({time.time() - t0:.0f} s)")
    rng.shuffle(pairs)
    split = int(len(pairs) * 0.85)
    train, valid = pairs[:split], pairs[split:]
    weights = np.asarray([2.0 if p.source.startswith(("written", "xsid", "stsb")) else 1.0 for p in train])
    documents = sorted({t for p in pairs for t in (p.query, p.cached)})
    table = word_vectors(embed, vocabulary(documents, words or max(2000, int(6000 * scale))))
    log(f"word table: {len(table[0])} words ({time.time() - t0:.0f} s)")
    arrays = fit(train, documents=documents, weights=weights, vectors=table, hidden=hidden, seed=seed)
    log(f"fitted ({time.time() - t0:.0f} s)")
    verifier = PairVerifier.from_arrays(arrays, threshold=0.5, embedder=embed.name, dim=embed.dim)
    sets = [s for s in tuning_sets(data, traffic, exclude=exclude, scale=scale) if tune_on is None or s[0] in tune_on]
    point = choose_operating_point(verifier, embed, sets, target)
    log(f"operating point chosen ({time.time() - t0:.0f} s)")
    vs = np.asarray([verifier.probability(p.query, p.cached, p.similarity) for p in valid])
    metrics = {"valid_pair_model": report(valid, vs, point["threshold"])}
    for source in sorted({p.source.split(":")[0] for p in valid}):
        mask = np.asarray([p.source.split(":")[0] == source for p in valid])
        metrics[f"valid:{source}"] = report([p for p, m in zip(valid, mask) if m], vs[mask], point["threshold"])
    held = _heldout_families(embed, rng)
    hs = np.asarray([verifier.probability(p.query, p.cached, p.similarity) for p in held])
    metrics["heldout_families_pair_model"] = report(held, hs, point["threshold"])
    card = {
        "kind": "semroute.pair-verifier", "model": "mlp" + ",".join(map(str, hidden)) if hidden else "logistic",
        "embedder": embed.name, "dim": embed.dim, "threshold": point["threshold"],
        "min_similarity": point["min_similarity"],
        "confident": None if point["confident"] is None else {k: point["confident"][k] for k in ("min_similarity", "threshold")},
        "operating_point": point, "trained_pairs": len(train), "validation_pairs": len(valid),
        "training_data": sorted({p.source.split(":")[0] for p in pairs}), "left_out": sorted(exclude),
        "by_source": {s: sum(p.source.split(":")[0] == s for p in pairs) for s in sorted({p.source.split(":")[0] for p in pairs})},
        "word_vectors": {"kind": "whole words embedded with the verifier's embedder, PCA to 64, float16",
                         "words": len(table[0])},
        "sample_scale": scale, "metrics": metrics, "train_seconds": round(time.time() - t0, 1),
    }
    return arrays, card


def _heldout_families(embed, rng) -> list[LabelledPair]:
    held = mp.family_pairs(heldout=True, rng=rng)
    vq, vc = embed([q for q, *_ in held]), embed([c for _, c, *_ in held])
    return [LabelledPair(q, c, a, float(s), lab, f"heldout:{k}:{lang}")
            for (q, c, a, lab, k, lang), s in zip(held, np.einsum("ij,ij->i", vq, vc))]

