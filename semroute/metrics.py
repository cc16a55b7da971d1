"""Counters and latency samples for one router, with percentiles and Prometheus text output.

Every step of a request records here (hits and misses per tier, latency per step, tokens,
fallbacks, store and backend errors), so users can measure hit rate, tier mix and latency
on their own traffic. It is not a metrics backend: export ``prometheus()`` or ``snapshot()``.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections import Counter, deque
from typing import TYPE_CHECKING

import numpy as np

from .redact import redact_text

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Metrics", "BUCKETS_MS"]

# Histogram bounds (ms): an exact hit over loopback (~0.5 ms, bench/serve.py) to a long model
# answer (a minute); the same bounds as the gateway's request histogram, in milliseconds.
BUCKETS_MS = (0.5, 1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
              30000.0, 60000.0)


class Metrics:
    """Thread-safe counters, bounded latency reservoirs (the newest ``window`` samples, for
    percentiles) and all-time latency histograms (``BUCKETS_MS``, for Prometheus and reports)."""

    def __init__(self, *, window: int = 10_000, clock: Callable[[], float] = time.time) -> None:
        self._window = window
        self._lock = threading.Lock()
        self._counters: Counter[str] = Counter()
        self._samples: dict[str, deque[float]] = {}
        self._buckets: dict[str, list[float]] = {}  # per bound, then +Inf, then the sum of values
        self._clock = clock
        self._started = clock()

    def incr(self, name: str, amount: float = 1) -> None:
        with self._lock:
            self._counters[name] += amount

    def observe(self, name: str, value_ms: float) -> None:
        with self._lock:
            samples = self._samples.get(name)
            if samples is None:
                samples = self._samples[name] = deque(maxlen=self._window)
            samples.append(value_ms)
            counts = self._buckets.get(name)
            if counts is None:
                counts = self._buckets[name] = [0.0] * (len(BUCKETS_MS) + 2)
            counts[bisect.bisect_left(BUCKETS_MS, value_ms)] += 1
            counts[-1] += value_ms

    def count(self, name: str) -> float:
        with self._lock:
            return self._counters[name]

    def percentiles(self, name: str, qs: tuple[float, ...] = (50, 95, 99)) -> dict[str, float]:
        with self._lock:
            data = np.fromiter(self._samples.get(name, ()), dtype=np.float64)
        if data.size == 0:
            return {}
        values = np.percentile(data, qs)
        out = {f"p{q:g}": float(v) for q, v in zip(qs, values)}
        out["count"] = float(data.size)
        out["mean"] = float(data.mean())
        return out

    def histograms(self) -> dict[str, dict[str, object]]:
        """Per name: cumulative counts at each bound of ``BUCKETS_MS`` (``le_ms``), ``count`` and ``sum_ms``."""
        with self._lock:
            raw = {name: list(counts) for name, counts in self._buckets.items()}
        out: dict[str, dict[str, object]] = {}
        for name, counts in raw.items():
            cumulative = np.cumsum(counts[:-1]).tolist()
            out[name] = {"le_ms": list(BUCKETS_MS), "cumulative": cumulative[:-1], "count": cumulative[-1],
                         "sum_ms": counts[-1]}
        return out

    def snapshot(self) -> dict[str, object]:
        """Counters, latency percentiles and histograms as plain data (JSON-ready).

        ``started``/``taken`` are wall-clock seconds (the metrics' clock): the period the counters cover.
        """
        with self._lock:
            counters = dict(self._counters)
            names = list(self._samples)
        return {"counters": counters, "latency_ms": {n: self.percentiles(n) for n in names},
                "histograms_ms": self.histograms(), "started": self._started, "taken": self._clock()}

    def hit_rate(self) -> float:
        hits = self.count("answers.exact") + self.count("answers.semantic")
        total = hits + self.count("answers.small") + self.count("answers.large")
        return hits / total if total else math.nan

    def prometheus(self, prefix: str = "semroute") -> str:
        """Prometheus text exposition of counters and latency summaries."""
        lines: list[str] = []
        snap = self.snapshot()
        for name, value in sorted(snap["counters"].items()):  # type: ignore[union-attr]
            metric = f"{prefix}_{_clean(name)}_total"
            lines += [f"# TYPE {metric} counter", f"{metric} {value:g}"]
        for name, stats in sorted(snap["latency_ms"].items()):  # type: ignore[union-attr]
            metric = f"{prefix}_{_clean(name)}_ms"
            lines.append(f"# TYPE {metric} summary")
            for q in ("p50", "p95", "p99"):
                if q in stats:
                    lines.append(f'{metric}{{quantile="0.{q[1:]}"}} {stats[q]:.6g}')
            lines.append(f"{metric}_count {stats.get('count', 0):g}")
        for name, hist in sorted(snap["histograms_ms"].items()):  # type: ignore[union-attr]
            metric = f"{prefix}_{_clean(name)}_seconds"
            lines.append(f"# TYPE {metric} histogram")
            for bound, count in zip(hist["le_ms"], hist["cumulative"]):
                lines.append(f'{metric}_bucket{{le="{bound / 1000:g}"}} {count:g}')
            lines += [f'{metric}_bucket{{le="+Inf"}} {hist["count"]:g}', f"{metric}_sum {hist['sum_ms'] / 1000:.6g}",
                      f"{metric}_count {hist['count']:g}"]
        return redact_text("\n".join(lines) + "\n")  # names may embed instance labels


def _clean(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)
