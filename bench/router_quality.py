"""Cost/quality of the complexity router on RouteLLM's labels: accuracy vs share of large-tier calls.

For every prompt of ``../shared/data/routellm_labels`` (GSM8K and MMLU, contaminated rows dropped)
we know whether the weak model and the strong model answered correctly. Those rows are split 50/50
by a salted hash of the prompt (``bench/routellm_split.py``); the classifier's routing head is
trained on the train part (``data/complexity_routing.csv``) and this benchmark evaluates ONLY on
the held-out part, never on a row training saw (any held-out prompt that also appears in
``data/complexity_*.csv`` is dropped and counted; the build script makes that zero).

A router that sends a prompt to the large tier earns the strong model's correctness, otherwise the
weak model's. Sorting prompts by a router's score and sweeping the
cut-off gives accuracy as a function of the share of large-tier calls; APGR is the area between
that curve and the weak model's accuracy, divided by the area up to the strong model's accuracy
(RouteLLM's definition: random routing scores about 0.5, a perfect ranking more).

Compared in the same run: this classifier's P(complex), random routing (its expected curve, exact)
and a length-only router (longer prompt = large tier). Embeddings are cached in ``bench/results/``
(git-ignored) by text hash; the cache saves minutes and changes no number.

IMPORTANT: the labels come from another model pair, Mixtral-8x7B (weak) vs GPT-4 (strong), not from
llama3.2:3b vs llama3.1:8b. They are a proxy for "does this prompt need the bigger model".

Run from the repository root::

    python bench/router_quality.py                 # default sample, prints a table, writes PNG + JSON
    python bench/router_quality.py --mmlu-sample 0 # every held-out MMLU row (~7k; slow the first time)
    python bench/router_quality.py --json          # JSON on stdout
    python bench/router_quality.py --embedder multilingual-e5-small  # that embedder's shipped model
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

import routellm_split

RESULTS = ROOT / "bench" / "results"
PAIR_NOTE = (
    "labels: RouteLLM's Mixtral-8x7B (weak) vs GPT-4-1106 (strong) correctness, a proxy for "
    "llama3.2:3b vs llama3.1:8b, not a measurement of them; evaluated only on the held-out half of "
    "the RouteLLM rows (hash split, bench/routellm_split.py), the router's routing head was trained on the other half"
)


def load_rows(mmlu_sample: int, seed: int) -> tuple[list[dict[str, str]], dict[str, int]]:
    """Held-out-part GSM8K + (a sample of) MMLU rows, none of which any training file contains."""
    _train, held, stats = routellm_split.split()
    seen = set()
    for name in ("complexity_train.csv", "complexity_heldout.csv", "complexity_routing.csv"):
        with (ROOT / "data" / name).open(encoding="utf-8", newline="") as f:
            seen |= {r["prompt"].strip().casefold() for r in csv.DictReader(f)}
    fresh = [r for r in held if r["prompt"].casefold() not in seen]
    stats.update(split=f"held-out part ({routellm_split.HELDOUT_PERCENT}% by salted SHA-256 of the prompt)",
                 dropped_in_training_data=len(held) - len(fresh))
    g = [r for r in fresh if r["source"] == "gsm8k"]
    m = [r for r in fresh if r["source"] == "mmlu"]
    if 0 < mmlu_sample < len(m):
        m = random.Random(seed).sample(m, mmlu_sample)
    stats.update(gsm8k_used=len(g), mmlu_used=len(m))
    return g + m, stats


def curve(score: np.ndarray, weak: np.ndarray, strong: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(share of large calls, accuracy) for every cut-off of the score, highest scores first.

    Ties are broken by order of a stable sort, which for a continuous score hardly matters.
    """
    order = np.argsort(-score, kind="stable")
    gain = (strong[order] - weak[order]).astype(np.float64)
    n = len(score)
    acc = (weak.sum() + np.concatenate([[0.0], np.cumsum(gain)])) / n
    share = np.arange(n + 1) / n
    return share, acc


def apgr(share: np.ndarray, acc: np.ndarray, weak_acc: float, strong_acc: float) -> float:
    """RouteLLM's APGR: (AUC - weak AUC) / (strong AUC - weak AUC) over share in [0, 1]."""
    area = float(np.sum((acc[1:] + acc[:-1]) * np.diff(share)) / 2)
    span = float(share[-1] - share[0])
    return (area - weak_acc * span) / ((strong_acc - weak_acc) * span)


