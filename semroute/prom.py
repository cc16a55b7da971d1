"""The router's ``Metrics`` as Prometheus metric families (``prometheus-client``).

One source of truth: every number comes from ``Metrics.snapshot()`` at scrape time, the same
snapshot ``Router.stats()`` and ``semroute stats`` show. Families: ``semroute_router_events``
(every counter by name: answers per tier, tier calls, tokens generated and avoided, errors),
``semroute_router_latency_ms`` (recent percentiles), ``semroute_router_step_seconds`` (all-time
histograms per step and tier) and ``semroute_savings`` (``semroute.savings`` under a
``CostModel``). The gateway registers it; any app can (``registry_for``). Needs the ``serve``
extra's ``prometheus-client``; ``Metrics.prometheus()`` is the dependency-free text form.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from .metrics import Metrics
from .savings import CostModel, savings

__all__ = ["RouterCollector", "registry_for"]


class RouterCollector:
    """A prometheus-client collector over one ``Metrics``."""

    def __init__(self, metrics: Metrics, cost: CostModel | None = None) -> None:
        self._metrics = metrics
        self._cost = cost or CostModel()

    def collect(self) -> Iterator[Metric]:
        snap = self._metrics.snapshot()
        counters = CounterMetricFamily("semroute_router_events", "Router events by name", labels=["event"])
        for name, value in sorted(snap["counters"].items()):
            counters.add_metric([name], value)
        yield counters
        latency = GaugeMetricFamily("semroute_router_latency_ms", "Router step latency percentiles (ms)",
                                    labels=["step", "quantile"])
        for name, stats in sorted(snap["latency_ms"].items()):
            for q in ("p50", "p95", "p99"):
                if q in stats:
                    latency.add_metric([name, f"0.{q[1:]}"], stats[q])
        yield latency
        yield _histograms(snap["histograms_ms"])
        yield _savings(savings(snap, self._cost))


def _histograms(hists: dict[str, Any]) -> HistogramMetricFamily:
    family = HistogramMetricFamily("semroute_router_step_seconds", "Router latency per step and tier (all time)",
                                   labels=["step"])
    for name, hist in sorted(hists.items()):
        buckets = [(f"{le / 1000:g}", count) for le, count in zip(hist["le_ms"], hist["cumulative"])]
        buckets.append(("+Inf", hist["count"]))
        family.add_metric([name], buckets, hist["sum_ms"] / 1000)
    return family


def _savings(report: dict[str, Any]) -> GaugeMetricFamily:
    currency = report["cost_model"]["currency"]
    family = GaugeMetricFamily("semroute_savings", "Money saved and spent under the cost model (semroute.savings)",
                               labels=["quantity", "currency"])
    values = {"api_saved": report["api"]["saved"], "api_cost_without_cache": report["api"]["cost_without_cache"],
              "api_cost_of_misses": report["api"]["cost_of_misses"], "own_cost": report["own"]["cost"],
              "own_saved": report["own"]["saved"], "own_per_1000_questions": report["own"]["per_1000_questions"]}
    for name, value in values.items():
        if value is not None:
            family.add_metric([name, currency], value)
    return family


def registry_for(metrics: Metrics, cost: CostModel | None = None) -> CollectorRegistry:
    """A registry holding only the router's metrics (``generate_latest(registry)`` for a /metrics view)."""
    registry = CollectorRegistry()
    registry.register(RouterCollector(metrics, cost))  # type: ignore[arg-type]
    return registry
