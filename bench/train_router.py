"""Train the shipped complexity classifiers, one per embedder, reusing cached embeddings.

Does exactly what ::

    semroute train-router data/complexity_train.csv --heldout data/complexity_heldout.csv \
        --routing data/complexity_routing.csv --target-recall 0.95 \
        --embedder NAME --out models/NAME/complexity

does (the same files, the same ``semroute.training.complexity.train`` call, the hard set kept
out), except that embeddings are read from and written to the cache in ``bench/results/``
(``routellm_split.embed_cached``, keyed by embedder name and text hash). The 7.6k routing rows
are long exam questions; on a shared 2-core machine embedding them is most of the training time,
and the benchmarks have usually embedded them already. The cache changes no number.

Run from the repository root::

    python bench/train_router.py --embedder all-MiniLM-L6-v2
    python bench/train_router.py --embedder multilingual-e5-small --out /tmp/e5-complexity
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import routellm_split


class CachedEmbedder:
    """An embedder whose vectors go through the benchmark cache (same name, same vectors)."""

    def __init__(self, inner) -> None:
        self._inner = inner

    @property
    def name(self) -> str:
        return self._inner.name

    @property
    def dim(self) -> int:
        return self._inner.dim

    def embed(self, texts) -> np.ndarray:
        return routellm_split.embed_cached(list(texts), self._inner)


def main() -> None:
    from semroute.cli.router_cmds import _hard_set_prompts, _read_labelled
    from semroute.embed import make_embedder
    from semroute.training.complexity import ThresholdRule, train

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--embedder", required=True, help="built-in embedder name or sentence-transformers path")
    parser.add_argument("--out", type=Path, default=None, help="artifact folder (default: models/<embedder>/complexity)")
    parser.add_argument("--no-routing", action="store_true", help="no routing head (skips the 7.6k RouteLLM rows)")
    parser.add_argument("--target-recall", type=float, default=0.95)
    args = parser.parse_args()
    embedder = CachedEmbedder(make_embedder(args.embedder))
    data = ROOT / "data"
    clf, card = train(
        _read_labelled(data / "complexity_train.csv"),
        embedder=embedder,
        heldout=_read_labelled(data / "complexity_heldout.csv"),
        routing=None if args.no_routing else _read_labelled(data / "complexity_routing.csv"),
        rule=ThresholdRule("recall", args.target_recall),
        keep_out=_hard_set_prompts(),
        progress=lambda msg: print(msg, file=sys.stderr, flush=True),
    )
    out = args.out or ROOT / "models" / embedder.name / "complexity"
    clf.save(out, card)
    print(f"wrote {out} (threshold {clf.threshold:.4f}, held-out accuracy {card['heldout']['metrics']['accuracy']:.4f})")


if __name__ == "__main__":
    main()
