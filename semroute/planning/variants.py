"""What-if variants of a plan profile: another hit rate, answer length or slot count.

Each returns a new ``PlanProfile`` that differs in one input, for sensitivity tables
(``model.sensitivity``). They change inputs only; they plan nothing.
"""

from __future__ import annotations

from dataclasses import replace

from ..errors import ConfigError
from .profile import PlanProfile, TokenDist, saturating_curve

__all__ = ["with_hit_rate", "with_answer_scale", "with_slots"]


def with_hit_rate(profile: PlanProfile, hit_rate: float) -> PlanProfile:
    """Another cache hit rate; the misses keep their tier mix."""
    traffic = profile.traffic
    misses = 1.0 - traffic.hit_rate
    if not 0 <= hit_rate < 1 or misses <= 0:
        raise ConfigError(f"hit_rate must be in [0, 1) and the profile must have misses, got {hit_rate!r}")
    tiers = {t: replace(tt, share=tt.share * (1.0 - hit_rate) / misses) for t, tt in traffic.tiers.items()}
    return replace(profile, traffic=replace(traffic, tiers=tiers, hit_rate=hit_rate))


def with_answer_scale(profile: PlanProfile, factor: float) -> PlanProfile:
    """Every tier's answers ``factor`` times as long (same cv)."""
    if factor <= 0:
        raise ConfigError(f"factor must be > 0, got {factor!r}")
    tiers = {t: replace(tt, answer_tokens=TokenDist(tt.answer_tokens.mean * factor, tt.answer_tokens.cv))
             for t, tt in profile.traffic.tiers.items()}
    return replace(profile, traffic=replace(profile.traffic, tiers=tiers))


def with_slots(profile: PlanProfile, slots: int) -> PlanProfile:
    """Every server with ``slots`` parallel slots and the default saturating throughput curve."""
    servers = {t: replace(s, slots=slots, throughput_curve=saturating_curve(slots)) for t, s in profile.servers.items()}
    return replace(profile, servers=servers)
