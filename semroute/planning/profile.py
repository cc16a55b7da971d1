"""The planner's inputs as frozen value objects, validated on construction.

A ``PlanProfile`` is a traffic profile (how many questions, how many hit the cache, which tier
answers the rest, how long prompts and answers are), a server profile per tier (how fast one
Ollama server generates, alone and as parallel slots fill), SLOs (p95 per tier) and prices.
Bad values raise ``ConfigError`` naming the field. Nothing here computes a plan (``model``)
or reads a file (``profile_io`` turns a mapping into these; the CLI reads the file).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from ..errors import ConfigError

__all__ = [
    "TokenDist", "TierTraffic", "TrafficProfile", "ServerProfile", "Slo", "Prices", "PlanProfile",
    "saturating_curve", "HOURS_PER_MONTH",
]

HOURS_PER_MONTH = 730.0  # 8,760 hours a year / 12


def _number(owner: str, name: str, value: object, *, low: float = 0.0, strict: bool = True,
            high: float = math.inf) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < low or (strict and value == low) or value > high:
        bound = f"> {low:g}" if strict else f">= {low:g}"
        upper = "" if high == math.inf else f" and <= {high:g}"
        raise ConfigError(f"{owner}.{name} must be a number {bound}{upper}, got {value!r}")
    return float(value)


def _frozen_map(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(value))


def saturating_curve(slots: int, at_8: float = 1.5) -> tuple[float, ...]:
    """Total throughput at 1..``slots`` parallel streams as a multiple of one stream's.

    ``T(k) = k / (1 + b (k - 1))`` with ``b`` chosen so that ``T(8) = at_8``: close to linear
    for two streams, flat by eight. The default 1.5 is the middle of the 1.4-1.6x plateau
    reported for Ollama with 8 parallel requests on one GPU (a public figure, not measured here).
    """
    if not isinstance(slots, int) or slots < 1:
        raise ConfigError(f"slots must be an int >= 1, got {slots!r}")
    if not 1.0 <= at_8 <= 8.0:
        raise ConfigError(f"at_8 must be in [1, 8], got {at_8!r}")
    b = (8.0 / at_8 - 1.0) / 7.0
    return tuple(round(k / (1.0 + b * (k - 1)), 4) for k in range(1, slots + 1))


@dataclass(frozen=True, slots=True)
class TokenDist:
    """A token count: its mean and coefficient of variation (std / mean).

    ``cv == 0`` is a constant; otherwise counts are log-normal with that mean and cv (LLM answer
    lengths are right-skewed: the Azure 2023 conversation trace has mean 211, cv 0.77).
    """

    mean: float
    cv: float = 0.0

    def __post_init__(self) -> None:
        _number("TokenDist", "mean", self.mean)
        _number("TokenDist", "cv", self.cv, strict=False, high=10.0)

    @property
    def scv(self) -> float:
        return self.cv * self.cv

    def sample(self, rng: Any, n: int) -> Any:
        """``n`` draws (a numpy array) from a ``numpy.random.Generator``."""
        import numpy as np

        if self.cv == 0:
            return np.full(n, float(self.mean))
        sigma2 = math.log1p(self.scv)
        return rng.lognormal(math.log(self.mean) - sigma2 / 2, math.sqrt(sigma2), n)


@dataclass(frozen=True, slots=True)
class TierTraffic:
    """One model tier's traffic: its ``share`` of all questions, and its token counts."""

    share: float
    prompt_tokens: TokenDist
    answer_tokens: TokenDist

    def __post_init__(self) -> None:
        _number("TierTraffic", "share", self.share, strict=False, high=1.0)
        if not isinstance(self.prompt_tokens, TokenDist) or not isinstance(self.answer_tokens, TokenDist):
            raise ConfigError("TierTraffic.prompt_tokens and answer_tokens must be TokenDist")


@dataclass(frozen=True, slots=True)
class TrafficProfile:
    """Questions per second (``arrival_rate``), or ``users`` who each ask, wait for the answer,
    then think ``think_time_s`` before asking again (rate = users / (think + response)).

    ``hit_rate`` of questions are cache hits answered in ``hit_latency_s``; tier shares plus the
    hit rate must add up to 1. ``miss_overhead_s`` is the router's own time on a miss (embed,
    search, store), added to every tier's latency.
    """

    tiers: Mapping[str, TierTraffic]
    hit_rate: float
    hit_latency_s: float = 0.05
    miss_overhead_s: float = 0.0
    arrival_rate: float | None = None
    users: int | None = None
    think_time_s: float | None = None

    def __post_init__(self) -> None:
        _number("TrafficProfile", "hit_rate", self.hit_rate, strict=False, high=1.0)
        _number("TrafficProfile", "hit_latency_s", self.hit_latency_s, strict=False)
        _number("TrafficProfile", "miss_overhead_s", self.miss_overhead_s, strict=False)
        if not self.tiers or not all(isinstance(t, TierTraffic) for t in self.tiers.values()):
            raise ConfigError("TrafficProfile.tiers must map tier names to TierTraffic (at least one)")
        total = self.hit_rate + sum(t.share for t in self.tiers.values())
        if abs(total - 1.0) > 1e-6:
            raise ConfigError(f"TrafficProfile.hit_rate plus the tier shares must add up to 1, got {total:.4f}")
        if self.arrival_rate is not None:
            _number("TrafficProfile", "arrival_rate", self.arrival_rate)
        if self.users is not None and (not isinstance(self.users, int) or isinstance(self.users, bool)
                                       or self.users < 1):
            raise ConfigError(f"TrafficProfile.users must be an int >= 1, got {self.users!r}")
        if self.think_time_s is not None:
            _number("TrafficProfile", "think_time_s", self.think_time_s)
        if self.users is not None and self.think_time_s is None:
            raise ConfigError("TrafficProfile.think_time_s is needed to turn users into a question rate")
        if self.arrival_rate is None and self.users is None:
            raise ConfigError("TrafficProfile needs arrival_rate, or users and think_time_s")
        object.__setattr__(self, "tiers", _frozen_map(self.tiers))

    def with_users(self, users: int) -> TrafficProfile:
        return replace(self, users=users, arrival_rate=None)

    def with_rate(self, rate: float) -> TrafficProfile:
        return replace(self, arrival_rate=rate, users=None)


