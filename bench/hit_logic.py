"""The semantic tier's own cost (no embedding) with an embedder's shipped verifier and consensus, at N entries.

    PYTHONPATH=. HF_HUB_OFFLINE=1 python bench/hit_logic.py [--embedder multilingual-e5-small]
        [--entries 10000] [--queries 500] [--answers unique|per-intent] [--index auto|flat|hnsw]
        [--out bench/results/hit_logic.json]

Entries and queries are banking77 and clinc150 train/test utterances whose vectors are already in
the embedding cache (``bench/results/cache/<embedder>.npz``, written by the training and quality
scripts), so nothing is embedded here. Times ``SemanticCache.semantic`` per query: index search
over N entries (in the Router's index, ``auto``: HNSW at 10k; ``--index flat`` searches exactly),
store fetch, the pair verifier on up to 4 candidates, the answer consensus. Beside it, in the same
run and interleaved query by query (which setup goes first alternates; each has its own verifier,
so none inherits another's memo of the query): the same lookups with the language guard the Router
adds (``shipped_guarded``; each query is new to it), and with a plain cosine gate
(``ThresholdVerifier``, no consensus). p50 over all lookups and over those the shipped setup served
(``hits_p50``: a hit also runs the pair model and the guard). Issue 13's target: semantic-hit logic
<= 1 ms at 10k entries. Not the embedding (``bench/embedders.py``) or the whole request
(``bench/cache_latency.py``); against another revision: ``bench/lookup_ab.py``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import shared_data as sd  # noqa: E402

from semroute.embed import make_embedder  # noqa: E402
from semroute.hits.consensus import AnswerConsensus  # noqa: E402
from semroute.hits.language import LanguageGuard  # noqa: E402
from semroute.hits.verify import PairVerifier, ThresholdVerifier  # noqa: E402


def rows_with_vectors(vectors: dict, split_pairs) -> list[tuple[str, str, np.ndarray]]:
    return [(t, label, vectors[t]) for t, label in split_pairs if t in vectors]


def build(rows, verifier, consensus, answers: str, language=None, index: str = "auto", package: str = "semroute"):
    """A ``SemanticCache`` over ``rows`` in scope "b" (``package``: another tree's copy, ``bench/lookup_ab.py``)."""
    mod = lambda name: importlib.import_module(f"{package}.{name}")  # noqa: E731
    cache, types = mod("cache"), mod("types")
    out = mod("hits").SemanticCache(cache.MemoryStore(max_entries=len(rows) + 1), cache.FaissIndex(len(rows[0][2]), kind=index),
                                    verifier, top_k=4, clock=lambda: 0.0, consensus=consensus, language=language)
    out.insert([types.CacheEntry(id=str(i), key=str(i), scope="b", namespace="b", question=t,
                                 answer=f"answer for {label}" if answers == "per-intent" else f"answer {i}",
                                 vector=v, created_at=0.0) for i, (t, label, v) in enumerate(rows)])
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--embedder", default="multilingual-e5-small")
    ap.add_argument("--entries", type=int, default=10_000)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--answers", choices=("unique", "per-intent"), default="unique")
    ap.add_argument("--index", choices=("auto", "flat", "hnsw"), default="auto",
                    help="the index kind (default: the Router's, CacheSettings.index = auto: HNSW from 4,096 entries)")
    ap.add_argument("--out", default="bench/results/hit_logic.json")
    args = ap.parse_args()
    base = make_embedder(args.embedder)
    with np.load(f"bench/results/cache/{base.name}.npz", allow_pickle=False) as data:
        vectors = dict(zip(data["texts"].tolist(), data["vectors"]))
    pool = rows_with_vectors(vectors, sd.banking77("train") + sd.clinc150("train"))
    tests = rows_with_vectors(vectors, sd.banking77("test") + sd.clinc150("test"))
    if len(pool) < args.entries or len(tests) < args.queries:
        raise SystemExit(f"the embedding cache holds {len(pool)} train / {len(tests)} test utterances; "
                         "run bench/cache_quality.py or train-verifier with --embedding-cache first")
    rng = np.random.default_rng(0)
    rows = [pool[i] for i in rng.choice(len(pool), args.entries, replace=False)]
    queries = [tests[i] for i in rng.choice(len(tests), args.queries, replace=False)]
    def shipped(language=None):
        # Each setup its own verifier: a shared one would hand the second setup the query's analysis
        # the first one made (its memo), so the second would look cheaper than it is.
        verifier = PairVerifier.default(embedder=base.name, dim=base.dim)
        consensus = AnswerConsensus.over(verifier, embedder=base.name, dim=base.dim)
        return build(rows, verifier, consensus, args.answers, language, args.index)

    guard = LanguageGuard()
    guard.load()
    caches = {"shipped": shipped(), "shipped_guarded": shipped(guard),
              "cosine_gate": build(rows, ThresholdVerifier(0.9), None, args.answers, index=args.index)}
    for text, _, v in queries[:20]:  # warm them all (first calls pay lazy imports and allocation)
        for cache in caches.values():
            cache.semantic(text, v, "b")
    times: dict[str, list[float]] = {name: [] for name in caches}
    served: list[bool] = []  # whether the shipped setup served a hit, per timed query
    order = list(caches.items())
    for n, (text, _, v) in enumerate(queries[20:]):  # not the warm-up queries: each timed query is new
        for name, cache in order if n % 2 == 0 else order[::-1]:
            t0 = time.perf_counter()
            hit, _ = cache.semantic(text, v, "b")
            times[name].append((time.perf_counter() - t0) * 1000)
            if name == "shipped":
                served.append(hit is not None)
    hits = sum(served)
    stats = {n: {"p50": round(float(np.percentile(t, 50)), 3), "p95": round(float(np.percentile(t, 95)), 3),
                 "hits_p50": round(float(np.percentile([x for x, s in zip(t, served) if s], 50)), 3) if hits else None}
             for n, t in times.items()}
    out = {"embedder": base.name, "entries": args.entries, "index": args.index, "queries": args.queries, "answers": args.answers,
           "shipped_hits": hits, "ms": stats, "ratio_p50": round(stats["shipped"]["p50"] / stats["cosine_gate"]["p50"], 2),
           "guarded_ratio_p50": round(stats["shipped_guarded"]["p50"] / stats["shipped"]["p50"], 2),
           "loadavg": os.getloadavg()}
    print(f"{base.name}, {args.entries} entries ({args.index} index), answers {args.answers}, load {os.getloadavg()[0]:.2f}: "
          f"shipped verifier+consensus p50 {stats['shipped']['p50']:.3f} ms p95 {stats['shipped']['p95']:.3f} ms, "
          f"its {hits} hits p50 {stats['shipped']['hits_p50']} ms | with the language guard p50 {stats['shipped_guarded']['p50']:.3f} ms "
          f"p95 {stats['shipped_guarded']['p95']:.3f} ms, hits p50 {stats['shipped_guarded']['hits_p50']} ms | cosine gate p50 {stats['cosine_gate']['p50']:.3f} ms | ratio {out['ratio_p50']}x")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
