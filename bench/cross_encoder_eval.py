"""Issue 13 experiment, evaluation half: ``eval`` and ``diagnose`` of ``bench/cross_encoder.py``.

``evaluate``: each query's 4 nearest cached rows (as ``bench/verifier_frontier.py``), scored by the
cross-encoder where the cosine is >= 0.84 (no gate below that floor is tried), next to cosine alone
and the shipped pair verifier in the same run; the operating point is chosen on the tuning caches
(``choose_operating_point``, every set at P >= 0.97) and applied to TQP dev, the traffic test split
and the demo rows. ``diagnose``: candidate-level AUCs, serving the highest-P row, the near-miss
pairs of ``cache_quality.py``, the worst errors and latency by thread count.
"""

from __future__ import annotations

import json
import os
import random
import time

import numpy as np

import cache_quality as cq
import shared_data as sd
from cross_encoder import MAX_LEN, OUT, SCORE_FLOOR, _embedder, _torch
from e5_file import E5File
from semroute.training.sources import SharedData, traffic_set


class CrossScorer:
    """``probability(query, cached, cosine)`` from the cross-encoder, scored in batches up front."""

    def __init__(self, model, tokenizer, torch) -> None:
        self.model, self.tok, self.torch = model.eval(), tokenizer, torch
        self.cache: dict[tuple[str, str], float] = {}

    def score(self, pairs, batch=32) -> list[float]:
        todo = [p for p in dict.fromkeys(pairs) if p not in self.cache]
        seqs = [self.tok.encode_pair(a, b, max_len=MAX_LEN) for a, b in todo]
        order = sorted(range(len(todo)), key=lambda i: len(seqs[i]))
        with self.torch.no_grad():
            for s in range(0, len(order), batch):
                idx = order[s: s + batch]
                ids, valid = self.model.batch([seqs[i] for i in idx])
                probs = self.torch.sigmoid(self.model(ids, valid)).numpy()
                for i, pr in zip(idx, probs):
                    self.cache[todo[i]] = float(pr)
        return [self.cache[p] for p in pairs]

    def probability(self, query: str, cached: str, similarity: float) -> float:
        if similarity < SCORE_FLOOR:
            return 0.0
        return self.score([(query, cached)])[0]


def _prefetch(scorer, embed, cache, queries):
    vc, vq = embed([t for t, _ in cache]), embed([t for t, _ in queries])
    sims = vq @ vc.T
    top = np.argsort(-sims, axis=1)[:, :4]
    todo = [(q, cache[j][0]) for i, (q, _) in enumerate(queries) for j in top[i] if sims[i, j] >= SCORE_FLOOR]
    t0 = time.time()
    scorer.score(todo)
    return len(todo), time.time() - t0