@dataclass(frozen=True, slots=True)
class ServerProfile:
    """One Ollama server running ``model``.

    ``tokens_per_s``: decode speed of one stream alone. ``slots``: ``OLLAMA_NUM_PARALLEL``.
    ``throughput_curve``: total decode throughput with 1..n streams as a multiple of one stream's
    (first entry 1.0; the last entry holds beyond; empty: ``saturating_curve(slots)``).
    ``prompt_tokens_per_s``: prompt processing rate. ``ttft_s``: time to first token on top of
    prompt processing (scheduling, a warm model). ``source`` says where the numbers come from.
    """

    model: str
    tokens_per_s: float
    slots: int = 4
    prompt_tokens_per_s: float = 2000.0
    ttft_s: float = 0.05
    throughput_curve: tuple[float, ...] = ()
    source: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError(f"ServerProfile.model must be a model name, got {self.model!r}")
        _number("ServerProfile", "tokens_per_s", self.tokens_per_s)
        if not isinstance(self.slots, int) or isinstance(self.slots, bool) or self.slots < 1:
            raise ConfigError(f"ServerProfile.slots must be an int >= 1, got {self.slots!r}")
        _number("ServerProfile", "prompt_tokens_per_s", self.prompt_tokens_per_s)
        _number("ServerProfile", "ttft_s", self.ttft_s, strict=False)
        curve = tuple(self.throughput_curve) or saturating_curve(self.slots)
        for value in curve:
            _number("ServerProfile", "throughput_curve", value)
        if abs(curve[0] - 1.0) > 0.05:
            raise ConfigError(f"ServerProfile.throughput_curve must start at 1.0 (one stream), got {curve[0]!r}")
        object.__setattr__(self, "throughput_curve", curve)

    def speedup(self, streams: int) -> float:
        """Total throughput with ``streams`` in slots, as a multiple of one stream's."""
        if streams < 1:
            return 0.0
        curve = self.throughput_curve
        return curve[min(streams, len(curve)) - 1]

    def slowdown(self, streams: int) -> float:
        """How much slower each stream decodes with ``streams`` in slots than alone."""
        return 1.0 if streams <= 1 else streams / self.speedup(streams)


@dataclass(frozen=True, slots=True)
class Slo:
    """Latency objectives: p95 seconds per tier and, optionally, over all questions."""

    p95_s: Mapping[str, float]
    overall_p95_s: float | None = None

    def __post_init__(self) -> None:
        for tier, value in self.p95_s.items():
            _number("Slo", f"p95_s.{tier}", value)
        if self.overall_p95_s is not None:
            _number("Slo", "overall_p95_s", self.overall_p95_s)
        object.__setattr__(self, "p95_s", _frozen_map(self.p95_s))


@dataclass(frozen=True, slots=True)
class Prices:
    """Money: each tier's server per month, and a reference API per 1M input/output tokens.

    ``hours_per_month`` is how long the planned load runs in a month (730: around the clock),
    used for questions per month, cost per 1,000 questions and the API comparison.
    """

    server_per_month: Mapping[str, float]
    api_input_per_1m: float = 0.0
    api_output_per_1m: float = 0.0
    hours_per_month: float = HOURS_PER_MONTH

    def __post_init__(self) -> None:
        for tier, value in self.server_per_month.items():
            _number("Prices", f"server_per_month.{tier}", value, strict=False)
        _number("Prices", "api_input_per_1m", self.api_input_per_1m, strict=False)
        _number("Prices", "api_output_per_1m", self.api_output_per_1m, strict=False)
        _number("Prices", "hours_per_month", self.hours_per_month, high=744.0)
        object.__setattr__(self, "server_per_month", _frozen_map(self.server_per_month))


@dataclass(frozen=True, slots=True)
class PlanProfile:
    """Everything a plan needs. ``fleet`` fixes server counts per tier (empty: the planner sizes
    each tier to its SLO); ``claims`` are a scenario's own statements, checked by ``claims``."""

    traffic: TrafficProfile
    servers: Mapping[str, ServerProfile]
    slo: Slo
    prices: Prices
    fleet: Mapping[str, int] = field(default_factory=dict)
    claims: Mapping[str, Any] = field(default_factory=dict)
    name: str = "plan"

    def __post_init__(self) -> None:
        tiers = set(self.traffic.tiers)
        for label, names in (("servers", self.servers), ("slo.p95_s", self.slo.p95_s),
                             ("prices.server_per_month", self.prices.server_per_month)):
            missing = sorted(tiers - set(names))
            if missing:
                raise ConfigError(f"PlanProfile.{label} has no entry for tier(s) {', '.join(missing)}")
        for tier, count in self.fleet.items():
            if tier not in tiers:
                raise ConfigError(f"PlanProfile.fleet.{tier}: no such tier in the traffic profile")
            if not isinstance(count, int) or isinstance(count, bool) or count < 1:
                raise ConfigError(f"PlanProfile.fleet.{tier} must be an int >= 1, got {count!r}")
        object.__setattr__(self, "servers", _frozen_map(self.servers))
        object.__setattr__(self, "fleet", _frozen_map(self.fleet))
        object.__setattr__(self, "claims", _frozen_map(self.claims))
