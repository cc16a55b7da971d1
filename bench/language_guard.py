"""The language guard (``semroute.hits.language``): what it refuses, and what it changes per shipped set.

    PYTHONPATH=. HF_HUB_OFFLINE=1 python bench/language_guard.py [--out bench/results/language_guard.json]
        [--embedders multilingual-e5-small,use-multilingual-v3,all-MiniLM-L6-v2] [--skip-e2e]

1. The guard alone, on text pairs whose languages are known. ``tune`` is what its defaults were
   chosen on (xSID valid EN/TR translations; random same-language pairs of xSID valid, banking77
   and clinc150 train, TQP train pairs); ``held_out`` was never looked at while choosing them
   (xSID test translations, EN/TR traffic question pairs; same-language pairs of STSB-TR test,
   TQP dev, COVID, traffic EN and traffic TR). For each: the share refused at the default
   operating point and at a few other ``max_overlap`` values.
2. End to end, per shipped verifier set (the verifier and consensus the Router loads for that
   embedder) and per plain cosine gate (``ThresholdVerifier(0.9)``, what a caller's own
   threshold cache does): a cache of xSID test sentences in one language, queried with their
   translations (must all miss: the cached answer is in the other language), both directions,
   served with the guard against served without it in the same run.
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "bench"))
from embedder_sets import xsid_parallel  # noqa: E402
from semroute.hits.language import LanguageGuard  # noqa: E402
from semroute.training.sources import SharedData  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
OVERLAPS = (0.1, 0.2, 0.5, 1.0)


def _translations(split: str) -> list[tuple[str, str]]:
    return [(r["en"], r["tr"]) for r in xsid_parallel(split)]


def _random_pairs(texts: list[str], n: int, rng: random.Random) -> list[tuple[str, str]]:
    return [tuple(rng.sample(texts, 2)) for _ in range(n)]  # type: ignore[misc]


def pair_sets(sd: SharedData) -> dict[str, dict[str, tuple[str, list[tuple[str, str]]]]]:
    """{split: {name: (kind, pairs)}}, kind "cross" (must be refused) or "same" (must pass)."""
    rng = random.Random(1)
    with open(ROOT / "data" / "traffic_faq.csv", encoding="utf-8") as fh:
        faq = list(csv.DictReader(fh))
    with open(ROOT / "data" / "traffic_paraphrases.csv", encoding="utf-8") as fh:
        par = list(csv.DictReader(fh))
    traffic = {lang: [r["question"] for r in faq if r["lang"] == lang] + [r["query"] for r in par if r["lang"] == lang]
               for lang in ("en", "tr")}
    return {
        "tune": {
            "xsid_valid_translations": ("cross", _translations("valid")),
            "xsid_valid_en": ("same", _random_pairs([s["text"] for s in sd.xsid("en", "valid")], 1500, rng)),
            "xsid_valid_tr": ("same", _random_pairs([s["text"] for s in sd.xsid("tr", "valid")], 1500, rng)),
            "banking77_train": ("same", _random_pairs([t for t, _ in sd.banking77("train")], 1500, rng)),
            "clinc150_train": ("same", _random_pairs([t for t, _ in sd.clinc150("train")], 1500, rng)),
            "tqp_train_pairs": ("same", sd.tqp_pairs("train")[:1500]),
        },
        "held_out": {
            "xsid_test_translations": ("cross", _translations("test")),
            "traffic_en_tr": ("cross", [(rng.choice(traffic["en"]), rng.choice(traffic["tr"])) for _ in range(1500)]),
            "stsb_tr_test": ("same", [(a, b) for a, b, _ in sd.stsb_tr("test")]),
            "tqp_dev_pairs": ("same", sd.tqp_pairs("dev")[:1500]),
            "covid_pairs": ("same", [(a, b) for a, b, _ in sd.covid_pairs()][:1500]),
            "traffic_en": ("same", _random_pairs(traffic["en"], 1500, rng)),
            "traffic_tr": ("same", _random_pairs(traffic["tr"], 1500, rng)),
        },
    }


def guard_rates(sd: SharedData) -> dict[str, object]:
    default = LanguageGuard()
    others = {x: LanguageGuard(x) for x in OVERLAPS}
    out: dict[str, object] = {"max_overlap": default.max_overlap, "min_confidence": default.min_confidence}
    texts = 0
    started = time.perf_counter()
    for split, sets in pair_sets(sd).items():
        rows = {}
        for name, (kind, pairs) in sets.items():
            refused = sum(default.mismatch(a, b) is not None for a, b in pairs)
            at = {str(x): round(sum(g.mismatch(a, b) is not None for a, b in pairs) / len(pairs), 4)
                  for x, g in others.items()}
            texts += 2 * len(pairs)
            rows[name] = {"kind": kind, "pairs": len(pairs), "refused": refused,
                          "refused_share": round(refused / len(pairs), 4), "refused_share_at_max_overlap": at}
            print(f"{split:9s} {kind:5s} {name:26s} n={len(pairs):5d} refused {refused:5d} ({refused / len(pairs):.4f})  "
                  + " ".join(f"@{x}: {v:.4f}" for x, v in at.items()))
        out[split] = rows
    out["ms_per_pair_all_guards"] = round((time.perf_counter() - started) * 1000 / max(texts // 2, 1), 4)
    return out


def served_translations(name: str) -> dict[str, object]:
    """xSID test sentences cached in one language, asked in the other: served with vs without the guard."""
    from semroute.cache import FaissIndex, MemoryStore
    from semroute.embed import make_embedder
    from semroute.errors import ModelError
    from semroute.hits import SemanticCache
    from semroute.hits.consensus import AnswerConsensus
    from semroute.hits.verify import PairVerifier, ThresholdVerifier
    from semroute.types import CacheEntry

    embedder = make_embedder(name)
    verifier = PairVerifier.default(embedder=embedder.name, dim=embedder.dim)
    try:
        consensus = AnswerConsensus.default(verifier.probability, embedder=embedder.name, dim=embedder.dim)
    except ModelError:
        consensus = None
    pairs = _translations("test")
    en, tr = [e for e, _ in pairs], [t for _, t in pairs]
    ve, vt = embedder.embed(en), embedder.embed(tr)
    cos = (ve * vt).sum(axis=1)
    out: dict[str, object] = {"embedder": name, "pairs": len(pairs),
                              "translation_cosine_p10_p50_p90": [round(float(x), 3) for x in np.percentile(cos, [10, 50, 90])]}
    guard = LanguageGuard()
    for setup, (judge, votes) in {"shipped_set": (verifier, consensus), "cosine_0.9": (ThresholdVerifier(0.9), None)}.items():
        for direction, (cached, vc, asked, vq) in {"tr_cached_en_asked": (tr, vt, en, ve),
                                                    "en_cached_tr_asked": (en, ve, tr, vt)}.items():
            for label, language in (("with_guard", guard), ("without_guard", None)):
                cache = SemanticCache(MemoryStore(max_entries=len(cached) + 1), FaissIndex(embedder.dim), judge,
                                      top_k=4, clock=lambda: 0.0, consensus=votes, language=language)
                cache.insert([CacheEntry(id=str(i), key=str(i), scope="b", namespace="b", question=q,
                                         answer=f"answer {i}", vector=vc[i], created_at=0.0) for i, q in enumerate(cached)])
                served = sum(cache.semantic(q, vq[i], "b")[0] is not None for i, q in enumerate(asked))
                out[f"{setup}_{direction}_{label}"] = served
            key = f"{setup}_{direction}"
            print(f"{name:22s} {setup:11s} {direction}: served {out[key + '_without_guard']} of {len(pairs)} "
                  f"without the guard, {out[key + '_with_guard']} with it")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench/results/language_guard.json")
    ap.add_argument("--embedders", default="multilingual-e5-small,use-multilingual-v3,all-MiniLM-L6-v2")
    ap.add_argument("--skip-e2e", action="store_true", help="the guard's rates only")
    args = ap.parse_args()
    sd = SharedData(DATA)
    out: dict[str, object] = {"guard": guard_rates(sd)}
    if not args.skip_e2e:
        out["served_translations"] = [served_translations(n) for n in args.embedders.split(",") if n]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
