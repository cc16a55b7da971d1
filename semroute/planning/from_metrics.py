"""A traffic profile from what a router measured: ``Router.metrics.snapshot()``.

The snapshot counts answers by source (``answers.exact``/``semantic``/``small``/``large``) and
tokens over all model calls (``tokens.prompt``/``completion``), so it gives the hit rate, the
tier mix and mean token counts of real traffic. It does not give per-tier token counts (every
tier gets the overall means) nor their spread (``cv``, an assumption you pass), nor how many
users asked: pass ``users`` and ``think_time_s`` or ``arrival_rate``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError
from .profile import TierTraffic, TokenDist, TrafficProfile

__all__ = ["traffic_from_metrics"]

TIERS = ("small", "large")


def traffic_from_metrics(snapshot: Mapping[str, Any], *, users: int | None = None, think_time_s: float | None = None,
                         arrival_rate: float | None = None, cv: float = 0.5) -> TrafficProfile:
    """The hit rate, tier mix and mean tokens of ``snapshot`` as a ``TrafficProfile``."""
    counters = snapshot.get("counters") if isinstance(snapshot, Mapping) else None
    if not isinstance(counters, Mapping):
        raise ConfigError("a metrics snapshot has a 'counters' table (Router.metrics.snapshot())")
    hits = float(counters.get("answers.exact", 0)) + float(counters.get("answers.semantic", 0))
    misses = {t: float(counters.get(f"answers.{t}", 0)) for t in TIERS}
    total = hits + sum(misses.values())
    called = sum(misses.values())
    if total <= 0 or called <= 0:
        raise ConfigError("the metrics snapshot has no answers from a model tier to plan from")
    prompt = float(counters.get("tokens.prompt", 0)) / called
    answer = float(counters.get("tokens.completion", 0)) / called
    if prompt <= 0 or answer <= 0:
        raise ConfigError("the metrics snapshot has no token counts (tokens.prompt / tokens.completion)")
    tiers = {t: TierTraffic(n / total, TokenDist(prompt, cv), TokenDist(answer, cv)) for t, n in misses.items() if n}
    return TrafficProfile(tiers, hits / total, arrival_rate=arrival_rate, users=users, think_time_s=think_time_s)
