"""Train the answer consensus for one embedder (run from the repo root).

    PYTHONPATH=. HF_HUB_OFFLINE=1 python bench/train_consensus.py [--embedder NAME] [--out DIR]
        [--verifier DIR] [--scale 0.3] [--embedding-cache FILE.npz] [--target-precision 0.97]

The same run as ``semroute train-consensus`` (``semroute.training.consensus``); its tuning caches
(``semroute.training.tuning``) are disjoint from what bench/cache_quality.py measures on. The
threshold curve over every tuning set is printed and kept in the card.
"""

from __future__ import annotations

import sys

from semroute.cli import main


def tuning_sets():
    """banking77 and clinc150 tuning sets (bench/cache_stream.py replays them as streams)."""
    from shared_data import DATA

    from semroute.training.sources import SharedData
    from semroute.training.tuning import tuning_sets as sets

    return [s for s in sets(SharedData(DATA), None) if s[0] in ("banking77", "clinc150")]


if __name__ == "__main__":
    main(["train-consensus", *sys.argv[1:]])