def share_for_quality(share: np.ndarray, acc: np.ndarray, weak_acc: float, strong_acc: float, pgr: float) -> float:
    """Smallest share of large calls reaching ``pgr`` of the weak->strong gap (cost at that quality)."""
    goal = weak_acc + pgr * (strong_acc - weak_acc)
    reached = np.nonzero(acc >= goal - 1e-12)[0]
    return float(share[reached[0]]) if len(reached) else 1.0


def classifier_scores(prompts: list[str], model_dir: Path | None,
                      embedder_name: str | None = None) -> tuple[np.ndarray, dict[str, object]]:
    from semroute.routing.classify import LogisticComplexityClassifier
    from semroute.embed import make_embedder

    embedder = make_embedder(embedder_name or "all-MiniLM-L6-v2")
    clf = LogisticComplexityClassifier.load(model_dir, embedder_name=embedder.name)
    t0 = time.perf_counter()
    vectors = routellm_split.embed_cached(prompts, embedder)
    embed_s = time.perf_counter() - t0
    p = clf.predict_proba(vectors, prompts)
    info = {
        "embedder": embedder.name,
        "threshold": clf.threshold,
        "embed_s": round(embed_s, 1),  # seconds, 0-ish when the embedding cache is warm
        "routing_head": dict(clf.card_.get("routing", {})).get("file", None),
        "large_share_at_threshold": round(float((p >= clf.threshold).mean()), 4),
        "decision_us": decision_timing(clf, vectors, prompts),
    }
    return p, info


def decision_timing(clf, vectors: np.ndarray, prompts: list[str], n: int = 2000) -> dict[str, float]:
    """Per-request ``decide()`` time given the embedding (what the router adds on a miss), in µs."""
    from semroute.routing.classify import decide

    times = []
    for i in range(min(n, len(prompts))):
        t0 = time.perf_counter()
        decide(clf, vectors[i], prompts[i])
        times.append(time.perf_counter() - t0)
    us = np.array(times) * 1e6
    return {"p50": round(float(np.percentile(us, 50)), 1), "p99": round(float(np.percentile(us, 99)), 1), "n": len(us)}


