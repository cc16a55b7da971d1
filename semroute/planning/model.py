"""The capacity model: servers per tier, p50/p95 per tier and overall, utilisation and money.

Each tier is a pool of ``m`` identical Ollama servers with ``s`` parallel slots behind one FIFO
queue (semroute's ``Pool``: a slot limit per instance and a central queue; requests go to the
least busy instance). A request holds a slot for ``o + W * slowdown(k) / r``: a fixed part
``o`` (time to first token plus prompt tokens / prompt rate), then ``W`` answer tokens decoded
at ``r`` tokens/s slowed by ``slowdown(k) = k / T(k)`` while ``k`` requests share the server
(``T`` is the server's total-throughput curve).

How the numbers come about, and where the theory holds:

* Arrivals are Poisson (an open system). Users with think time give ``users / (think + R)``
  questions per second, solved by a fixed point on the mean response R; this is the usual
  open approximation of a closed population and is good when users far outnumber slots.
* The number of requests in a tier is a birth-death chain with arrival rate ``lambda`` and,
  with ``n`` requests spread evenly over the servers, departure rate ``sum_i k_i / E[S_{k_i}]``
  (constant once all ``m*s`` slots are busy). With exponential service this chain is exact; it
  is the M/M/c chain (Erlang C) with state-dependent rates, and reduces to it when the
  throughput curve is linear and ``o = 0``.
* The wait of an arrival that finds all slots busy is Erlang's: Gamma(n - c + 1, tail rate),
  scaled by Allen-Cunneen's (1 + cs^2) / 2 for non-exponential service (token counts are
  log-normal). Service time is sampled from the token distribution times a slowdown: for a
  request that found a free slot, half the slowdown it found on arrival and half the mean over
  arrivals (as in M/G/1-PS, where ``E[T | x] = x (1 + E[N])``); every slot's slowdown for a
  request that had to wait. Below the slot limit the chain is exact for any answer-length
  distribution (processor sharing with a state-dependent total rate is insensitive).
  p50/p95 come from 20,000 such samples per tier with a fixed seed (the same numbers every run).

Where it does not hold, and what to do about it: slots are processor sharing whose rate changes
under a running request, which the model averages rather than tracks (the SimPy simulation in
``simulate`` tracks it; ``bench/plan_check.py`` compares the two); heavy-tailed answer lengths
(cv >> 1) make the Allen-Cunneen scaling optimistic; bursty arrivals (the Azure trace is
burstier than Poisson) make every queueing formula here optimistic; prompt processing in
reality competes with decoding for the GPU and here does not; model loading, KV-cache
eviction and 503s past Ollama's queue are not modelled. Cache hits cost ``hit_latency_s`` and
no server.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import ConfigError
from .profile import PlanProfile, ServerProfile, TierTraffic
from .queueing import Chain, allen_cunneen_factor, birth_death

__all__ = ["TierResult", "PlanResult", "plan", "evaluate_tier", "max_users", "sensitivity", "SAMPLES"]

SAMPLES = 20_000  # per tier: the p95 of 20k draws moves < 1% between seeds
_MAX_SERVERS = 10_000
# A short request ends before the occupancy it found changes much; a long one sees the average.
# Half and half is a fit, checked against the SimPy simulation (p95 within 7% at 30-90% load,
# bench/plan_check.py), not a result of theory.
ARRIVAL_WEIGHT = 0.5
_CLOSED_LOOP_ITERATIONS = 8


@dataclass(frozen=True, slots=True)
class TierResult:
    """One tier at one load: how many servers, how busy, how fast.

    ``utilisation`` is the arrival rate over the rate the tier completes requests with every
    slot busy (streams at their slowest); 1.0 or more means the queue grows without bound.
    """

    tier: str
    servers: int
    arrival_rate: float
    utilisation: float
    mean_s: float
    p50_s: float
    p95_s: float
    wait_probability: float
    slo_p95_s: float
    meets_slo: bool


@dataclass(frozen=True, slots=True)
class PlanResult:
    """A whole plan. Latencies include the router's miss overhead; hits cost ``hit_latency_s``."""

    users: int | None
    arrival_rate: float
    tiers: Mapping[str, TierResult]
    mean_s: float
    p50_s: float
    p95_s: float
    cost_per_month: float
    questions_per_month: float
    api_cost_per_month: float
    api_cost_with_cache_per_month: float
    stable: bool = True
    extras: Mapping[str, Any] = field(default_factory=dict)

    @property
    def cost_per_user(self) -> float | None:
        return None if not self.users else self.cost_per_month / self.users

    @property
    def cost_per_1000_questions(self) -> float:
        return math.inf if self.questions_per_month <= 0 else 1000 * self.cost_per_month / self.questions_per_month

    def as_dict(self) -> dict[str, Any]:
        def num(x: float | None, nd: int = 3) -> float | None:
            return None if x is None or not math.isfinite(x) else round(x, nd)

        return {
            "users": self.users,
            "arrival_rate": num(self.arrival_rate, 4),
            "servers": {t: r.servers for t, r in self.tiers.items()},
            "p50_s": {**{t: num(r.p50_s) for t, r in self.tiers.items()}, "overall": num(self.p50_s)},
            "p95_s": {**{t: num(r.p95_s) for t, r in self.tiers.items()}, "overall": num(self.p95_s)},
            "mean_s": {**{t: num(r.mean_s) for t, r in self.tiers.items()}, "overall": num(self.mean_s)},
            "utilisation": {t: num(r.utilisation) for t, r in self.tiers.items()},
            "wait_probability": {t: num(r.wait_probability) for t, r in self.tiers.items()},
            "meets_slo": {t: r.meets_slo for t, r in self.tiers.items()},
            "stable": self.stable,
            "cost_per_month": num(self.cost_per_month, 2),
            "cost_per_user": num(self.cost_per_user, 4),
            "cost_per_1000_questions": num(self.cost_per_1000_questions, 4),
            "questions_per_month": num(self.questions_per_month, 0),
            "api_cost_per_month": num(self.api_cost_per_month, 2),
            "api_cost_with_cache_per_month": num(self.api_cost_with_cache_per_month, 2),
        }


