"""Counters and latency samples for one router, with percentiles and Prometheus text output.

Every step of a request records here (hits and misses per tier, latency per step, tokens,
fallbacks, store and backend errors), so users can measure hit rate, tier mix and latency
on their own traffic. It is not a metrics backend: export ``prometheus()`` or ``snapshot()``.
"""

from __future__ import annotations

import math
import threading
from collections import Counter, deque

import numpy as np

from .redact import redact_text

__all__ = ["Metrics"]


class Metrics:
    """Thread-safe counters and bounded latency reservoirs (the newest ``window`` samples)."""

    def __init__(self, *, window: int = 10_000) -> None:
        self._window = window
        self._lock = threading.Lock()
        self._counters: Counter[str] = Counter()
        self._samples: dict[str, deque[float]] = {}

    def incr(self, name: str, amount: float = 1) -> None:
        with self._lock:
            self._counters[name] += amount

    def observe(self, name: str, value_ms: float) -> None:
        with self._lock:
            samples = self._samples.get(name)
            if samples is None:
                samples = self._samples[name] = deque(maxlen=self._window)
            samples.append(value_ms)

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

    def snapshot(self) -> dict[str, object]:
        """Counters and latency percentiles as plain data (JSON-ready)."""
        with self._lock:
            counters = dict(self._counters)
            names = list(self._samples)
        return {"counters": counters, "latency_ms": {n: self.percentiles(n) for n in names}}

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
        return redact_text("\n".join(lines) + "\n")  # names may embed instance labels


def _clean(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)