def bootstrap_apgr(score: np.ndarray, weak: np.ndarray, strong: np.ndarray, baseline: np.ndarray | None,
                   rounds: int = 200, seed: int = 0) -> tuple[float, float]:
    """95% interval of APGR (or of APGR minus a baseline's, paired on the same resamples)."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(rounds):
        j = rng.integers(0, len(score), len(score))
        w, s = weak[j], strong[j]
        if s.mean() == w.mean():  # degenerate resample: no gap to recover
            continue
        value = apgr(*curve(score[j], w, s), w.mean(), s.mean())
        if baseline is not None:
            value -= apgr(*curve(baseline[j], w, s), w.mean(), s.mean())
        values.append(value)
    lo, hi = np.percentile(values, [2.5, 97.5])
    return round(float(lo), 4), round(float(hi), 4)


def evaluate_group(name: str, rows: list[dict[str, str]], scores: dict[str, np.ndarray]) -> dict[str, object]:
    weak = np.array([int(r["weak_correct"]) for r in rows], dtype=np.float64)
    strong = np.array([int(r["strong_correct"]) for r in rows], dtype=np.float64)
    weak_acc, strong_acc = float(weak.mean()), float(strong.mean())
    out: dict[str, object] = {"n": len(rows), "weak_accuracy": weak_acc, "strong_accuracy": strong_acc, "routers": {}}
    for router, score in scores.items():
        if router == "random":  # expected curve of random routing: a straight line, APGR exactly 0.5
            share = np.arange(len(rows) + 1) / len(rows)
            acc = weak_acc + share * (strong_acc - weak_acc)
        else:
            share, acc = curve(score, weak, strong)
        out["routers"][router] = {
            "apgr": round(apgr(share, acc, weak_acc, strong_acc), 4),
            "large_share_for_50pct_gap": round(share_for_quality(share, acc, weak_acc, strong_acc, 0.5), 4),
            "large_share_for_80pct_gap": round(share_for_quality(share, acc, weak_acc, strong_acc, 0.8), 4),
            "_curve": (share, acc),
        }
    clf = out["routers"]["classifier"]
    clf["apgr_95ci"] = bootstrap_apgr(scores["classifier"], weak, strong, None)
    clf["minus_length_only_95ci"] = bootstrap_apgr(scores["classifier"], weak, strong, scores["length-only"])
    return out


def plot(groups: dict[str, dict[str, object]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(groups), figsize=(5.5 * len(groups), 4.5), squeeze=False)
    for ax, (name, g) in zip(axes[0], groups.items()):
        for router, r in g["routers"].items():
            share, acc = r["_curve"]
            step = max(1, len(share) // 400)  # thin the points; the curve stays exact at its ends
            idx = np.unique(np.r_[np.arange(0, len(share), step), len(share) - 1])
            ax.plot(share[idx] * 100, acc[idx], label=f"{router} (APGR {r['apgr']:.3f})")
        ax.axhline(g["weak_accuracy"], color="grey", linestyle="--", linewidth=0.8, label="weak only (Mixtral)")
        ax.axhline(g["strong_accuracy"], color="red", linestyle="--", linewidth=0.8, label="strong only (GPT-4)")
        ax.set_title(f"{name} (n={g['n']})")
        ax.set_xlabel("large-tier calls (%)")
        ax.set_ylabel("accuracy")
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle("Complexity router on RouteLLM labels (Mixtral-8x7B vs GPT-4, a proxy for 3B vs 8B)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(args: argparse.Namespace) -> dict[str, object]:
    rows, stats = load_rows(args.mmlu_sample, args.seed)
    prompts = [r["prompt"] for r in rows]
    p, info = classifier_scores(prompts, args.model, args.embedder)
    scores = {
        "classifier": p,
        "length-only": np.array([len(t) for t in prompts], dtype=np.float64),
        "random": np.zeros(len(rows)),
    }
    groups = {"gsm8k+mmlu": evaluate_group("gsm8k+mmlu", rows, scores)}
    for source in ("gsm8k", "mmlu"):
        mask = np.array([r["source"] == source for r in rows])
        sub = [r for r, keep in zip(rows, mask) if keep]
        groups[source] = evaluate_group(source, sub, {k: v[mask] for k, v in scores.items()})
    plot(groups, args.plot)
    public = {
        name: {**{k: v for k, v in g.items() if k != "routers"},
               "routers": {r: {k: v for k, v in m.items() if k != "_curve"} for r, m in g["routers"].items()}}
        for name, g in groups.items()
    }
    return {"note": PAIR_NOTE, "data": stats, "classifier": info, "groups": public, "plot": str(args.plot)}


def print_table(result: dict[str, object]) -> None:
    print(f"NOTE: {result['note']}")
    print(f"data: {result['data']}")
    print(f"classifier: {result['classifier']}")
    for name, g in result["groups"].items():
        print(f"\n{name}: n={g['n']}  weak acc {g['weak_accuracy']:.3f}  strong acc {g['strong_accuracy']:.3f}")
        print(f"  {'router':<12} {'APGR':>6} {'vs random':>10} {'large% @50% gap':>16} {'large% @80% gap':>16}")
        base = g["routers"]["random"]["apgr"]
        for router, r in g["routers"].items():
            print(f"  {router:<12} {r['apgr']:>6.3f} {r['apgr'] / base:>9.2f}x "
                  f"{r['large_share_for_50pct_gap'] * 100:>15.1f}% {r['large_share_for_80pct_gap'] * 100:>15.1f}%")
        clf = g["routers"]["classifier"]
        lo, hi = clf["minus_length_only_95ci"]
        print(f"  classifier APGR 95% CI {clf['apgr_95ci']}; classifier minus length-only 95% CI [{lo:+.3f}, {hi:+.3f}]")
    print(f"\nplot: {result['plot']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="classifier artifact (default: the shipped one)")
    parser.add_argument("--embedder", default="all-MiniLM-L6-v2",
                        help="embedder whose shipped classifier is measured (e.g. multilingual-e5-small)")
    parser.add_argument("--mmlu-sample", type=int, default=1500, help="MMLU rows to use (0 = all ~14k; slow)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", type=Path, default=RESULTS / "router_quality.png", help="PNG to write")
    parser.add_argument("--out", type=Path, default=RESULTS / "router_quality.json", help="JSON to write")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)


if __name__ == "__main__":
    main()