def evaluate(args) -> None:
    from verifier_frontier import THRESHOLDS, best_recall, cosine_only

    from semroute.hits.verify import PairVerifier
    from semroute.training.tuning import tuning_sets
    from semroute.training.verifier_job import candidates, choose_operating_point, served
    from xenc_model import CrossE5

    torch = _torch(args.threads)
    w = E5File.load()
    card = json.loads((OUT / "card.json").read_text())
    model = CrossE5(w, frozen=card["frozen_layers"], rank=card["lora_rank"], alpha=card["lora_alpha"])
    with np.load(OUT / "model.npz", allow_pickle=False) as z:
        model.load_arrays({k: z[k] for k in z.files})
    scorer = CrossScorer(model, w.tokenizer, torch)
    embed = _embedder()
    shipped = PairVerifier.default(embedder="multilingual-e5-small", dim=384)
    data, traffic = SharedData(sd.DATA), traffic_set(cq.ROOT / "data")
    tuning = tuning_sets(data, traffic, scale=args.tune_scale)
    held = [(n, [(q, lab) for q, _, lab in rows], qs) for n, rows, qs in cq.datasets(random.Random(0), False)
            if n in ("tqp_dev", "traffic_test", "traffic_demo")]
    timing = {}
    for name, cache, queries in tuning + held:
        n, s = _prefetch(scorer, embed, cache, queries)
        timing[name] = {"pairs": n, "seconds": round(s, 1)}
        print(f"scored {name}: {n} pairs in {s:.0f} s", flush=True)
    embed.save()
    target = args.target
    point = choose_operating_point(scorer, embed, tuning, target)
    sub = [s for s in tuning if s[0] in ("tqp", "traffic")]
    point_tr = choose_operating_point(scorer, embed, sub, target)
    print("operating point (all tuning sets):", json.dumps({k: point[k] for k in ("min_similarity", "threshold", "confident")}))
    print("operating point (tqp + traffic tuning):", json.dumps({k: point_tr[k] for k in ("min_similarity", "threshold", "confident")}))
    ship_conf = None if shipped.confident is None else dict(zip(("min_similarity", "threshold"), shipped.confident))
    rows = []
    for kind, (name, cache, queries) in [("tuning", s) for s in tuning] + [("held_out", s) for s in held]:
        must = sum(lab is not None for _, lab in queries)
        xc = candidates(scorer, embed, cache, queries)
        pc = candidates(shipped, embed, cache, queries)
        cos_r, cos_floor = cosine_only(xc, must, target)
        row = {"set": name, "kind": kind, "queries": len(queries), "must_hit": must,
               "cosine_only": {"recall": round(cos_r, 4), "min_similarity": cos_floor},
               "shipped_point": _at(pc, must, shipped.min_similarity, shipped.threshold, ship_conf),
               "shipped_best_gate": _best(pc, must, target, THRESHOLDS, best_recall),
               "cross_point_all": _at(xc, must, point["min_similarity"], point["threshold"], point["confident"]),
               "cross_point_tqp_traffic": _at(xc, must, point_tr["min_similarity"], point_tr["threshold"], point_tr["confident"]),
               "cross_best_gate": _best(xc, must, target, THRESHOLDS, best_recall)}
        if name == "traffic_demo":
            row["demo_counts"] = {k: _demo_counts(xc, queries, row[k]) for k in ("cross_point_all", "cross_point_tqp_traffic")}
            row["demo_counts"]["shipped_point"] = _demo_counts(pc, queries, row["shipped_point"])
        rows.append(row)
        print(f"{kind:8s} {name:13s} cos R={cos_r:.3f}@{cos_floor} | shipped P={row['shipped_point']['precision']:.3f} "
              f"R={row['shipped_point']['recall']:.3f} best R={row['shipped_best_gate']['recall']:.3f} | "
              f"xenc(all) P={row['cross_point_all']['precision']:.3f} R={row['cross_point_all']['recall']:.3f} "
              f"xenc(tqp+traffic) P={row['cross_point_tqp_traffic']['precision']:.3f} R={row['cross_point_tqp_traffic']['recall']:.3f} "
              f"best R={row['cross_best_gate']['recall']:.3f}", flush=True)
    lat = latency(model, w.tokenizer, torch, shipped=shipped)
    out = {"target_precision": target, "tune_scale": args.tune_scale, "score_floor": SCORE_FLOOR,
           "operating_point_all": point, "operating_point_tqp_traffic": point_tr, "sets": rows,
           "scoring": timing, "latency": lat, "load_average": os.getloadavg(), "card": card}
    (OUT / "eval.json").write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps(lat), "load", os.getloadavg())


def _at(cands, must, floor, threshold, confident):
    from semroute.training.verifier_job import served

    def accept(c):
        ok = c[0] >= floor and c[1] >= threshold
        if not ok and confident:
            ok = c[0] >= confident["min_similarity"] and c[1] >= confident["threshold"]
        return ok

    p, r = served(cands, accept, must)
    return {"precision": round(p, 4), "recall": round(r, 4), "min_similarity": floor, "threshold": threshold,
            "confident": confident}


def _best(cands, must, target, thresholds, best_recall):
    gates = {t: best_recall(cands, must, target, t) for t in thresholds}
    t, (r, f) = max(gates.items(), key=lambda kv: kv[1][0])
    return {"recall": round(r, 4), "threshold": t, "min_similarity": f}


