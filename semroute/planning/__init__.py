"""Capacity and cost planning: how many Ollama servers, at what latency and cost, for N users.

This package owns the planner's value objects (``profile``), the queueing formulas
(``queueing``), the capacity model built on them (``model``), the check of a profile's own
claims (``claims``), documented default server profiles (``defaults``), a discrete-event
simulation of the same system (``simulate``, needs the ``plan`` extra: SimPy), the probe that
measures a live Ollama's server profile (``probe``), a traffic profile from a router's metrics
(``from_metrics``), what-if variants (``variants``), a PNG (``plot``) and a scaled-time replay
through the real ``Router`` and ``Pool`` against a ``FakeFleet`` (``replay``).

It is not a load balancer and not a benchmark harness: it answers "how many, how fast, how
much" from a profile; it serves no requests. Imports: ``semroute.types``/``errors``/``settings``,
the standard library, numpy and (lazily) SimPy, httpx (``probe``) and matplotlib (``plot``); only
``replay`` imports ``semroute.testing`` and ``semroute.router`` (and the public ``semroute``).
Reading profile files is the CLI's job (``semroute plan``); here profiles are plain mappings.

Where the queueing model holds and where it does not is written in ``model``'s docstring.
"""

from __future__ import annotations

from .claims import Inconsistency, check_claims
from .model import PlanResult, TierResult, max_users, plan, sensitivity
from .profile import PlanProfile, Prices, ServerProfile, Slo, TierTraffic, TokenDist, TrafficProfile
from .profile_io import profile_from_mapping, server_profile_toml

__all__ = [
    "TokenDist",
    "TierTraffic",
    "TrafficProfile",
    "ServerProfile",
    "Slo",
    "Prices",
    "PlanProfile",
    "PlanResult",
    "TierResult",
    "plan",
    "max_users",
    "sensitivity",
    "Inconsistency",
    "check_claims",
    "profile_from_mapping",
    "server_profile_toml",
]
