"""Checking a scenario's own claims against what its inputs imply.

A profile's ``[claims]`` table holds what a scenario says (users served, fleet, monthly cost,
latency per tier, a GPU price); each check recomputes the claim from the profile's inputs
and says whether the two agree (within ``TOLERANCE``). Checks only compare; the numbers come
from ``model``. Recognised claims (all optional):

``servers`` {tier: count} (the fleet the other claims are about; default the profile's fleet),
``users`` (concurrent users that fleet serves within the latency claims or the SLOs),
``cost_per_month`` (that fleet's price), ``latency_s`` {tier: [low, high]} (answer times at
``users``), ``gpu_hourly_usd`` + ``gpu_cost_per_month`` (an hourly price and its monthly total).
Unknown keys are reported as unchecked, never silently dropped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from ..errors import ConfigError
from .model import max_users, plan
from .profile import PlanProfile, Slo

__all__ = ["Inconsistency", "ClaimCheck", "check_claims", "TOLERANCE", "KNOWN_CLAIMS"]

TOLERANCE = 0.05  # relative: rounding in a hand estimate, not a modelling difference
KNOWN_CLAIMS = ("servers", "users", "cost_per_month", "latency_s", "gpu_hourly_usd", "gpu_count",
                "gpu_cost_per_month", "note")


@dataclass(frozen=True, slots=True)
class ClaimCheck:
    """One claim, the value its inputs imply, and whether they agree."""

    claim: str
    claimed: Any
    computed: Any
    consistent: bool | None  # None: not checkable (an unknown key)
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"claim": self.claim, "claimed": self.claimed, "computed": self.computed,
                "consistent": self.consistent, "note": self.note}


Inconsistency = ClaimCheck  # an inconsistency is a check that failed


def _close(claimed: float, computed: float) -> bool:
    return math.isfinite(computed) and abs(claimed - computed) <= TOLERANCE * max(abs(claimed), abs(computed))


def _fleet(profile: PlanProfile) -> dict[str, int]:
    raw = profile.claims.get("servers", profile.fleet)
    if not isinstance(raw, Mapping) or set(raw) != set(profile.traffic.tiers):
        raise ConfigError("claims.servers must give a server count for every tier")
    return {str(k): int(v) for k, v in raw.items()}


def _latency_ranges(profile: PlanProfile) -> dict[str, tuple[float, float]]:
    raw = profile.claims.get("latency_s", {})
    out = {}
    for tier, value in dict(raw).items():
        if tier not in profile.traffic.tiers or not isinstance(value, (list, tuple)) or len(value) != 2:
            raise ConfigError(f"claims.latency_s.{tier} must be [low, high] seconds for a known tier")
        out[tier] = (float(value[0]), float(value[1]))
    return out


def check_claims(profile: PlanProfile) -> list[ClaimCheck]:
    """Every claim in ``profile.claims`` against its inputs (an empty list without claims)."""
    claims = profile.claims
    if not claims:
        return []
    checks: list[ClaimCheck] = []
    fleet = _fleet(profile)
    if "cost_per_month" in claims:
        computed = sum(n * profile.prices.server_per_month[t] for t, n in fleet.items())
        claimed = float(claims["cost_per_month"])
        checks.append(ClaimCheck("cost_per_month", claimed, round(computed, 2), _close(claimed, computed),
                                 f"{' + '.join(f'{n} x {t}' for t, n in fleet.items())} at the profile's prices"))
    checks += _gpu_checks(claims)
    checks += _load_checks(profile, fleet)
    for key in claims:
        if key not in KNOWN_CLAIMS:
            checks.append(ClaimCheck(key, claims[key], None, None, "not a claim the planner can check"))
    return checks


def _gpu_checks(claims: Mapping[str, Any]) -> list[ClaimCheck]:
    if "gpu_hourly_usd" not in claims or "gpu_cost_per_month" not in claims:
        return []
    hourly, claimed = float(claims["gpu_hourly_usd"]), float(claims["gpu_cost_per_month"])
    hours = 730.0
    computed = hourly * hours
    note = f"{hourly:g}/hour x {hours:g} hours/month"
    if not _close(claimed, computed) and hourly > 0:
        implied = claimed / hourly
        note += f"; the claimed total is {implied:g} hours of that price" + (
            " (one day)" if abs(implied - 24) < 0.5 else "")
    return [ClaimCheck("gpu_cost_per_month", claimed, round(computed, 2), _close(claimed, computed), note)]


def _load_checks(profile: PlanProfile, fleet: dict[str, int]) -> list[ClaimCheck]:
    claims = profile.claims
    ranges = _latency_ranges(profile)
    checks: list[ClaimCheck] = []
    users = claims.get("users")
    if users is not None and profile.traffic.think_time_s is not None:
        users = int(users)
        result = plan(profile, users=users, fleet=fleet)
        for tier, (low, high) in ranges.items():
            r = result.tiers[tier]
            ok = math.isfinite(r.p95_s) and r.p95_s <= high * (1 + TOLERANCE) and r.p50_s >= low * (1 - TOLERANCE)
            checks.append(ClaimCheck(f"latency_s.{tier}", [low, high], [round(r.p50_s, 3), round(r.p95_s, 3)], ok,
                                     f"[p50, p95] at {users} users on {fleet[tier]} {tier} server(s)"))
        # The claimed latencies' upper ends are the scenario's own SLO for "served".
        slo = Slo({t: ranges.get(t, (0.0, profile.slo.p95_s[t]))[1] for t in profile.traffic.tiers})
        most = max_users(replace(profile, slo=slo), fleet=fleet)
        checks.append(ClaimCheck("users", users, most, most >= users * (1 - TOLERANCE),
                                 "most users whose every tier's p95 stays within the claimed upper latency"))
    return checks
