"""Queueing formulas: Erlang B and C, the M/M/c wait, and birth-death chains with state-dependent
service rates (servers whose streams slow down as parallel slots fill).

Pure functions of numbers; no profiles, no I/O. ``model`` uses them to plan; tests check them
against textbook values. Every rate is per second; ``offered`` load ``a = lambda / mu`` is in
Erlangs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import ConfigError

__all__ = ["erlang_b", "erlang_c", "mmc_mean_wait", "mmc_wait_quantile", "allen_cunneen_factor",
           "Chain", "birth_death"]


def erlang_b(servers: int, offered: float) -> float:
    """Blocking probability of M/M/c/c (Erlang B), by the stable recursion B(k) = aB/(k + aB)."""
    if servers < 0 or offered < 0:
        raise ConfigError("erlang_b needs servers >= 0 and offered load >= 0")
    b = 1.0
    for k in range(1, servers + 1):
        b = offered * b / (k + offered * b)
    return b


def erlang_c(servers: int, offered: float) -> float:
    """Probability that an arrival waits in M/M/c (Erlang C); 1.0 when ``offered >= servers``."""
    if servers < 1:
        raise ConfigError("erlang_c needs at least one server")
    if offered >= servers:
        return 1.0
    b = erlang_b(servers, offered)
    rho = offered / servers
    return b / (1.0 - rho * (1.0 - b))


def mmc_mean_wait(servers: int, arrival: float, service: float) -> float:
    """Mean wait in queue of M/M/c with arrival rate ``arrival`` and per-server rate ``service``."""
    offered = arrival / service
    if offered >= servers:
        return math.inf
    return erlang_c(servers, offered) / (servers * service - arrival)


def mmc_wait_quantile(servers: int, arrival: float, service: float, q: float) -> float:
    """The ``q`` quantile of the M/M/c wait: P(W > t) = C exp(-(c mu - lambda) t)."""
    offered = arrival / service
    if offered >= servers:
        return math.inf
    c = erlang_c(servers, offered)
    if c <= 1.0 - q:
        return 0.0
    return math.log(c / (1.0 - q)) / (servers * service - arrival)


def allen_cunneen_factor(arrival_scv: float, service_scv: float) -> float:
    """(ca^2 + cs^2) / 2: the Allen-Cunneen scaling of the M/M/c wait for G/G/c.

    Exact for M/G/1's mean wait (Pollaczek-Khinchine); an approximation for c > 1, good within
    a few percent for moderate service variability (cs^2 <= 2) and heavy traffic.
    """
    return (arrival_scv + service_scv) / 2.0


@dataclass(frozen=True, slots=True)
class Chain:
    """The stationary law of a birth-death chain whose death rate is constant from state ``c``.

    ``p[n]`` for n = 0..c; beyond, ``p[c + j] = p[c] * ratio**j``. ``tail_rate`` is the (constant)
    death rate from state ``c`` on.
    """

    p: tuple[float, ...]
    ratio: float
    tail_rate: float

    @property
    def c(self) -> int:
        return len(self.p) - 1

    @property
    def wait_probability(self) -> float:
        """P(an arrival finds all c busy) = P(n >= c), by PASTA."""
        return self.p[-1] / (1.0 - self.ratio)

    def mean_in_system(self) -> float:
        head = sum(n * p for n, p in enumerate(self.p[:-1]))
        pc, r, c = self.p[-1], self.ratio, self.c
        return head + pc * (c / (1.0 - r) + r / (1.0 - r) ** 2)


def birth_death(arrival: float, rates: Sequence[float]) -> Chain:
    """Stationary law for birth rate ``arrival`` and death rate ``rates[n-1]`` in state n = 1..c
    (``rates[-1]`` also for every state beyond c). Raises ``ConfigError`` if unstable."""
    if arrival <= 0 or not rates or min(rates) <= 0:
        raise ConfigError("birth_death needs arrival > 0 and positive death rates")
    tail = rates[-1]
    ratio = arrival / tail
    if ratio >= 1.0:
        raise ConfigError(f"unstable: arrival {arrival:.4g}/s is at or above capacity {tail:.4g}/s")
    logs = [0.0]
    for rate in rates:
        logs.append(logs[-1] + math.log(arrival / rate))
    top = max(logs)
    weights = [math.exp(v - top) for v in logs]
    # States beyond c add p_c * r / (1 - r).
    total = sum(weights) + weights[-1] * ratio / (1.0 - ratio)
    return Chain(tuple(w / total for w in weights), ratio, tail)
