"""The demo's replay (``semroute demo``) with any embedder: how many paraphrase rows the cache serves.

    PYTHONPATH=. HF_HUB_OFFLINE=1 python bench/demo_replay.py [--embedder multilingual-e5-small]

Warms a ``Router`` with data/traffic_faq.csv exactly as ``semroute demo`` does (two fake Ollama
tiers answer misses), replays data/demo_queries.csv and counts, per expected outcome, what
answered: the target is >= 8 of the 10 ``semantic`` rows from the cache and no ``miss`` row
served from it. Next to it, the same replay with MiniLM (the embedder the demo shipped with).
``semroute demo`` itself uses the router's default embedder.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import Counter
from pathlib import Path

from semroute.artifacts import shipped
from semroute.cli.demo import _tiers
from semroute.cli.files import read_rows
from semroute.embed import make_embedder
from semroute.router import Router


def replay(name: str) -> dict[str, object]:
    faq = read_rows(shipped("data", "traffic_faq.csv"), ("question", "answer"))
    rows = read_rows(shipped("data", "demo_queries.csv"), ("question", "expect"))
    with _tiers(None) as (tiers, _), tempfile.TemporaryDirectory() as tmp:
        with Router(tiers=tiers, data_dir=Path(tmp), embedder=make_embedder(name)) as router:
            router.warm([(r["question"], r["answer"]) for r in faq])
            answers = [(r, router.ask(r["question"])) for r in rows]
            unavailable = {k: router.metrics.count(k) for k in ("verifier.unavailable", "consensus.unavailable")}
    by = Counter((r["expect"], a.source) for r, a in answers)
    # Each disagreement says which gate refused it (the nearest row's cosine and the pair model's verdict).
    wrong = [{"question": r["question"], "expected": r["expect"], "decision": a.source, "cached": a.cached_question,
              "nearest_similarity": a.nearest_similarity,
              "refused_because": None if a.verdict is None or a.verdict.accepted else a.verdict.reason}
             for r, a in answers if (r["expect"] == "semantic") != (a.source == "semantic") and r["expect"] in ("semantic", "miss")]
    out = {"embedder": name, "semantic_rows_served": by[("semantic", "semantic")],
           "semantic_rows": sum(r["expect"] == "semantic" for r in rows),
           "near_misses_served": by[("miss", "semantic")] + by[("miss", "exact")],
           "near_misses": sum(r["expect"] == "miss" for r in rows),
           "exact_rows_exact": by[("exact", "exact")], "decisions": {f"{e}->{s}": n for (e, s), n in sorted(by.items())},
           "models_unavailable": unavailable, "disagreements": wrong}
    print(f"{name}: paraphrase rows served {out['semantic_rows_served']}/{out['semantic_rows']}, "
          f"near misses served {out['near_misses_served']}/{out['near_misses']}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--embedder", default="multilingual-e5-small")
    ap.add_argument("--baseline", default="all-MiniLM-L6-v2")
    ap.add_argument("--out", default="bench/results/demo_replay.json")
    args = ap.parse_args()
    results = [replay(args.embedder), replay(args.baseline)]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
