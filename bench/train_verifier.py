"""Train a pair verifier for one embedder and print its card's numbers (run from the repo root).

    PYTHONPATH=. HF_HUB_OFFLINE=1 python bench/train_verifier.py [--embedder NAME] [--out DIR]
        [--scale 0.3] [--embedding-cache bench/results/cache/NAME.npz]

The same run as ``semroute train-verifier`` (``semroute.training.verifier_job``): pairs from
banking77 and clinc150 train, TQP train, xSID valid, STSb-TR train (its ends only), the traffic
FAQ's tuning split and the generated minimal pairs (``semroute.training.minimal_pairs``). The COVID
FAQ, banking77/clinc150/xSID test, TQP dev, the traffic test split and the demo rows are not
trained on: bench/cache_quality.py measures on them. This script only forwards its arguments.
"""

from __future__ import annotations

import sys

from semroute.cli import main
from semroute.training.embedcache import CachedEmbedder as _CachedEmbed  # noqa: F401  (bench/cache_stream.py)
from semroute.training.sources import groups as _tqp_groups  # noqa: F401  (bench/cache_quality.py)

if __name__ == "__main__":
    main(["train-verifier", *sys.argv[1:]])
