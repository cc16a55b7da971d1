"""Where a semantic lookup's time goes: index search, pair verifier, answer consensus.

Runs ``bench/cache_latency.py`` (same arguments) with timers around the index search
(``FaissIndex._search``, which both the id- and the row-labelled searches go through), scoring
the proposed candidates against the store (``Replica._score``), reading the kept ones
(``Replica.read``), ``PairVerifier.accept`` and the cache's consensus step, and prints their
per-lookup p50 and mean over the last 1,000 lookups that served a hit (the semantic-hit path of
the timed phase):

    PYTHONPATH=. python bench/lookup_split.py [--answers per-intent] [--entries 10000]
"""

from __future__ import annotations

import collections
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cache_latency  # noqa: E402

from semroute.cache import index, replica  # noqa: E402
from semroute.hits import lookup as semantic  # noqa: E402
from semroute.hits.verify import PairVerifier  # noqa: E402

spent: dict[str, float] = collections.defaultdict(float)
samples: dict[str, list[float]] = collections.defaultdict(list)


def _timed(cls, name: str, part: str) -> None:
    inner = getattr(cls, name)

    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            spent[part] += (time.perf_counter() - t0) * 1000

    setattr(cls, name, timed)


def main() -> None:
    _timed(index.FaissIndex, "_search", "search")
    _timed(replica.Replica, "_score", "score")
    _timed(replica.Replica, "read", "read")
    _timed(PairVerifier, "accept", "verifier")
    _timed(semantic.SemanticCache, "_with_consensus", "consensus")
    lookup = semantic.SemanticCache.semantic

    def timed_lookup(self, *args, **kwargs):
        spent.clear()
        t0 = time.perf_counter()
        out = lookup(self, *args, **kwargs)
        spent["lookup"] = (time.perf_counter() - t0) * 1000
        if out[0] is not None:
            for part in ("lookup", "search", "score", "read", "verifier", "consensus"):
                samples[part].append(spent.get(part, 0.0))
        return out

    semantic.SemanticCache.semantic = timed_lookup
    cache_latency.main(sys.argv[1:])
    print("\nper semantic hit (last 1,000), ms:")
    for part, values in samples.items():
        v = np.asarray(values[-1000:])
        print(f"  {part:10s} p50 {np.percentile(v, 50):.3f}  mean {v.mean():.3f}")


if __name__ == "__main__":
    main()
