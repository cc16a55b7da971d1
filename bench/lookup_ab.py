"""A semantic lookup's cost, this working tree against another revision, in one process, interleaved.

``bench/hit_logic.py`` times one tree; across runs minutes apart this machine's speed moves by a
third (the same code: 0.63 to 0.96 ms p50, 2026-12-06), more than most changes to the lookup do.
Here the other revision's package is imported beside this one (``git archive REF semroute`` into a
temporary directory, renamed ``semroute_ref``; nothing is checked out), both build the same
cache (10k banking77/clinc150 train utterances, e5 vectors from the embedding cache, the shipped
verifier, consensus and language guard, the Router's index kind), and each query goes to both,
which goes first alternating. Each timed query is new to both (no memo has seen its text), as a
semantic lookup's text is: a repeated one is the exact tier's. Both load this tree's model files
(``semroute.models``), so only the code differs.

Prints p50 of every lookup and of those that served a hit, both trees' and their ratio, and how
many lookups decided alike (same entry, same similarity); writes JSON.

    PYTHONPATH=. HF_HUB_OFFLINE=1 python bench/lookup_ab.py [--ref HEAD] [--answers unique|per-intent]
        [--entries 10000] [--queries 2000] [--no-guard] [--seen] [--out bench/results/lookup_ab.json]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
import shared_data as sd  # noqa: E402
from hit_logic import build as build_cache, rows_with_vectors  # noqa: E402


def import_ref(ref: str, where: Path) -> str:
    """``ref``'s package importable as ``semroute_ref`` (from ``where``); returns its commit."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "semroute"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True)
    (where / "semroute").rename(where / "semroute_ref")
    sys.path.insert(0, str(where))
    return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", ref], capture_output=True, text=True,
                          check=True).stdout.strip()


def build(package: str, rows, answers: str, guard: bool):
    """``package``'s SemanticCache over ``rows`` with its shipped e5 models and guard, as the Router builds it."""
    verify = importlib.import_module(f"{package}.hits.verify")
    verifier = verify.PairVerifier.default(embedder="multilingual-e5-small", dim=384)
    consensus = importlib.import_module(f"{package}.hits.consensus").AnswerConsensus.over(
        verifier, embedder="multilingual-e5-small", dim=384)
    language = None
    if guard:
        language = importlib.import_module(f"{package}.hits.language").LanguageGuard()
        language.load()
    return build_cache(rows, verifier, consensus, answers, language, package=package)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ref", default="HEAD", help="the other revision (default HEAD: this tree's uncommitted change)")
    ap.add_argument("--answers", choices=("unique", "per-intent"), default="unique")
    ap.add_argument("--entries", type=int, default=10_000)
    ap.add_argument("--queries", type=int, default=2_000)
    ap.add_argument("--no-guard", action="store_true", help="without the language guard (the Router has it)")
    ap.add_argument("--seen", action="store_true",
                    help="look every cached question up once first, so the pair features' analysis and the "
                         "language guard remember it (a long-running cache; by default each hit may meet a "
                         "cached question for the first time)")
    ap.add_argument("--out", default="bench/results/lookup_ab.json")
    args = ap.parse_args()
    with np.load(ROOT / "bench/results/cache/multilingual-e5-small.npz", allow_pickle=False) as data:
        vectors = dict(zip(data["texts"].tolist(), data["vectors"]))
    pool = rows_with_vectors(vectors, sd.banking77("train") + sd.clinc150("train"))
    tests = rows_with_vectors(vectors, sd.banking77("test") + sd.clinc150("test"))
    warm = 50
    if len(pool) < args.entries or len(tests) < args.queries + warm:
        raise SystemExit(f"the embedding cache holds {len(pool)} train / {len(tests)} test utterances; "
                         "run bench/cache_quality.py --embedder multilingual-e5-small first")
    rng = np.random.default_rng(0)
    rows = [pool[i] for i in rng.choice(len(pool), args.entries, replace=False)]
    queries = [tests[i] for i in rng.choice(len(tests), args.queries + warm, replace=False)]
    with tempfile.TemporaryDirectory() as where:
        commit = import_ref(args.ref, Path(where))
        caches = {"ref": build("semroute_ref", rows, args.answers, not args.no_guard),
                  "tree": build("semroute", rows, args.answers, not args.no_guard)}
    for text, _, v in queries[:warm]:  # first calls pay lazy imports and allocation
        for cache in caches.values():
            cache.semantic(text, v, "b")
    if args.seen:  # every cached question looked up once: its analysis and language are remembered
        for text, _, v in rows:
            for cache in caches.values():
                cache.semantic(text, v, "b")
    times: dict[str, list[float]] = {name: [] for name in caches}
    hit_times: dict[str, list[float]] = {name: [] for name in caches}
    alike = 0
    for n, (text, _, v) in enumerate(queries[warm:]):
        got = {}
        for name in (("ref", "tree") if n % 2 == 0 else ("tree", "ref")):
            t0 = time.perf_counter()
            hit, _ = caches[name].semantic(text, v, "b")
            times[name].append((time.perf_counter() - t0) * 1000)
            got[name] = None if hit is None else (hit.entry.id, round(hit.similarity, 6))
        alike += got["ref"] == got["tree"]
        if got["tree"] is not None:
            for name in caches:
                hit_times[name].append(times[name][-1])
    p50 = {name: round(float(np.percentile(t, 50)), 3) for name, t in times.items()}
    hits_p50 = {name: round(float(np.percentile(t, 50)), 3) if t else None for name, t in hit_times.items()}
    out = {"ref": args.ref, "commit": commit, "answers": args.answers, "entries": args.entries,
           "queries": args.queries, "guard": not args.no_guard, "seen": args.seen, "p50_ms": p50, "ratio_p50": round(p50["tree"] / p50["ref"], 3),
           "hits": len(hit_times["tree"]), "hits_p50_ms": hits_p50,
           "hits_ratio_p50": round(hits_p50["tree"] / hits_p50["ref"], 3) if hit_times["tree"] else None,
           "decided_alike": alike, "loadavg": os.getloadavg()}
    print(f"{args.answers} answers, {args.entries} entries, guard {out['guard']}, seen {args.seen}, ref {args.ref} ({commit}): "
          f"p50 {p50['ref']:.3f} -> {p50['tree']:.3f} ms (x{out['ratio_p50']}); hits ({out['hits']}) "
          f"{hits_p50['ref']} -> {hits_p50['tree']} ms (x{out['hits_ratio_p50']}); decided alike {alike}/{args.queries}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
