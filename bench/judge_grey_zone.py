"""How big is the grey zone, and how good must the judge be? (no model needed)

The grey-zone judge (``semroute.hits.judge``) asks the small tier's model about the nearest candidate
the verifier rejected with cosine >= ``min_similarity`` and pair-model P >= ``min_probability``.
Its quality needs a real model (``semroute eval PAIRS.csv --judge-model MODEL``); what can be
measured here is the grey zone itself, on banking77 in the issue's set-up (cache = every 10th
train utterance, all 77 intents; queries = the 3,080 test utterances; same intent = correct):

- how many lookups reach the judge (one model call each, before its cache),
- what share of grey-zone candidates are correct: the precision of a judge that always says yes,
- recall with a perfect judge (the ceiling), and the largest false-yes rate a judge that says
  yes to 90% of the correct ones may have while precision stays >= 0.97.

Baseline in the same run: the shipped pair verifier without the judge. Writes JSON to
``bench/results/judge_grey_zone.json``. Run: ``python bench/judge_grey_zone.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import shared_data as sd  # noqa: E402

from semroute import Candidate, CacheEntry, PairVerifier, SentenceTransformerEmbedder  # noqa: E402

TOP_K = 4  # CacheSettings' default
TARGET = 0.97


def lookups(cache, queries, embedder, verifier):
    """Per query: (verifier hit correct?, or None on a miss; grey candidates as (cosine, P, correct))."""
    vc = embedder.embed([t for t, _ in cache])
    vq = embedder.embed([t for t, _ in queries])
    entries = [CacheEntry(id=str(i), key=str(i), scope="b", namespace="b", question=t, answer=f"answer for {intent}",
                          vector=vc[i], created_at=0.0) for i, (t, intent) in enumerate(cache)]
    out = []
    for qi, (text, intent) in enumerate(queries):
        sims = vc @ vq[qi]
        nearest = np.argsort(-sims)[:TOP_K]
        hit, rejected = None, []
        for j in nearest:
            verdict = verifier.accept(text, Candidate(entries[j], float(sims[j])))
            if verdict.accepted:
                hit = cache[j][1] == intent
                break
            rejected.append((float(sims[j]), verifier.probability(text, cache[j][0], float(sims[j])),
                             cache[j][1] == intent))
        out.append((hit, rejected))
    return out


def grey_stats(results, n, min_similarity, min_probability):
    tp = sum(1 for hit, _ in results if hit is True)
    fp = sum(1 for hit, _ in results if hit is False)
    grey_pos = grey_neg = 0
    for hit, rejected in results:
        if hit is not None:
            continue
        # the router judges the nearest rejected candidate inside the grey zone (rejected is nearest first)
        pick = next(((s, p, ok) for s, p, ok in rejected if s >= min_similarity and p >= min_probability), None)
        if pick is not None:
            grey_pos += pick[2]
            grey_neg += not pick[2]
    grey = grey_pos + grey_neg
    # Judge saying yes to 90% of correct grey candidates: the false-yes rate that keeps precision >= TARGET.
    gain = 0.9 * grey_pos
    budget = ((tp + gain) / TARGET - (tp + fp + gain)) / grey_neg if grey_neg else float("inf")
    return {
        "min_similarity": min_similarity, "min_probability": min_probability,
        "judge_calls_per_lookup": round(grey / n, 4), "grey_zone": grey, "grey_correct": grey_pos,
        "always_yes_precision_in_grey": round(grey_pos / grey, 4) if grey else None,
        "recall_with_perfect_judge": round((tp + grey_pos) / n, 4),
        "precision_with_always_yes_judge": round((tp + grey_pos) / (tp + fp + grey), 4),
        "max_false_yes_rate_at_0.9_true_yes_for_precision_0.97": None if budget == float("inf")
        else round(max(0.0, budget), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="every 4th test query")
    args = parser.parse_args()
    embedder = SentenceTransformerEmbedder()
    verifier = PairVerifier.default(embedder=embedder.name, dim=embedder.dim)
    train, test = sd.banking77("train"), sd.banking77("test")
    cache, queries = train[::10], test[::4] if args.quick else test
    t0 = time.perf_counter()
    results = lookups(cache, queries, embedder, verifier)
    n = len(queries)
    tp = sum(1 for hit, _ in results if hit is True)
    fp = sum(1 for hit, _ in results if hit is False)
    baseline = {"precision": round(tp / (tp + fp), 4) if tp + fp else 1.0, "recall": round(tp / n, 4)}
    print(f"banking77: {len(cache)} cached, {n} queries; pair verifier alone: "
          f"precision {baseline['precision']:.3f} recall {baseline['recall']:.3f}")
    rows = [grey_stats(results, n, s, p) for s in (0.6, 0.65, 0.7, 0.75, 0.8) for p in (0.3, 0.5, 0.7)]
    print("min_sim min_P  calls/lookup  yes-always-precision(grey)  recall(perfect judge)  max false-yes rate")
    for r in rows:
        print(f"  {r['min_similarity']:.2f}  {r['min_probability']:.1f}  {r['judge_calls_per_lookup']:12.3f}  "
              f"{r['always_yes_precision_in_grey'] or 0:26.3f}  {r['recall_with_perfect_judge']:21.3f}  "
              f"{r['max_false_yes_rate_at_0.9_true_yes_for_precision_0.97']}")
    out = Path(__file__).resolve().parent / "results" / "judge_grey_zone.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"dataset": "banking77", "cached": len(cache), "queries": n, "top_k": TOP_K,
                               "baseline_pair_verifier": baseline, "grey_zone": rows,
                               "seconds": round(time.perf_counter() - t0, 1)}, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