def _demo_counts(cands, queries, point):
    conf = point.get("confident")
    served_ok = near = 0
    for cs, (_, lab) in zip(cands, queries):
        acc = [c for c in cs if (c[0] >= point["min_similarity"] and c[1] >= point["threshold"])
               or (conf and c[0] >= conf["min_similarity"] and c[1] >= conf["threshold"])]
        pick = max(acc, key=lambda c: c[0], default=None)
        if pick is None:
            continue
        if lab is None:
            near += 1
        elif pick[2]:
            served_ok += 1
    return {"paraphrases_served": served_ok, "paraphrases": sum(lab is not None for _, lab in queries),
            "near_misses_served": near, "near_misses": sum(lab is None for _, lab in queries)}


def latency(model, tok, torch, reps=20, shipped=None):
    """Single-pair and top-4 (4 pairs in one batch) scoring, median ms, tokenising included."""
    q = "Otoyolda otomobiller için hız sınırı kaç km/s?"
    cached = ["Otoyolda otomobiller için hız sınırı nedir?", "What is the speed limit for cars on motorways?",
              "Şehir içinde otomobille en fazla kaç km/s hızla gidebilirim?", "What is the speed limit for cars on intercity roads?"]
    out = {}
    for name, cs in (("single_pair_ms", cached[:1]), ("top4_ms", cached)):
        times = []
        with torch.no_grad():
            for _ in range(reps):
                t0 = time.perf_counter()
                ids, valid = model.batch([tok.encode_pair(q, c, max_len=MAX_LEN) for c in cs])
                torch.sigmoid(model(ids, valid))
                times.append((time.perf_counter() - t0) * 1000)
        out[name] = round(float(np.median(times)), 2)
    if shipped is not None:  # the shipped pair verifier on the same pairs (a new query each time: no reuse)
        times = []
        for i in range(reps * 10):
            t0 = time.perf_counter()
            for c in cached:
                shipped.probability(f"{q} {i}", c, 0.95)
            times.append((time.perf_counter() - t0) * 1000)
        out["pair_verifier_top4_ms"] = round(float(np.median(times)), 3)
    out["threads"] = torch.get_num_threads()
    return out


def _load_cross(torch):
    from xenc_model import CrossE5

    w = E5File.load()
    card = json.loads((OUT / "card.json").read_text())
    model = CrossE5(w, frozen=card["frozen_layers"], rank=card["lora_rank"], alpha=card["lora_alpha"])
    with np.load(OUT / "model.npz", allow_pickle=False) as z:
        model.load_arrays({k: z[k] for k in z.files})
    return w, model.eval()


