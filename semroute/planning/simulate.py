"""A discrete-event simulation (SimPy) of the system ``model`` describes, to check its formulas.

Each tier is ``m`` servers with ``s`` slots behind one FIFO queue; a request goes to the server
with the fewest requests in slots. Inside a server the slots are processor sharing: every
request holding a slot first spends its fixed part (time to first token plus prompt
processing), then decodes its answer tokens at ``tokens_per_s / slowdown(k)``, with ``k`` the
requests in that server's slots right now, re-evaluated whenever a request arrives, changes
phase or leaves. This is what ``model`` approximates with averages; it is also what the fake
fleet in ``replay`` does in real (scaled) time. Cache hits take ``hit_latency_s`` and no slot.

Requests come from ``poisson_requests`` (the model's assumption) or from anything else, such as
the Azure trace's arrival times (``replay`` builds them). Needs SimPy (the ``plan`` extra),
imported when a simulation runs. It is not the planner: it gives no server counts or money.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from .profile import PlanProfile, ServerProfile

__all__ = ["SimRequest", "SimResult", "poisson_requests", "simulate", "summarise"]

_EPS = 1e-9


@dataclass(frozen=True, slots=True)
class SimRequest:
    """One question: when it arrives (s), which tier answers it (None: a cache hit), its tokens."""

    arrival_s: float
    tier: str | None
    prompt_tokens: float = 0.0
    answer_tokens: float = 0.0


@dataclass(frozen=True, slots=True)
class SimResult:
    """Latency quantiles per tier and overall, from requests that arrived after the warm-up."""

    p50_s: Mapping[str, float]
    p95_s: Mapping[str, float]
    count: Mapping[str, int]
    latencies: Mapping[str, tuple[float, ...]] = field(repr=False, default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"p50_s": {k: round(v, 4) for k, v in self.p50_s.items()},
                "p95_s": {k: round(v, 4) for k, v in self.p95_s.items()}, "count": dict(self.count)}


def poisson_requests(profile: PlanProfile, rate: float, duration_s: float, seed: int = 0) -> list[SimRequest]:
    """Poisson arrivals at ``rate``/s for ``duration_s``, tiers and tokens drawn from the profile."""
    import numpy as np

    if rate <= 0 or duration_s <= 0:
        raise ConfigError("poisson_requests needs rate > 0 and duration_s > 0")
    rng = np.random.default_rng(seed)
    n = int(rng.poisson(rate * duration_s))
    times = np.sort(rng.uniform(0.0, duration_s, n))
    traffic = profile.traffic
    names: list[str | None] = [None, *traffic.tiers]
    probs = np.array([traffic.hit_rate, *(t.share for t in traffic.tiers.values())])
    picks = rng.choice(len(names), size=n, p=probs / probs.sum())
    out = []
    for t, pick in zip(times, picks):
        tier = names[pick]
        if tier is None:
            out.append(SimRequest(float(t), None))
            continue
        tt = traffic.tiers[tier]
        out.append(SimRequest(float(t), tier, float(tt.prompt_tokens.sample(rng, 1)[0]),
                              float(tt.answer_tokens.sample(rng, 1)[0])))
    return out


class _Job:
    __slots__ = ("fixed", "tokens", "done", "arr")

    def __init__(self, fixed: float, tokens: float, done: Any) -> None:
        self.fixed, self.tokens, self.done = fixed, tokens, done


class _Server:
    """One Ollama server: processor-sharing slots whose per-stream speed follows the curve."""

    def __init__(self, env: Any, profile: ServerProfile, on_free: Any) -> None:
        self.env, self.profile, self.on_free = env, profile, on_free
        self.jobs: list[_Job] = []
        self.wake = env.event()
        env.process(self.run())

    def add(self, job: _Job) -> None:
        self.jobs.append(job)
        if not self.wake.triggered:
            self.wake.succeed()

    def _rate(self) -> float:
        return self.profile.tokens_per_s / self.profile.slowdown(len(self.jobs))

    def run(self) -> Any:
        env = self.env
        while True:
            if not self.jobs:
                yield self.wake
                self.wake = env.event()
                continue
            rate = self._rate()
            running = list(self.jobs)  # a request added while we wait must not get this interval
            dt = min(j.fixed if j.fixed > _EPS else j.tokens / rate for j in running)
            start = env.now
            yield env.timeout(max(dt, 0.0)) | self.wake
            if self.wake.triggered:
                self.wake = env.event()
            self._advance(running, env.now - start, rate)

    def _advance(self, running: list[_Job], elapsed: float, rate: float) -> None:
        finished = []
        for job in running:
            if job.fixed > _EPS:
                job.fixed -= elapsed
            else:
                job.tokens -= elapsed * rate
            if job.fixed <= _EPS and job.tokens <= _EPS * rate:
                finished.append(job)
        for job in finished:
            self.jobs.remove(job)
            job.done.succeed()
            self.on_free(self)


class _Tier:
    """m servers behind one FIFO queue; a request takes the least busy server with a free slot."""

    def __init__(self, env: Any, profile: ServerProfile, servers: int) -> None:
        self.profile = profile
        self.queue: deque[_Job] = deque()
        self.servers = [_Server(env, profile, self._freed) for _ in range(servers)]

    def submit(self, job: _Job) -> None:
        free = [s for s in self.servers if len(s.jobs) < self.profile.slots]
        if free:
            min(free, key=lambda s: len(s.jobs)).add(job)
        else:
            self.queue.append(job)

    def _freed(self, server: _Server) -> None:
        if self.queue and len(server.jobs) < self.profile.slots:
            server.add(self.queue.popleft())


def simulate(profile: PlanProfile, requests: Sequence[SimRequest], fleet: Mapping[str, int], *,
             warmup_s: float = 0.0) -> SimResult:
    """Run ``requests`` through ``fleet`` servers per tier; quantiles of those after ``warmup_s``."""
    import simpy

    if set(fleet) != set(profile.traffic.tiers):
        raise ConfigError("simulate needs a server count for every tier")
    env = simpy.Environment()
    tiers = {t: _Tier(env, profile.servers[t], n) for t, n in fleet.items()}
    latencies: dict[str, list[float]] = {t: [] for t in ["hit", *fleet]}
    traffic = profile.traffic

    def one(req: SimRequest) -> Any:
        yield env.timeout(req.arrival_s - env.now)
        if req.tier is None:
            yield env.timeout(traffic.hit_latency_s)
            if req.arrival_s >= warmup_s:
                latencies["hit"].append(env.now - req.arrival_s)
            return
        server = profile.servers[req.tier]
        fixed = server.ttft_s + req.prompt_tokens / server.prompt_tokens_per_s
        done = env.event()
        tiers[req.tier].submit(_Job(fixed, req.answer_tokens, done))
        yield done
        if req.arrival_s >= warmup_s:
            latencies[req.tier].append(env.now - req.arrival_s + traffic.miss_overhead_s)

    for req in sorted(requests, key=lambda r: r.arrival_s):
        env.process(one(req))
    env.run()
    return summarise(latencies)


def summarise(latencies: dict[str, list[float]]) -> SimResult:
    """Quantiles per key of ``latencies`` (seconds) and over all of them."""
    import numpy as np

    p50, p95 = {}, {}
    for tier, values in latencies.items():
        if values:
            p50[tier], p95[tier] = (float(np.quantile(values, q)) for q in (0.5, 0.95))
    everything = [v for values in latencies.values() for v in values]
    if everything:
        p50["overall"], p95["overall"] = (float(np.quantile(everything, q)) for q in (0.5, 0.95))
    else:
        p50["overall"] = p95["overall"] = math.nan
    return SimResult(p50, p95, {t: len(v) for t, v in latencies.items()},
                     {t: tuple(v) for t, v in latencies.items()})
