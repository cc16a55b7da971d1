"""Cache lookup latency without the embedding: exact and semantic hits over N entries.

Measures ``SemanticCache.exact`` and ``SemanticCache.semantic`` (index search + store reads +
verifier) with N random unit vectors (no model needed), for the flat and HNSW indexes, and a
baseline measured in the same run: a NumPy scan over every vector with a Python dict for the
exact tier (what a cache without an index does). Prints p50/p99 and the ratio to the baseline,
and writes JSON.

    PYTHONPATH=. python bench/cache_lookup.py [--entries 10000] [--dim 384] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from semroute.cache import FaissIndex, MemoryStore
from semroute.hits import SemanticCache
from semroute.request import exact_key, scope_of
from semroute.types import CacheEntry
from semroute.hits.verify import ThresholdVerifier


def percentiles(samples_s: list[float]) -> dict[str, float]:
    ms = np.asarray(samples_s) * 1e3
    return {"p50_ms": float(np.median(ms)), "p99_ms": float(np.percentile(ms, 99))}


def timed(fn, args_list) -> list[float]:
    out = []
    for args in args_list:
        start = time.perf_counter()
        fn(*args)
        out.append(time.perf_counter() - start)
    return out


def build(entries: int, dim: int, queries: int):
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((entries, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    scope = scope_of("bench", "policy")
    cached = [
        CacheEntry(id=f"e{i}", key=exact_key(scope, f"q{i}"), scope=scope, namespace="bench", question=f"q{i}",
                   answer="a", vector=vectors[i], created_at=0.0)
        for i in range(entries)
    ]
    picks = rng.integers(0, entries, queries)
    asked = vectors[picks] + 0.02 * rng.standard_normal((queries, dim)).astype(np.float32)
    asked /= np.linalg.norm(asked, axis=1, keepdims=True)
    return scope, vectors, cached, picks, asked


def baseline(vectors, cached, picks, asked) -> dict[str, object]:
    """No index: a full NumPy scan per query and a dict for exact keys."""
    by_key = {e.key: e for e in cached}

    def scan(q):
        scores = vectors @ q
        best = int(np.argmax(scores))
        return cached[best] if scores[best] >= 0.8 else None

    return {
        "semantic": percentiles(timed(scan, [(q,) for q in asked])),
        "exact": percentiles(timed(by_key.get, [(cached[i].key,) for i in picks])),
    }


def measure(kind: str, dim: int, scope: str, cached, picks, asked) -> dict[str, object]:
    cache = SemanticCache(MemoryStore(max_entries=len(cached)), FaissIndex(dim, kind=kind), ThresholdVerifier(0.8))
    start = time.perf_counter()
    cache.insert(cached)
    insert_s = time.perf_counter() - start
    hits = [cache.semantic("q", q, scope, 1.0)[0] for q in asked[:200]]
    recall = sum(h is not None and h.entry.id == f"e{i}" for h, i in zip(hits, picks[:200])) / len(hits)
    return {
        "insert_s": insert_s, "recall_at_1": recall,
        "semantic": percentiles(timed(cache.semantic, [("q", q, scope, 1.0) for q in asked])),
        "exact": percentiles(timed(cache.exact, [(cached[i].key, 1.0) for i in picks])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=2_000)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "cache_lookup.json"))
    args = parser.parse_args()
    scope, vectors, cached, picks, asked = build(args.entries, args.dim, args.queries)
    results: dict[str, object] = {
        "entries": args.entries, "dim": args.dim, "queries": args.queries, "python": platform.python_version(),
        "baseline": baseline(vectors, cached, picks, asked),
    }
    for kind in ("flat", "hnsw"):
        results[kind] = measure(kind, args.dim, scope, cached, picks, asked)
        for tier in ("exact", "semantic"):
            mine, base = results[kind][tier], results["baseline"][tier]
            print(f"{kind:4s} {tier:8s} p50 {mine['p50_ms']:.4f} ms  p99 {mine['p99_ms']:.4f} ms  "
                  f"(baseline p50 {base['p50_ms']:.4f} ms, ratio {mine['p50_ms'] / base['p50_ms']:.2f}x)")
        print(f"{kind:4s} insert {args.entries} in {results[kind]['insert_s']:.2f} s, "
              f"recall@1 {results[kind]['recall_at_1']:.3f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
