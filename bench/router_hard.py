"""Does the complexity router read the question, not its length? Accuracy on the hard set.

``data/complexity_hard.csv`` (226 prompts, English and Turkish, see ``data/README.md``) holds
prompts whose length points the wrong way: long chatty preambles before a one-fact question
(``long_simple``), terse asks to compare, plan, calculate, explain, draft, analyse, prove or debug
(``short_complex``), and honest controls (``control_simple`` short and simple, ``control_complex``
long and complex). No prompt of it is in any training file (``bench/build_complexity_data.py``
refuses, ``semroute train-router`` drops them, ``tests/test_router_hard.py`` checks).

Compared in the same run, for each embedder's shipped classifier:

- the classifier at its card's threshold;
- a *length-only* router: complex when the prompt has at least T characters, with T the cut that
  maximises accuracy on the training file ``data/complexity_train.csv`` (fitted there, never on
  the sets measured here).

Both are measured on the hard set and on the existing held-out file
(``data/complexity_heldout.csv``). Embeddings are cached in ``bench/results/`` (git-ignored).

Run from the repository root::

    python bench/router_hard.py                                   # every embedder with a shipped model
    python bench/router_hard.py --embedder all-MiniLM-L6-v2 --json
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import routellm_split

RESULTS = ROOT / "bench" / "results"
SETS = {"hard": "complexity_hard.csv", "heldout": "complexity_heldout.csv"}


def load(name: str):
    from semroute.training.complexity import labelled_set

    with (ROOT / "data" / name).open(encoding="utf-8", newline="") as f:
        return labelled_set(list(csv.DictReader(f)), name=name)


def length_cut(train) -> int:
    """The character count T for which "complex iff len >= T" is most accurate on ``train``."""
    lengths = np.array([len(p) for p in train.prompts])
    cuts = np.unique(lengths)
    return int(max(cuts, key=lambda t: float(((lengths >= t) == train.labels).mean())))


def accuracy_by(data, pred: np.ndarray) -> dict[str, object]:
    correct = pred == data.labels.astype(bool)
    out: dict[str, object] = {"n": len(correct), "accuracy": round(float(correct.mean()), 4)}
    for group in ("kind", "lang"):
        if group in data.groups:
            col = np.array(data.groups[group])
            out[f"by_{group}"] = {v: round(float(correct[col == v].mean()), 4) for v in sorted(set(col.tolist()))}
    return out


def shipped_embedders() -> list[str]:
    from semroute.artifacts import shipped

    return sorted(p.parent.parent.name for p in shipped("models").glob("*/complexity/card.json"))


def measure(embedder_name: str, model: Path | None, cut: int) -> dict[str, object]:
    from semroute.embed import make_embedder
    from semroute.routing.classify import LogisticComplexityClassifier

    embedder = make_embedder(embedder_name)
    clf = LogisticComplexityClassifier.load(model, embedder_name=embedder.name)
    out: dict[str, object] = {"threshold": round(clf.threshold, 4), "model": str(model or f"models/{embedder.name}/complexity")}
    for key, name in SETS.items():
        data = load(name)
        vectors = routellm_split.embed_cached(list(data.prompts), embedder)
        lengths = np.array([len(p) for p in data.prompts])
        out[key] = {
            "classifier": accuracy_by(data, clf.predict(vectors, data.prompts)),
            "length-only": accuracy_by(data, lengths >= cut),
        }
    return out


def print_table(result: dict[str, object]) -> None:
    print(f"length-only cut: complex iff >= {result['length_cut']} characters (best on {result['length_fitted_on']})")
    for name, r in result["embedders"].items():
        print(f"\n{name} (threshold {r['threshold']})")
        for key in SETS:
            clf, base = r[key]["classifier"], r[key]["length-only"]
            print(f"  {key:<8} n={clf['n']:<4} classifier {clf['accuracy']:.3f}   length-only {base['accuracy']:.3f}"
                  f"   difference {clf['accuracy'] - base['accuracy']:+.3f}")
            for group in ("by_kind", "by_lang"):
                if group in clf:
                    parts = ", ".join(f"{k} {v:.3f}/{base[group][k]:.3f}" for k, v in clf[group].items())
                    print(f"    {group[3:]} (classifier/length-only): {parts}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--embedder", action="append", default=None,
                        help="embedder name (repeatable; default: every embedder with a shipped complexity model)")
    parser.add_argument("--model", type=Path, default=None, help="artifact directory (only with one --embedder)")
    parser.add_argument("--out", type=Path, default=RESULTS / "router_hard.json", help="JSON to write")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    names = args.embedder or shipped_embedders()
    if args.model is not None and len(names) != 1:
        parser.error("--model needs exactly one --embedder")
    cut = length_cut(load("complexity_train.csv"))
    result = {"length_cut": cut, "length_fitted_on": "complexity_train.csv",
              "embedders": {name: measure(name, args.model, cut) for name in names}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        print_table(result)


if __name__ == "__main__":
    main()
