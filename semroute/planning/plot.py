"""A PNG of a profile's p95 and monthly cost against the number of users (``plan --plot``).

Left: p95 per tier and overall on the profile's fleet, with each tier's SLO. Right: the monthly
cost of the smallest fleet meeting the SLOs, next to the reference API's cost for the same
questions. Needs matplotlib (the ``plan`` extra), imported here only.
"""

from __future__ import annotations

import math
from pathlib import Path

from ..errors import ConfigError
from .model import plan
from .profile import PlanProfile

__all__ = ["plot_users", "user_grid"]


def user_grid(profile: PlanProfile, points: int = 14) -> list[int]:
    """Users from a tenth to twice the profile's (50 to 1,000 if it names none)."""
    top = 2 * (profile.traffic.users or 500)
    return sorted({max(1, round(top * (i + 1) / points)) for i in range(points)})


def plot_users(profile: PlanProfile, path: Path, users: list[int] | None = None) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ConfigError("--plot needs matplotlib: pip install 'semroute[plan]'") from exc
    grid = users or user_grid(profile)
    fixed = [plan(profile, users=n) for n in grid]
    sized = [plan(profile, users=n, fleet={}) for n in grid]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6), dpi=90)
    for tier in profile.traffic.tiers:
        left.plot(grid, [_cap(r.tiers[tier].p95_s) for r in fixed], marker=".", label=f"{tier} p95")
        left.axhline(profile.slo.p95_s[tier], linestyle=":", linewidth=0.8, color=left.lines[-1].get_color())
    left.plot(grid, [_cap(r.p95_s) for r in fixed], marker=".", color="black", label="overall p95")
    fleet = ", ".join(f"{n} {t}" for t, n in profile.fleet.items()) or "sized per point"
    left.set(xlabel="concurrent users", ylabel="p95 seconds (capped at 30)", title=f"fleet: {fleet}")
    left.legend(fontsize=7)
    right.plot(grid, [r.cost_per_month for r in sized], marker=".", label="servers (sized to SLO)")
    right.plot(grid, [r.api_cost_per_month for r in sized], marker=".", label="reference API, no cache")
    if profile.fleet:
        right.axhline(fixed[0].cost_per_month, linestyle=":", color="grey", label=f"the profile's fleet ({fleet})")
    right.set(xlabel="concurrent users", ylabel="$ per month", title="monthly cost")
    right.legend(fontsize=7)
    fig.tight_layout()
    try:
        fig.savefig(path)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write: {exc}") from exc
    finally:
        plt.close(fig)


def _cap(value: float, cap: float = 30.0) -> float:
    return cap if not math.isfinite(value) else min(value, cap)
