"""Leave-one-source-out: train the verifier and consensus without one source, test on that source.

    PYTHONPATH=. HF_HUB_OFFLINE=1 nice -n 10 python bench/loso.py [--embedder multilingual-e5-small]
        [--scale 0.3] [--queries 600] [--only banking77,tqp] [--embedding-cache bench/results/cache/NAME.npz]
        [--out bench/results/loso.json]

For every source S of banking77, clinc150, covid_faq, tqp, xsid, traffic: ``train_verifier`` and
``train_consensus`` (``semroute.training``) run with S excluded from the training pairs, the
adapter's sentences and the tuning caches (the COVID FAQ's labelled pairs are trained on in every
fold but its own); then the real ``SemanticCache`` (top 4, pair verifier + consensus) answers S's
test queries, none of which any fold trains on:
- banking77: cache = every 10th train utterance (with its intent's answer), queries = test;
- clinc150: cache = 10 train utterances per intent, queries = test + out-of-scope test (must miss);
- covid_faq: cache = the FAQ, queries = its labelled rewordings (the dataset's two FAQ links count);
- tqp: cache = one question per dev paraphrase group, queries = the other members;
- xsid: cache = the EN and TR test sentences, queries = one slot of each swapped for another
  value (must miss) and surface variants (lower case, no final punctuation: must hit); it
  measures the refusal of slot swaps, its recall is an easy floor;
- traffic: cache = data/traffic_faq.csv, queries = the test split of data/traffic_paraphrases.csv
  and the demo's paraphrase and near-miss rows.
Beside each: cosine alone in the same run (top-1 similarity threshold), its recall at the
system's precision and its best recall at precision >= 0.9. Queries are subsampled (``--queries``,
fixed seed) to keep a fold within minutes on a small CPU.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import shared_data as sd  # noqa: E402
from cache_quality import _retrieval_run  # noqa: E402

from semroute.artifacts import shipped  # noqa: E402
from semroute.embed import make_embedder  # noqa: E402
from semroute.hits.consensus import AnswerConsensus  # noqa: E402
from semroute.hits.verify import PairVerifier  # noqa: E402
from semroute.training import minimal_pairs as mp  # noqa: E402
from semroute.training.consensus import train_consensus  # noqa: E402
from semroute.training.embedcache import CachedEmbedder  # noqa: E402
from semroute.training.sources import SharedData, groups, traffic_set  # noqa: E402
from semroute.training.verifier_job import train_verifier  # noqa: E402

HELD_OUT = ("banking77", "clinc150", "covid_faq", "tqp", "xsid", "traffic")
TARGET = {"precision": 0.9, "recall": 0.4}


def test_set(source: str, rng: random.Random, n: int):
    """(cache rows (question, answer, label), queries (text, label or None)) for ``source``."""
    if source == "banking77":
        queries = sd.banking77("test")
        return [(t, f"answer for {i}", i) for t, i in sd.banking77("train")[::10]], rng.sample(queries, min(n, len(queries)))
    if source == "clinc150":
        cache = [(t, f"answer for {i}", i) for t, i in sd.first_per_intent(sd.clinc150("train"), 10)]
        return cache, rng.sample(sd.clinc150("test"), n * 2 // 3) + [(t, None) for t, _ in rng.sample(sd.clinc150("oos_test"), n // 3)]
    if source == "covid_faq":
        faq = sd.covid_faq()
        ids = {q.strip(): k for k, (q, _) in enumerate(faq)}
        same = {i: i for i in ids.values()}

        def find(i):
            while same[i] != i:
                i = same[i]
            return i

        for q1, q2, s in sd.covid_pairs():
            if s == 1 and q1.strip() in ids and q2.strip() in ids:
                same[find(ids[q2.strip()])] = find(ids[q1.strip()])
        queries = [(q2, find(ids[q1.strip()])) for q1, q2, s in sd.covid_pairs() if s == 1 and q1.strip() in ids]
        return [(q, a, find(ids[q.strip()])) for q, a in faq], queries
    if source == "tqp":
        parent = groups(sd.tqp_pairs("dev"))
        firsts: dict[str, str] = {}
        for t in sorted(parent):
            firsts.setdefault(parent[t], t)
        queries = [(t, parent[t]) for t in sorted(parent) if firsts[parent[t]] != t]
        return [(t, "", g) for g, t in firsts.items()], rng.sample(queries, min(n, len(queries)))
    if source == "xsid":
        return _xsid(rng, n)
    traffic = traffic_set(shipped("data"))
    with open(shipped("data", "demo_queries.csv"), encoding="utf-8") as fh:
        demo = [(r["question"], r["note"].split("'")[1] if r["expect"] == "semantic" else None)
                for r in csv.DictReader(fh) if r["expect"] in ("semantic", "miss")]
    return [(q, a, q) for q, a, _ in traffic.faq], traffic.split("test") + demo


def _xsid(rng, n):
    cache, queries = [], []
    for lang in ("en", "tr"):
        sentences = sd.xsid(lang, "test")
        for s in sentences:
            cache.append((s["text"], "", f"{lang}:{s['id']}"))
        original = {mp._detok(s["tokens"]): f"{lang}:{s['id']}" for s in sentences}
        swaps = mp.xsid_swaps(sentences, lang, rng)
        queries += [(q, None) for q, c, *_ in rng.sample(swaps, min(n // 4, len(swaps))) if c in original]
        picked = rng.sample(sentences, min(n // 4, len(sentences)))
        queries += [(s["text"].lower().rstrip("?.! "), f"{lang}:{s['id']}") for s in picked]
    return cache, queries


def cosine_at(result, precision: float) -> float:
    return max((c["recall"] for c in result["cosine_curve"] if c["precision"] >= precision), default=0.0)


def fold(source, embed, data, traffic, args, rng):
    t0 = time.time()
    arrays, card = train_verifier(embed, data=data, traffic=traffic, exclude=frozenset({source}), scale=args.scale,
                                  target=args.target_precision, covid=True, log=lambda line: print("   ", line, flush=True))
    verifier = PairVerifier(arrays, threshold=float(card["threshold"]), card=card)
    c_arrays, c_card = train_consensus(embed, verifier, data=data, traffic=traffic, exclude=frozenset({source}),
                                       scale=args.scale, target=args.target_precision, adapter=args.adapter_steps > 0, adapter_steps=args.adapter_steps,
                                       adapter_sentences=2000)
    consensus = AnswerConsensus(c_arrays, c_card, verifier.probability)
    cache_rows, queries = test_set(source, rng, args.queries)
    vc, vq = embed([q for q, _, _ in cache_rows]), embed([q for q, _ in queries])
    embed.save()
    res = _retrieval_run(source, cache_rows, queries, vc, vq, verifier, [], consensus, quiet=True)
    alone = _retrieval_run(source, cache_rows, queries, vc, vq, verifier, [], None, quiet=True)
    out = {"source": source, "queries": len(queries), "must_hit": res["must_hit"], "precision": res["precision"],
           "recall": res["recall"], "pair_verifier_only": {k: alone[k] for k in ("precision", "recall")},
           "cosine_recall_at_same_precision": res["cosine_recall_at_same_precision"],
           "cosine_recall_at_precision_0.9": cosine_at(res, 0.9),
           "operating_point": {"min_similarity": card["min_similarity"], "threshold": card["threshold"],
                               "confident": card["confident"], "consensus_threshold": c_card["threshold"]},
           "false_hit_examples": res["false_hit_examples"][:4], "seconds": round(time.time() - t0)}
    out["meets_target"] = out["precision"] >= TARGET["precision"] and out["recall"] >= TARGET["recall"]
    print(f"{source:10s} n={len(queries):4d} P={out['precision']:.3f} R={out['recall']:.3f} "
          f"(verifier alone P={alone['precision']:.3f} R={alone['recall']:.3f}) | cosine R at same P "
          f"{out['cosine_recall_at_same_precision']:.3f}, at P>=0.9 {out['cosine_recall_at_precision_0.9']:.3f}"
          f"{'' if out['meets_target'] else '  BELOW TARGET'}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--embedder", default="multilingual-e5-small")
    ap.add_argument("--scale", type=float, default=0.3)
    ap.add_argument("--target-precision", type=float, default=0.97,
                    help="the precision each fold's gates are chosen for on its tuning caches (shipped: 0.97)")
    ap.add_argument("--queries", type=int, default=600)
    ap.add_argument("--adapter-steps", type=int, default=500, help="0: no adapter (the vote in the embedding's space)")
    ap.add_argument("--only", default=None)
    ap.add_argument("--embedding-cache", default=None)
    ap.add_argument("--out", default="bench/results/loso.json")
    args = ap.parse_args()
    base = make_embedder(args.embedder)
    embed = CachedEmbedder(base, Path(args.embedding_cache or f"bench/results/cache/{base.name}.npz"))
    data, traffic = SharedData(sd.DATA), traffic_set(shipped("data"))
    results = []
    for source in (args.only.split(",") if args.only else HELD_OUT):
        print(f"-- leaving out {source}", flush=True)
        results.append(fold(source, embed, data, traffic, args, random.Random(0)))
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        summary = {"embedder": base.name, "scale": args.scale, "target": TARGET,
                   "tuned_for_precision": args.target_precision, "folds": results}
        Path(args.out).write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    worst = min(results, key=lambda r: (r["meets_target"], r["recall"]))
    print(f"worst held-out source: {worst['source']} P={worst['precision']:.3f} R={worst['recall']:.3f}; wrote {args.out}")


if __name__ == "__main__":
    main()
