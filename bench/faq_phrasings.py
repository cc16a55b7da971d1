"""Does warming several phrasings of each FAQ answer let the cache serve more paraphrases?

    PYTHONPATH=. HF_HUB_OFFLINE=1 python bench/faq_phrasings.py [--embedder multilingual-e5-small]

A FAQ cache holds one question per answer, so the answer consensus (which votes over the 12
nearest cached questions and speaks only when an answer repeats) never speaks on it. Warming
more phrasings of each answer gives it votes. Two caches, each measured with ``semroute eval
--retrieval`` (the shipped verifier, consensus and language guard, as the Router looks up):

- *FAQ*: data/traffic_faq.csv (60 questions, one per answer; the baseline, as ``semroute demo``);
- *FAQ + phrasings*: the same plus the *tune* split's paraphrases of data/traffic_paraphrases.csv
  (120 rewordings, two per answer), each stored with its FAQ entry's answer.

Queries, held out from both caches and from every model's training and tuning: the *test* split
of traffic_paraphrases.csv (60 rewordings that must hit their answer, 60 near misses that must
miss) and the demo's rows (data/demo_queries.csv: 10 paraphrases, 8 near misses). A hit is right
when it serves the expected FAQ answer. Prints P/R per cache and query set, with the recall a
cosine-only top-1 cache reaches at the same precision over the same cache (same run); writes JSON.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _read(name: str) -> list[dict[str, str]]:
    with open(ROOT / "data" / name, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _write(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def files(where: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """The two cache files and the two query files of the comparison."""
    faq = _read("traffic_faq.csv")
    ids = {r["question"].strip(): f"faq{i}" for i, r in enumerate(faq)}
    answer_of = {r["question"].strip(): r["answer"] for r in faq}
    base = [{"id": ids[r["question"].strip()], "question": r["question"], "answer": r["answer"]} for r in faq]
    rows = _read("traffic_paraphrases.csv")
    phrasings = [{"id": f"tune{i}", "question": r["query"], "answer": answer_of[r["faq_question"].strip()]}
                 for i, r in enumerate(rows) if r["split"] == "tune" and r["kind"] == "paraphrase"]
    test = [{"query": r["query"], "expected": ids[r["faq_question"].strip()] if r["kind"] == "paraphrase" else ""}
            for r in rows if r["split"] == "test"]
    demo = []
    for r in _read("demo_queries.csv"):
        if r["expect"] == "semantic":  # the note names the FAQ question it rewords
            demo.append({"query": r["question"], "expected": ids[re.search(r"FAQ '(.+)'", r["note"]).group(1).strip()]})
        elif r["expect"] == "miss":
            demo.append({"query": r["question"], "expected": ""})
    caches = {"faq": _write(where / "faq.csv", base), "faq+phrasings": _write(where / "faq_phrasings.csv", base + phrasings)}
    queries = {"traffic_test": _write(where / "test.csv", test), "demo": _write(where / "demo.csv", demo)}
    return caches, queries


def evaluate(cache: Path, queries: Path, embedder: str) -> dict[str, object]:
    """``semroute eval --retrieval`` on one cache and query file (the command a user runs)."""
    out = subprocess.run([sys.executable, "-m", "semroute.cli", "eval", "--retrieval", str(cache), str(queries),
                          "--embedder", embedder, "--json"], capture_output=True, text=True, check=True,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    got = json.loads(out.stdout)
    return {k: got[k] for k in ("queries", "must_hit", "must_miss", "hits", "correct", "precision", "recall")} | {
        "cosine_recall_at_same_precision": got["baseline"]["recall_at_same_precision"],
        "false_hits": [f["query"] for f in got["false_hits"]]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--embedder", default="multilingual-e5-small")
    ap.add_argument("--out", default="bench/results/faq_phrasings.json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        caches, queries = files(Path(tmp))
        results = {c: {q: evaluate(cp, qp, args.embedder) for q, qp in queries.items()} for c, cp in caches.items()}
    for cache, by_set in results.items():
        for name, r in by_set.items():
            print(f"{cache:<14} {name:<13} hits {r['hits']:>3} (right {r['correct']}, of {r['must_hit']} that must hit; "
                  f"{r['must_miss']} must miss)  P {r['precision']:.3f}  R {r['recall']:.3f}  "
                  f"(cosine top-1 at the same P: R {r['cosine_recall_at_same_precision']:.3f})")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"embedder": args.embedder, "results": results}, indent=2, ensure_ascii=False) + "\n",
                              encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
