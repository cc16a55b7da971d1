"""A soak: a full cache asked a steady mix for a while; lost responses and RSS drift once full."""

from __future__ import annotations

import random
import tempfile
import threading
import time
from pathlib import Path

from reliability_helpers import SMALL, light_router
from semroute.errors import SemrouteError
from semroute.settings import CacheSettings, RouterSettings
from semroute.testing import FakeOllama

THREADS = 4


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    import os

    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def run(seconds: float, entries: int) -> dict[str, object]:
    settings = RouterSettings(cache=CacheSettings(consensus=False, max_entries=entries))
    counts = {"asked": 0, "answered": 0, "typed_errors": 0, "other_errors": 0, "hits": 0}
    lock = threading.Lock()
    with FakeOllama([SMALL]) as fake, light_router([fake.url], Path(tempfile.mkdtemp()), settings=settings) as router:
        t0 = time.perf_counter()
        for i in range(entries):  # fill the cache to max_entries through real misses
            router.ask(f"seed question {i}")
        fill_s = time.perf_counter() - t0
        stop = time.monotonic() + seconds
        fresh = iter(range(10**9))

        def worker(seed: int) -> None:
            rng = random.Random(seed)
            while time.monotonic() < stop:
                new = rng.random() < 0.1
                q = f"new question {next(fresh)}" if new else f"seed question {rng.randrange(entries)}"
                outcome = "answered"
                try:
                    answer = router.ask(q)
                    if answer.source in ("exact", "semantic"):
                        with lock:
                            counts["hits"] += 1
                except SemrouteError:
                    outcome = "typed_errors"
                except Exception:  # noqa: BLE001 - counted: the target is zero
                    outcome = "other_errors"
                with lock:
                    counts["asked"] += 1
                    counts[outcome] += 1

        threads = [threading.Thread(target=worker, args=(s,)) for s in range(THREADS)]
        for t in threads:
            t.start()
        rss = [_rss_mb()]
        while any(t.is_alive() for t in threads):
            time.sleep(1.0)  # sampling period of the RSS probe, not synchronisation
            rss.append(_rss_mb())
        for t in threads:
            t.join()
        size = len(router.pipeline.cache.store)
    lost = counts["asked"] - counts["answered"]
    drift = (max(rss) - rss[0]) / rss[0]
    return {**counts, "lost_responses": lost, "requests_per_s": round(counts["asked"] / seconds, 1),
            "cache_entries": size, "max_entries": entries, "fill_s": round(fill_s, 1),
            "rss_mb_first": round(rss[0], 1), "rss_mb_last": round(rss[-1], 1), "rss_mb_max": round(max(rss), 1),
            "rss_drift": round(drift, 4), "rss_mb": [round(r, 1) for r in rss],
            "target_met": lost == 0 and abs(drift) <= 0.05}
