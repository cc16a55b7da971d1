"""How much recall the pair verifier's gates can buy over cosine alone, per set, at one precision.

    PYTHONPATH=. HF_HUB_OFFLINE=1 nice -n 10 python bench/verifier_frontier.py [--embedder multilingual-e5-small]
        [--model DIR] [--target 0.97] [--out bench/results/verifier_frontier.json]

For the tuning caches the gates are chosen on (``semroute.training.tuning``: banking77, clinc150,
TQP train groups, the traffic FAQ's tuning split) and for held-out sets never trained or tuned on
(TQP dev paraphrase groups, the traffic FAQ's test split, the demo's paraphrase and near-miss rows;
built as in ``bench/cache_quality.py``), each query's 4 nearest cached rows are scored once by the
pair model. Then, per set and in the same run:
- cosine alone: the best recall of serving the nearest row when its cosine clears a floor;
- pair gates: the best recall over every (cosine floor, model threshold) pair of the grid, each
  set on its own (an upper bound no single operating point reaches on every set at once);
- the model's own operating point (its card), as the router serves it without the consensus.
A gate grid whose best is no better than cosine alone says the pair model adds no recall at that
precision on that set: the floor, not the veto, decides. No consensus here (``cache_quality.py``).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cache_quality as cq  # noqa: E402
import shared_data as sd  # noqa: E402

from semroute.embed import make_embedder  # noqa: E402
from semroute.hits.verify import PairVerifier  # noqa: E402
from semroute.training.embedcache import CachedEmbedder  # noqa: E402
from semroute.training.sources import SharedData, traffic_set  # noqa: E402
from semroute.training.tuning import tuning_sets  # noqa: E402
from semroute.training.verifier_job import candidates, served  # noqa: E402

HELD_OUT = ("tqp_dev", "traffic_test", "traffic_demo")
THRESHOLDS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
FLOORS = np.round(np.arange(0.80, 0.995, 0.005), 3)


def best_recall(cands, must_hit: int, target: float, threshold: float) -> tuple[float, float | None]:
    """Best recall at precision >= target over the cosine floors, with the pair model at ``threshold``."""
    best: tuple[float, float | None] = (0.0, None)
    for floor in FLOORS:
        p, r = served(cands, lambda c, f=floor: c[0] >= f and c[1] >= threshold, must_hit)
        if p >= target and r > best[0]:
            best = (r, float(floor))
    return best


def cosine_only(cands, must_hit: int, target: float) -> tuple[float, float | None]:
    """Serving the nearest row when its cosine clears a floor (no pair model at all)."""
    top1 = [[max(cs, key=lambda c: c[0])] for cs in cands]
    best: tuple[float, float | None] = (0.0, None)
    for floor in FLOORS:
        p, r = served(top1, lambda c, f=floor: c[0] >= f, must_hit)
        if p >= target and r > best[0]:
            best = (r, float(floor))
    return best


def sets(data, traffic, embed):
    for name, cache, queries in tuning_sets(data, traffic):
        yield "tuning", name, cache, queries
    for name, rows, queries in cq.datasets(random.Random(0), False):
        if name in HELD_OUT:
            yield "held_out", name, [(q, label) for q, _, label in rows], queries


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--embedder", default="multilingual-e5-small")
    ap.add_argument("--model", default=None, help="a verifier directory (default: the shipped one)")
    ap.add_argument("--target", type=float, default=0.97)
    ap.add_argument("--embedding-cache", default=None)
    ap.add_argument("--out", default="bench/results/verifier_frontier.json")
    args = ap.parse_args()
    base = make_embedder(args.embedder)
    embed = CachedEmbedder(base, Path(args.embedding_cache or f"bench/results/cache/{base.name}.npz"))
    verifier = (PairVerifier.load(args.model, embedder=base.name, dim=base.dim) if args.model
                else PairVerifier.default(embedder=base.name, dim=base.dim))
    point = (verifier.min_similarity, verifier.threshold)
    rows = []
    for kind, name, cache, queries in sets(SharedData(sd.DATA), traffic_set(cq.ROOT / "data"), embed):
        cands = candidates(verifier, embed, cache, queries)
        n = sum(label is not None for _, label in queries)
        cos_r, cos_floor = cosine_only(cands, n, args.target)
        gates = {t: best_recall(cands, n, args.target, t) for t in THRESHOLDS}
        top = max(gates.items(), key=lambda kv: kv[1][0])
        p, r = served(cands, lambda c: c[0] >= point[0] and c[1] >= point[1], n)
        row = {"set": name, "kind": kind, "queries": len(queries), "must_hit": n,
               "cosine_only": {"recall": round(cos_r, 4), "min_similarity": cos_floor},
               "best_pair_gate": {"recall": round(top[1][0], 4), "threshold": top[0], "min_similarity": top[1][1]},
               "by_threshold": {str(t): {"recall": round(r_, 4), "min_similarity": f} for t, (r_, f) in gates.items()},
               "operating_point": {"min_similarity": point[0], "threshold": point[1],
                                   "precision": round(p, 4), "recall": round(r, 4)}}
        rows.append(row)
        print(f"{kind:8s} {name:13s} n={len(queries):5d} cosine only R={cos_r:.3f} (floor {cos_floor}) | "
              f"best pair gate R={top[1][0]:.3f} (P>={top[0]}, floor {top[1][1]}) | "
              f"card's point P={p:.3f} R={r:.3f}")
    embed.save()
    out = {"embedder": base.name, "model": args.model or "shipped", "target_precision": args.target,
           "operating_point": {"min_similarity": point[0], "threshold": point[1]}, "sets": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