def diagnose(args) -> None:
    """Candidate-level view of the held-out sets: AUC of cosine / shipped pair model / cross-encoder
    over each query's 4 nearest rows (cosine >= 0.88), serving the highest-P row instead of the
    nearest, the near-miss pairs of ``cache_quality.py`` at the chosen point, worst errors, latency."""
    from sklearn.metrics import roc_auc_score

    from semroute.hits.verify import PairVerifier

    torch = _torch(args.threads)
    w, model = _load_cross(torch)
    scorer, embed = CrossScorer(model, w.tokenizer, torch), _embedder()
    shipped = PairVerifier.default(embedder="multilingual-e5-small", dim=384)
    point = json.loads((OUT / "eval.json").read_text())["operating_point_all"]
    floor, thr = point["min_similarity"], point["threshold"]
    out: dict[str, object] = {"operating_point": {"min_similarity": floor, "threshold": thr}}
    for name, rows, qs in cq.datasets(random.Random(0), False):
        if name not in ("tqp_dev", "traffic_demo", "traffic_test"):
            continue
        cache = [(q, lab) for q, _, lab in rows]
        vc, vq = embed([t for t, _ in cache]), embed([t for t, _ in qs])
        sims = vq @ vc.T
        top = np.argsort(-sims, axis=1)[:, :4]
        recs = [(q, cache[j][0], float(sims[i, j]), cache[j][1] == lab) for i, (q, lab) in enumerate(qs) for j in top[i]]
        p = np.asarray(scorer.score([(a, b) for a, b, _, _ in recs]))
        sh = np.asarray([shipped.probability(a, b, c) for a, b, c, _ in recs])
        y, cos = np.asarray([r[3] for r in recs]), np.asarray([r[2] for r in recs])
        m = cos >= 0.88
        must = sum(lab is not None for _, lab in qs)
        best = (0.0, None)
        for f in np.round(np.arange(0.85, 0.99, 0.005), 3):
            for t in (0.3, 0.5, 0.7, 0.8, 0.9, 0.95):
                picks = [max(((p[k], y[k]) for k in range(4 * i, 4 * i + 4) if cos[k] >= f and p[k] >= t), default=None)
                         for i in range(len(qs))]
                hit = [c for c in picks if c is not None]
                prec, rec = (sum(c[1] for c in hit) / len(hit) if hit else 1.0), sum(c[1] for c in hit) / must
                if prec >= args.target and rec > best[0]:
                    best = (round(rec, 4), {"min_similarity": float(f), "threshold": t, "precision": round(prec, 4)})
        worst_fp = sorted(((float(p[k]), round(cos[k], 3), recs[k][0], recs[k][1]) for k in range(len(recs))
                           if not y[k] and cos[k] >= 0.9), reverse=True)[:5]
        worst_fn = sorted((float(p[k]), round(cos[k], 3), recs[k][0], recs[k][1]) for k in range(len(recs)) if y[k])[:5]
        out[name] = {"candidates_cos_ge_0.88": int(m.sum()), "right_among_them": int(y[m].sum()),
                     "auc_cosine": round(float(roc_auc_score(y[m], cos[m])), 4),
                     "auc_pair_verifier": round(float(roc_auc_score(y[m], sh[m])), 4),
                     "auc_cross_encoder": round(float(roc_auc_score(y[m], p[m])), 4),
                     "serve_highest_cross_p_best_recall": best, "worst_false_accepts": worst_fp,
                     "worst_refused_paraphrases": worst_fn}
        print(name, json.dumps({k: v for k, v in out[name].items() if not k.startswith("worst")}), flush=True)
    rows = cq.near_miss_rows(random.Random(0))
    vq, vc = embed([r.query for r in rows]), embed([r.cached for r in rows])
    cos = np.einsum("ij,ij->i", vq, vc)
    p = np.asarray(scorer.score([(r.query, r.cached) for r in rows]))
    sh = np.asarray([shipped.probability(r.query, r.cached, float(c)) for r, c in zip(rows, cos)])
    y = np.asarray([r.label for r in rows])

    def pr(acc):
        tp = int((acc & (y == 1)).sum())
        return {"precision": round(tp / max(1, int(acc.sum())), 4), "recall": round(tp / max(1, int(y.sum())), 4)}

    out["near_miss_pairs"] = {"pairs": len(rows), "positives": int(y.sum()),
                              "cross_point": pr((cos >= floor) & (p >= thr)),
                              "cross_alone_p_ge_0.5": pr(p >= 0.5),
                              "shipped_point": pr((cos >= shipped.min_similarity) & (sh >= shipped.threshold)),
                              "auc_cosine": round(float(roc_auc_score(y, cos)), 4),
                              "auc_pair_verifier": round(float(roc_auc_score(y, sh)), 4),
                              "auc_cross_encoder": round(float(roc_auc_score(y, p)), 4)}
    print("near_miss", json.dumps(out["near_miss_pairs"]), flush=True)
    lat = {}
    q = "Otoyolda otomobiller için hız sınırı kaç km/s?"
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for n in (1, 4):
            times = []
            for _ in range(15):
                t0 = time.perf_counter()
                ids, valid = model.batch([w.tokenizer.encode_pair(q, f"Otoyolda otomobil hız sınırı nedir {k}?") for k in range(n)])
                with torch.inference_mode():
                    model(ids, valid)
                times.append((time.perf_counter() - t0) * 1000)
            lat[f"threads{threads}_pairs{n}_ms_p50"] = round(float(np.median(times)), 1)
    out["latency"], out["load_average"] = lat, os.getloadavg()
    print(json.dumps(lat), "load", os.getloadavg())
    (OUT / "diagnose.json").write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