def _fixed_s(server: ServerProfile, traffic: TierTraffic, overhead: float) -> float:
    return overhead + server.ttft_s + traffic.prompt_tokens.mean / server.prompt_tokens_per_s


def _mean_service(server: ServerProfile, traffic: TierTraffic, k: int, overhead: float = 0.0) -> float:
    return _fixed_s(server, traffic, overhead) + traffic.answer_tokens.mean * server.slowdown(k) / server.tokens_per_s


def _chain_rates(server: ServerProfile, traffic: TierTraffic, servers: int) -> list[float]:
    """Departure rate with n = 1..m*s requests spread evenly over ``servers``."""
    per = [0.0] + [k / _mean_service(server, traffic, k) for k in range(1, server.slots + 1)]
    rates = []
    for n in range(1, servers * server.slots + 1):
        q, r = divmod(n, servers)
        rates.append(r * per[q + 1] + (servers - r) * per[q] if q < server.slots else servers * per[server.slots])
    return rates


def _arrival_slowdown(chain: Chain, server: ServerProfile, servers: int) -> float:
    """Mean slowdown over the stay of a request that found a free slot: what it sees on arrival
    (PASTA) plus itself, on the least busy server. For a linear curve this is M/G/1-PS's
    ``E[T | x] = x (1 + E[N])``; a request's slowdown does not depend on its own size."""
    num = den = 0.0
    for n, p in enumerate(chain.p[:-1]):
        num += p * server.slowdown(n // servers + 1)
        den += p
    return num / den if den > 0 else 1.0


def _arrival_mix(rng: Any, chain: Chain, server: ServerProfile, servers: int, mean: float) -> Any:
    """Per request: ``ARRIVAL_WEIGHT`` of the slowdown it finds on arrival, the rest the mean."""
    import numpy as np

    head = np.array(chain.p[:-1])
    n = rng.choice(len(head), size=SAMPLES, p=head / head.sum())
    found = np.array([server.slowdown(k // servers + 1) for k in range(len(head))])[n]
    return ARRIVAL_WEIGHT * found + (1.0 - ARRIVAL_WEIGHT) * mean


def capacity(server: ServerProfile, traffic: TierTraffic, servers: int) -> float:
    """Requests per second a tier of ``servers`` completes with every slot busy."""
    return servers * server.slots / _mean_service(server, traffic, server.slots)


def _service_scv(server: ServerProfile, traffic: TierTraffic, slowdown: float) -> float:
    decode = traffic.answer_tokens.mean * slowdown / server.tokens_per_s
    prompt = traffic.prompt_tokens.mean / server.prompt_tokens_per_s
    mean = server.ttft_s + prompt + decode
    var = (decode * traffic.answer_tokens.cv) ** 2 + (prompt * traffic.prompt_tokens.cv) ** 2
    return var / (mean * mean) if mean > 0 else 0.0


def evaluate_tier(name: str, rate: float, server: ServerProfile, traffic: TierTraffic, servers: int,
                  slo: float, overhead: float = 0.0, seed: int = 0):
    """(TierResult, latency samples) for ``servers`` at ``rate`` requests/s; samples are a numpy
    array (all ``inf`` when the tier cannot keep up)."""
    import numpy as np

    cap = capacity(server, traffic, servers)
    util = rate / cap
    if rate <= 0:
        samples = _service_samples(np.random.default_rng(seed), server, traffic, overhead, 1.0, SAMPLES)
        return _result(name, servers, rate, 0.0, 0.0, samples, slo), samples
    if util >= 1.0:
        samples = np.full(SAMPLES, math.inf)
        return _result(name, servers, rate, util, 1.0, samples, slo), samples
    chain = birth_death(rate, _chain_rates(server, traffic, servers))
    rng = np.random.default_rng(seed)
    f = _arrival_slowdown(chain, server, servers)
    waits = _wait_samples(rng, chain, allen_cunneen_factor(1.0, _service_scv(server, traffic, f)), SAMPLES)
    slow = np.where(waits > 0, server.slowdown(server.slots), _arrival_mix(rng, chain, server, servers, f))
    samples = waits + _service_samples(rng, server, traffic, overhead, slow, SAMPLES)
    return _result(name, servers, rate, util, chain.wait_probability, samples, slo), samples


def _wait_samples(rng: Any, chain: Chain, scale: float, n: int) -> Any:
    import numpy as np

    waiting = rng.random(n) < chain.wait_probability
    extra = rng.geometric(1.0 - chain.ratio, n) - 1  # requests already queued ahead: P(j) ~ r^j
    gamma = rng.gamma(extra + 1.0, 1.0 / chain.tail_rate)
    return np.where(waiting, gamma * scale, 0.0)


def _service_samples(rng: Any, server: ServerProfile, traffic: TierTraffic, overhead: float,
                     slowdown: Any, n: int) -> Any:
    prompt = traffic.prompt_tokens.sample(rng, n) / server.prompt_tokens_per_s
    decode = traffic.answer_tokens.sample(rng, n) * slowdown / server.tokens_per_s
    return overhead + server.ttft_s + prompt + decode


def _result(name: str, servers: int, rate: float, util: float, pwait: float, samples: Any, slo: float) -> TierResult:
    import numpy as np

    finite = bool(np.isfinite(samples).all())
    p50, p95 = (float(np.quantile(samples, q)) for q in (0.5, 0.95)) if finite else (math.inf, math.inf)
    mean = float(samples.mean()) if finite else math.inf
    return TierResult(name, servers, rate, util, mean, p50, p95, pwait, slo, p95 <= slo)


def _size_tier(name: str, rate: float, server: ServerProfile, traffic: TierTraffic, slo: float,
               overhead: float):
    """The smallest server count whose p95 meets ``slo``; if none can (the unloaded answer is
    already slower), the smallest within 5% of the unloaded p95, flagged as missing the SLO."""
    if rate <= 0:
        return evaluate_tier(name, rate, server, traffic, 1, slo, overhead)
    per_server = capacity(server, traffic, 1)
    unloaded, _ = evaluate_tier(name, 0.0, server, traffic, 1, slo, overhead)
    goal = slo if unloaded.p95_s <= slo else unloaded.p95_s * 1.05
    def meets(m: int):
        result, samples = evaluate_tier(name, rate, server, traffic, m, slo, overhead)
        return (result, samples) if result.p95_s <= goal else None

    low = max(1, math.floor(rate / per_server) + 1)  # the smallest stable fleet
    found = meets(low)
    if found is not None:
        return found
    high = low
    while found is None:  # double until the SLO holds, then bisect down (p95 falls as m grows)
        low, high = high, high * 2
        if high > _MAX_SERVERS:
            raise ConfigError(f"tier {name}: no fleet of up to {_MAX_SERVERS} servers meets p95 {slo}s")
        found = meets(high)
    while high - low > 1:
        mid = (low + high) // 2
        candidate = meets(mid)
        if candidate is None:
            low = mid
        else:
            high, found = mid, candidate
    return found


def _weighted_quantiles(parts: list[tuple[float, Any]], qs: tuple[float, ...]) -> list[float]:
    import numpy as np

    values = np.concatenate([s for _, s in parts])
    weights = np.concatenate([np.full(len(s), w / len(s)) for w, s in parts])
    order = np.argsort(values)
    cum = np.cumsum(weights[order]) / weights.sum()
    return [float(values[order][min(len(values) - 1, int(np.searchsorted(cum, q)))]) for q in qs]


def _plan_at_rate(profile: PlanProfile, rate: float, fleet: Mapping[str, int]) -> PlanResult:
    import numpy as np

    traffic = profile.traffic
    tiers: dict[str, TierResult] = {}
    parts: list[tuple[float, Any]] = [(traffic.hit_rate, np.full(100, traffic.hit_latency_s))]
    for i, (name, tt) in enumerate(traffic.tiers.items()):
        server, slo = profile.servers[name], profile.slo.p95_s[name]
        args = (name, rate * tt.share, server, tt, slo, traffic.miss_overhead_s)
        if name in fleet:
            result, samples = evaluate_tier(*args[:4], fleet[name], *args[4:], seed=i)
        else:
            result, samples = _size_tier(*args)
        tiers[name] = result
        parts.append((tt.share, samples))
    stable = all(math.isfinite(r.p95_s) for r in tiers.values())
    p50, p95 = _weighted_quantiles([p for p in parts if p[0] > 0], (0.5, 0.95)) if stable else (math.inf,) * 2
    mean = sum(w * float(s.mean()) for w, s in parts) if stable else math.inf
    cost = sum(r.servers * profile.prices.server_per_month[t] for t, r in tiers.items())
    questions = rate * 3600.0 * profile.prices.hours_per_month
    api = questions * _api_cost_per_question(profile)
    return PlanResult(traffic.users, rate, tiers, mean, p50, p95, cost, questions, api,
                      api * (1.0 - traffic.hit_rate), stable)


def _api_cost_per_question(profile: PlanProfile) -> float:
    """A question's price at the reference API, over the tier mix of misses (hits are assumed to
    look like misses: their token counts are not in the profile)."""
    tiers = profile.traffic.tiers
    total = sum(t.share for t in tiers.values())
    if total <= 0:
        return 0.0
    tokens_in = sum(t.share * t.prompt_tokens.mean for t in tiers.values()) / total
    tokens_out = sum(t.share * t.answer_tokens.mean for t in tiers.values()) / total
    return (tokens_in * profile.prices.api_input_per_1m + tokens_out * profile.prices.api_output_per_1m) / 1e6


def plan(profile: PlanProfile, *, users: int | None = None, fleet: Mapping[str, int] | None = None) -> PlanResult:
    """Plan ``profile`` (optionally for ``users`` instead of its own traffic). Tiers in ``fleet``
    (default: the profile's) keep their server count; the others are sized to their SLO."""
    traffic = profile.traffic if users is None else profile.traffic.with_users(users)
    profile = replace(profile, traffic=traffic)
    fixed = dict(profile.fleet if fleet is None else fleet)
    if traffic.users is None:
        assert traffic.arrival_rate is not None
        return _plan_at_rate(profile, traffic.arrival_rate, fixed)
    assert traffic.think_time_s is not None
    rate = traffic.users / traffic.think_time_s
    result = _plan_at_rate(profile, rate, fixed)
    for _ in range(_CLOSED_LOOP_ITERATIONS):  # users / (think + mean response), to a fixed point
        if not result.stable:
            break
        new_rate = traffic.users / (traffic.think_time_s + result.mean_s)
        if abs(new_rate - rate) <= 1e-4 * rate:
            break
        rate = new_rate
        result = _plan_at_rate(profile, rate, fixed)
    return result


def max_users(profile: PlanProfile, *, target_p95_s: float | None = None, fleet: Mapping[str, int] | None = None,
              overall: bool = False, limit: int = 1_000_000) -> int:
    """The most concurrent users whose every tier meets ``target_p95_s`` (default: each tier's
    SLO) on ``fleet`` (default: the profile's); with ``overall``, whose p95 over all questions
    (hits included) meets ``target_p95_s`` instead. 0 if even one user misses it."""
    fixed = dict(profile.fleet if fleet is None else fleet)
    if set(fixed) != set(profile.traffic.tiers):
        raise ConfigError("max_users needs a server count for every tier (a fleet)")
    if profile.traffic.think_time_s is None:
        raise ConfigError("max_users needs traffic.think_time_s to turn users into questions")
    if overall and target_p95_s is None:
        raise ConfigError("max_users(overall=True) needs target_p95_s")

    def ok(users: int) -> bool:
        result = plan(profile, users=users, fleet=fixed)
        if overall:
            return result.stable and target_p95_s is not None and result.p95_s <= target_p95_s
        targets = {t: target_p95_s if target_p95_s is not None else r.slo_p95_s for t, r in result.tiers.items()}
        return result.stable and all(r.p95_s <= targets[t] for t, r in result.tiers.items())

    if not ok(1):
        return 0
    low, high = 1, 2
    while high <= limit and ok(high):
        low, high = high, high * 2
    high = min(high, limit + 1)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if ok(mid) else (low, mid)
    return low


def sensitivity(profile: PlanProfile, variants: Mapping[str, PlanProfile], *, target_p95_s: float | None = None,
                fleet: Mapping[str, int] | None = None, overall: bool = False) -> list[dict[str, Any]]:
    """``max_users`` for the profile and for each named variant, with the change against it."""
    base = max_users(profile, target_p95_s=target_p95_s, fleet=fleet, overall=overall)
    rows = [{"variant": "as given", "max_users": base, "change": 0.0}]
    for label, variant in variants.items():
        n = max_users(variant, target_p95_s=target_p95_s, fleet=fleet, overall=overall)
        rows.append({"variant": label, "max_users": n, "change": (n - base) / base if base else math.inf})
    return rows
