"""Do multilingual-e5-small and USE multilingual v3 err on different pairs? Cosine-only ensembles.

    PYTHONPATH=. nice -n 15 python bench/ensemble_eval.py [--quick] [--splits 5]
        [--cache-dir /tmp/semroute-ensemble] [--out bench/results/ensemble_eval.json]

Issue 13: e5's cosines for the demo's paraphrases overlap its near misses; USE ranks TQP a little
better but is below chance on English near misses. If their errors fall on different pairs, a
combined cosine is a cheap fix (USE costs ~2% of e5's latency). Scores compared, all in one run on
the same held-out sets and splits as bench/embedders.py (TQP dev groups, xSID test, banking77 and
clinc150 test, data/verifier_nearmiss.csv EN/TR, STSb-TR test, the demo rows):

- ``e5``, ``use``: each embedder's cosine alone (the baseline is e5, the default);
- ``mean``: (cos_e5 + cos_use) / 2, which is the cosine of the two unit vectors concatenated and
  scaled by 1/sqrt(2), so it could ship as an ordinary ``Embedder``;
- ``w0.7``, ``w0.85``, ``w0.95``: w * cos_e5 + the rest * cos_use (also an embedding: the unit vectors
  scaled by the square roots of the weights); the weights are picked by hand, not tuned here;
- ``max``, ``min``: the larger / smaller of the two cosines (not an embedding: each lookup would
  need both indexes); e5's cosines sit far above USE's, so these equal e5 and USE alone;
- ``zmean``, ``zmax``, ``zmin``: the same on scores standardised over each scored set (no labels
  used; exploratory only, a cache cannot standardise a single lookup this way).

- ``w_tuned``: the weighted mean with the e5 weight picked on TQP *train* groups (``--tune-pairs``).

Per group set, ``_overlap_closed`` counts the closed-set queries each embedder alone serves
correctly at its own P >= 0.97 threshold (both / one / neither): the union is what a perfect
combination of the two could reach.

Embeddings are cached per text under ``--cache-dir`` (outside the repo) so reruns cost nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from embedder_sets import demo_rows, group_sets, pair_sets, tqp_groups  # noqa: E402
from embedders import curve, make, recall_at, split_groups  # noqa: E402

NAMES = {"e5": "multilingual-e5-small", "use": "use-multilingual-v3"}
COMBINE = {
    "e5": lambda a, b: a,
    "use": lambda a, b: b,
    "mean": lambda a, b: (a + b) / 2,
    **{f"w{w}": (lambda w: lambda a, b: w * a + (1 - w) * b)(w) for w in (0.7, 0.85, 0.95)},
    "max": np.maximum,
    "min": np.minimum,
    "zmean": lambda a, b: (_z(a) + _z(b)) / 2,
    "zmax": lambda a, b: np.maximum(_z(a), _z(b)),
    "zmin": lambda a, b: np.minimum(_z(a), _z(b)),
}


def _z(x: np.ndarray) -> np.ndarray:
    """Standardised scores (no labels used): e5's cosines sit far higher than USE's, so the raw
    max is always e5's and the raw min always USE's."""
    return (x - x.mean()) / (x.std() + 1e-9)


class _DiskMemo:
    """Embeds each distinct text once, ever: vectors pickled per embedder under ``cache_dir``."""

    def __init__(self, name: str, cache_dir: Path) -> None:
        self.name, self.embedder = name, None
        self.path = cache_dir / f"{hashlib.sha1(name.encode()).hexdigest()[:12]}.pkl"
        self.seen = pickle.loads(self.path.read_bytes()) if self.path.exists() else {}

    def embed(self, texts: list[str]) -> np.ndarray:
        new = sorted({t for t in texts if t not in self.seen})
        if new:
            self.embedder = self.embedder or make(self.name)
            for i in range(0, len(new), 64):
                chunk = new[i:i + 64]
                self.seen.update(zip(chunk, self.embedder.embed(chunk)))
            self.path.write_bytes(pickle.dumps(self.seen))
        return np.stack([self.seen[t] for t in texts]).astype(np.float32)


class _Pair:
    """Both embedders' unit vectors for a list of texts; ``sims`` combines their cosine matrices."""

    def __init__(self, memos: dict[str, _DiskMemo]) -> None:
        self.memos = memos

    def vectors(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        return self.memos["e5"].embed(texts), self.memos["use"].embed(texts)


def _split_sims(vecs, labels, seed: int, open_set: bool):
    """One split exactly as bench/embedders.py's (``split_groups``): per-embedder cosine matrices."""
    queries, cached, cached_groups = split_groups(labels, seed, open_set)
    mats = [v[queries] @ v[cached].T for v in vecs]
    must_hit = sum(labels[q] in cached_groups for q in queries)
    return queries, cached, mats, must_hit


def retrieval(vecs, labels: list[str], splits: int) -> dict[str, dict[str, float]]:
    """Recall at P >= 0.97 / 0.95, closed and open set, per combination, averaged over splits."""
    out: dict[str, dict[str, float]] = {c: {} for c in COMBINE}
    for mode in ("closed", "open"):
        acc: dict[str, list[tuple[float, float]]] = {c: [] for c in COMBINE}
        for seed in range(splits):
            queries, cached, mats, must_hit = _split_sims(vecs, labels, seed, mode == "open")
            for c, fn in COMBINE.items():
                sims = fn(*mats)
                top = sims.argmax(axis=1)
                ok = np.array([labels[cached[b]] == labels[q] for q, b in zip(queries, top)])
                points = curve(sims.max(axis=1), ok, must_hit)
                acc[c].append((recall_at(points, 0.97)[0], recall_at(points, 0.95)[0]))
        for c in COMBINE:
            out[c][f"{mode}_r_p97"] = round(float(np.mean([a for a, _ in acc[c]])), 4)
            out[c][f"{mode}_r_p95"] = round(float(np.mean([b for _, b in acc[c]])), 4)
            out[c][f"{mode}_r_p97_splits"] = [round(a, 4) for a, _ in acc[c]]
    return out


def overlap(vecs, labels: list[str], splits: int) -> dict[str, int]:
    """Do the two err on the same queries? Closed set, summed over splits: queries each embedder
    serves correctly at its own P >= 0.97 threshold, and e5's wrong top-1s that USE gets right."""
    tot = dict.fromkeys(("both", "e5_only", "use_only", "neither", "e5_top1_wrong", "use_top1_right_of_those"), 0)
    for seed in range(splits):
        queries, cached, mats, must_hit = _split_sims(vecs, labels, seed, False)
        served, right = [], []
        for sims in mats:
            ok = np.array([labels[cached[b]] == labels[q] for q, b in zip(queries, sims.argmax(axis=1))])
            threshold = recall_at(curve(sims.max(axis=1), ok, must_hit), 0.97)[1]
            served.append(ok & (sims.max(axis=1) >= (np.inf if threshold is None else threshold)))
            right.append(ok)
        (se, su), (re_, ru) = served, right
        for key, mask in (("both", se & su), ("e5_only", se & ~su), ("use_only", ~se & su), ("neither", ~se & ~su),
                          ("e5_top1_wrong", ~re_), ("use_top1_right_of_those", ~re_ & ru)):
            tot[key] += int(mask.sum())
    return tot


def pair_quality(pair: _Pair, prs) -> dict[str, dict[str, float]]:
    """AUC of positives vs near misses, recall at P >= 0.95, per combination."""
    (ae, au), (be, bu) = pair.vectors([a for a, _, _ in prs]), pair.vectors([b for _, b, _ in prs])
    labels = np.array([lab for _, _, lab in prs])
    se, su = np.einsum("ij,ij->i", ae, be), np.einsum("ij,ij->i", au, bu)
    out = {}
    for c, fn in COMBINE.items():
        s = fn(se, su)
        pos, neg = s[labels == 1], s[labels == 0]
        auc = float((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())
        out[c] = {"auc": round(auc, 4),
                  "r_p95": round(recall_at(curve(s, labels == 1, int(labels.sum())), 0.95)[0], 4)}
    # Do the two embedders err on the same pairs? Spearman of their scores, per class.
    out["_agreement"] = {f"spearman_{k}": round(float(np.corrcoef(_rank(se[labels == v]), _rank(su[labels == v]))[0, 1]), 4)
                         for k, v in (("pos", 1), ("neg", 0))}
    return out


def _rank(x: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(x)).astype(float)


def demo_quality(pair: _Pair) -> dict[str, dict[str, object]]:
    """Per combination, as bench/embedders.py's ``demo_quality``: paraphrase rows whose top-1 is the
    right FAQ entry with a similarity above every near-miss row's best."""
    faq, rows = demo_rows()
    fe, fu = pair.vectors(faq)
    qe, qu = pair.vectors([q for q, _ in rows])
    mats = (qe @ fe.T, qu @ fu.T)
    out = {}
    for c, fn in COMBINE.items():
        sims = fn(*mats)
        top = sims.argmax(axis=1)
        miss_max = max(float(sims[i].max()) for i, (_, want) in enumerate(rows) if want is None)
        right = [i for i, (_, want) in enumerate(rows) if want is not None and faq[top[i]] == want]
        out[c] = {"top1_right": len(right), "max_near_miss": round(miss_max, 4),
                  "served": sum(float(sims[i, top[i]]) > miss_max for i in right)}
    return out


GRID = [round(w, 2) for w in np.arange(0.0, 1.01, 0.05)]


def tune_weight(pair: _Pair, pairs: int, splits: int) -> dict[str, object]:
    """The e5 weight with the best closed recall at P >= 0.97 on TQP *train* groups (the first
    ``pairs`` pairs), so the weighted mean evaluated on dev is not picked on dev."""
    rows = tqp_groups("train", pairs)
    vecs, labels = pair.vectors([t for t, _ in rows]), [g for _, g in rows]
    scores = {}
    for w in GRID:
        rec = []
        for seed in range(splits):
            queries, cached, (me, mu), _ = _split_sims(vecs, labels, seed, False)
            sims = w * me + (1 - w) * mu
            top = sims.argmax(axis=1)
            ok = np.array([labels[cached[b]] == labels[q] for q, b in zip(queries, top)])
            rec.append(recall_at(curve(sims.max(axis=1), ok, len(queries)), 0.97)[0])
        scores[w] = round(float(np.mean(rec)), 4)
    best = max(scores, key=lambda w: (scores[w], w))
    COMBINE["w_tuned"] = lambda a, b: best * a + (1 - best) * b
    return {"sentences": len(rows), "best_w_e5": best, "closed_r_p97_by_w": scores}


def print_table(res: dict) -> None:
    cols = [("tqp_dev", "closed_r_p97"), ("tqp_dev", "open_r_p97"), ("xsid_tr", "closed_r_p97"),
            ("xsid_en", "closed_r_p97"), ("banking77", "open_r_p97"), ("clinc150", "open_r_p97")]
    head = ["combo"] + [f"{s}:{m.replace('_r_p97', '')}" for s, m in cols] + \
        ["nm_en_auc", "nm_tr_auc", "stsb_tr_auc", "demo"]
    print(" | ".join(head))
    for c in COMBINE:
        row = [c] + [f"{res['groups'][s][c][m]:.3f}" for s, m in cols]
        row += [f"{res['pairs'][p][c]['auc']:.3f}" for p in ("nearmiss_en", "nearmiss_tr", "stsb_tr")]
        row.append(f"{res['demo'][c]['served']}/10")
        print(" | ".join(row))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench/results/ensemble_eval.json")
    ap.add_argument("--quick", action="store_true", help="fewer banking77/clinc150 sentences")
    ap.add_argument("--splits", type=int, default=10)
    ap.add_argument("--tune-pairs", type=int, default=300, help="TQP train pairs the e5 weight is picked on")
    ap.add_argument("--cache-dir", default=os.path.join(tempfile.gettempdir(), "semroute-ensemble"))
    args = ap.parse_args()
    cache = Path(args.cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    pair = _Pair({k: _DiskMemo(n, cache) for k, n in NAMES.items()})
    res: dict[str, dict] = {"tuning": tune_weight(pair, args.tune_pairs, args.splits), "groups": {}, "pairs": {}}
    print(f"  TQP train: best e5 weight {res['tuning']['best_w_e5']}: {res['tuning']['closed_r_p97_by_w']}", flush=True)
    for name, rows in group_sets(args.quick).items():
        vecs, labels = pair.vectors([t for t, _ in rows]), [g for _, g in rows]
        res["groups"][name] = retrieval(vecs, labels, args.splits)
        res["groups"][name]["_overlap_closed"] = overlap(vecs, labels, args.splits)
        print(f"  {name}: e5 {res['groups'][name]['e5']['closed_r_p97']}, "
              f"w_tuned {res['groups'][name]['w_tuned']['closed_r_p97']} (closed, R@P97)", flush=True)
    for name, prs in pair_sets().items():
        res["pairs"][name] = pair_quality(pair, prs)
    res["demo"] = demo_quality(pair)
    print_table(res)
    print(f"TQP dev closed, served at each one's own P >= 0.97 (summed over splits): {res['groups']['tqp_dev']['_overlap_closed']}")
    out = {"embedders": NAMES, "baseline": "e5", "quick": args.quick, "splits": args.splits,
           "load_average": os.getloadavg(), "run_s": round(time.perf_counter() - t0, 1), **res}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {args.out} in {out['run_s']} s; load {os.getloadavg()}")


if __name__ == "__main__":
    main()
