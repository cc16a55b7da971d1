"""Balancing strategies: pure choices of one instance among candidate states.

A strategy is any object with ``name`` and ``pick(states, rng) -> index``. It sees frozen
``InstanceState`` snapshots of the *candidates* only (the pool has already removed instances
that lack the model, are unhealthy, are cooling down or have no free slot), does no I/O and
returns an index into ``states``. The pool calls ``pick`` under its lock, so a strategy may
keep small private state (round-robin's counters) without locking of its own.

Built-ins, selectable by name (``resolve_strategy("least_outstanding")``)::

    round_robin                  smooth rotation (weights ignored)
    weighted_round_robin         smooth weighted rotation (nginx's algorithm)
    least_outstanding            fewest requests in flight (+ recent failures)
    weighted_least_outstanding   (in flight + 1) / weight
    power_of_two                 two random candidates, the less loaded wins
    weighted_power_of_two        the two are drawn in proportion to weight
    latency_aware                EWMA latency x (1 + in flight / limit); queue-aware (below)
    weighted_latency_aware       the same, divided by weight

A strategy may also be *queue-aware* (``QueueAwareStrategy``): its ``admit(states, ahead,
budget_s, rng)`` sees every usable instance, busy ones included, and may answer ``None`` —
"keep this request in the FIFO queue" — when a busy fast instance will most likely answer
clearly sooner than the best free slow one (shortest expected delay). ``latency_aware`` is
one; strategies with only ``pick`` never hold back a free slot.

Users plug their own by passing a ``Strategy`` object, or a ``"package.module:Class"`` path
in configuration. Ties are broken fairly: instances with the model already loaded first
(warm-aware), then at random — never "always the first instance", the reported LiteLLM bug.

This module is not the pool: it does not track in-flight counts, health or queues.
"""

from __future__ import annotations

import importlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol, runtime_checkable

from ..errors import ConfigError

__all__ = [
    "InstanceState",
    "Strategy",
    "QueueAwareStrategy",
    "expected_wait",
    "RoundRobin",
    "WeightedRoundRobin",
    "LeastOutstanding",
    "WeightedLeastOutstanding",
    "PowerOfTwo",
    "WeightedPowerOfTwo",
    "LatencyAware",
    "WeightedLatencyAware",
    "BUILTIN_STRATEGIES",
    "resolve_strategy",
]


@dataclass(frozen=True, slots=True)
class InstanceState:
    """A snapshot of one instance as the pool sees it when a request arrives.

    ``ewma_latency_s``/``ewma_ttft_s`` are ``None`` until the first successful call;
    ``recent_failures`` counts failures since the last success within the breaker's
    ``failure_window_s``; ``breaker`` is the circuit state and ``reopens_in_s`` the rest of
    its cooldown (strategies never see open instances; these are for ``stats()``).
    """

    name: str
    weight: float = 1.0
    in_flight: int = 0
    limit: int = 1
    ewma_latency_s: float | None = None
    ewma_ttft_s: float | None = None
    recent_failures: int = 0
    healthy: bool = True
    has_model: bool = True
    model_loaded: bool = False
    breaker: str = "closed"
    reopens_in_s: float = 0.0

    @property
    def free_slots(self) -> int:
        return max(0, self.limit - self.in_flight)


@runtime_checkable
class Strategy(Protocol):
    """Chooses one candidate. ``states`` is never empty; return an index into it."""

    name: str

    def pick(self, states: Sequence[InstanceState], rng: random.Random) -> int: ...


@runtime_checkable
class QueueAwareStrategy(Protocol):
    """A strategy that may decline every free slot and let the request wait in the queue.

    ``states`` are all usable instances, busy ones (``free_slots == 0``) included; ``ahead``
    counts the queued requests in front of this one; ``budget_s`` is the time left before
    its queue deadline (``<= 0``: it may not wait). Return the index of an instance with a
    free slot, or ``None`` to wait for the next freed slot.
    """

    name: str

    def pick(self, states: Sequence[InstanceState], rng: random.Random) -> int: ...

    def admit(self, states: Sequence[InstanceState], ahead: int, budget_s: float, rng: random.Random) -> int | None: ...


def _fair_argmin(states: Sequence[InstanceState], scores: Sequence[float], rng: random.Random) -> int:
    """The index of the lowest score; ties go to a warm instance, then to a random one."""
    best = min(scores)
    tol = 1e-9 * max(1.0, abs(best))
    tied = [i for i, s in enumerate(scores) if s - best <= tol]
    warm = [i for i in tied if states[i].model_loaded]
    pool = warm or tied
    return pool[0] if len(pool) == 1 else pool[rng.randrange(len(pool))]


def _load(state: InstanceState) -> float:
    # A recent failure counts as load: an instance that fails fast has nothing in flight
    # and would otherwise look like the idlest one and attract all traffic.
    return float(state.in_flight + state.recent_failures)


class _SmoothRotation:
    """nginx's smooth weighted round-robin over instance names (stable as candidates change)."""

    weighted = True

    def __init__(self) -> None:
        self._current: dict[str, float] = {}

    def pick(self, states: Sequence[InstanceState], rng: random.Random) -> int:
        weights = [s.weight if self.weighted else 1.0 for s in states]
        total = sum(weights)
        for s, w in zip(states, weights):
            self._current[s.name] = self._current.get(s.name, 0.0) + w
        scores = [-self._current[s.name] for s in states]
        chosen = _fair_argmin(states, scores, rng)
        self._current[states[chosen].name] -= total
        return chosen


class RoundRobin(_SmoothRotation):
    """Each candidate in turn, whatever its load or weight."""

    name = "round_robin"
    weighted = False


class WeightedRoundRobin(_SmoothRotation):
    """Each candidate in turn, ``weight`` times as often; spread out, not in bursts."""

    name = "weighted_round_robin"
    weighted = True


class LeastOutstanding:
    """The candidate with the fewest requests in flight (recent failures count as load)."""

    name = "least_outstanding"

    def pick(self, states: Sequence[InstanceState], rng: random.Random) -> int:
        return _fair_argmin(states, [_load(s) for s in states], rng)


class WeightedLeastOutstanding:
    """Fewest requests in flight per unit of weight: ``(in flight + 1) / weight``."""

    name = "weighted_least_outstanding"

    def pick(self, states: Sequence[InstanceState], rng: random.Random) -> int:
        return _fair_argmin(states, [(_load(s) + 1.0) / max(s.weight, 1e-9) for s in states], rng)


class PowerOfTwo:
    """Two distinct random candidates; the less loaded one wins (O(1), herd-free)."""

    name = "power_of_two"

    def _draw(self, states: Sequence[InstanceState], rng: random.Random) -> tuple[int, int]:
        a, b = rng.sample(range(len(states)), 2)
        return a, b

    def pick(self, states: Sequence[InstanceState], rng: random.Random) -> int:
        if len(states) == 1:
            return 0
        a, b = self._draw(states, rng)
        pair = [states[a], states[b]]
        return (a, b)[_fair_argmin(pair, [self._score(s) for s in pair], rng)]

    def _score(self, state: InstanceState) -> float:
        return _load(state)


class WeightedPowerOfTwo(PowerOfTwo):
    """Two distinct candidates drawn in proportion to weight; lower load per weight wins."""

    name = "weighted_power_of_two"

    def _draw(self, states: Sequence[InstanceState], rng: random.Random) -> tuple[int, int]:
        weights = [max(s.weight, 1e-9) for s in states]
        a = rng.choices(range(len(states)), weights=weights)[0]
        weights[a] = 0.0
        b = rng.choices(range(len(states)), weights=weights)[0]
        return a, b

    def _score(self, state: InstanceState) -> float:
        return (_load(state) + 1.0) / max(state.weight, 1e-9)


def _latency_scores(states: Sequence[InstanceState], weighted: bool) -> list[float]:
    known = [s.ewma_latency_s for s in states if s.ewma_latency_s is not None]
    # Unmeasured instances are assumed as fast as the fastest known one, so they get tried
    # (optimism explores); with nothing measured this reduces to least-outstanding.
    default = min(known) if known else 1.0
    scores = []
    for s in states:
        latency = s.ewma_latency_s if s.ewma_latency_s is not None else default
        # In flight counts in units of the instance's slot limit (its parallelism): a fast
        # instance running 3 of 8 is not a queue of 3; each extra full round costs one latency.
        queue = 1.0 + s.in_flight / max(s.limit, 1)
        score = max(latency, 1e-6) * queue * (1 + s.recent_failures)
        scores.append(score / max(s.weight, 1e-9) if weighted else score)
    return scores


def expected_wait(states: Sequence[InstanceState], faster_than: float, ahead: int) -> tuple[float, float] | None:
    """``(wait for a slot, then time to answer)`` on the busy instances faster than ``faster_than``.

    Each busy instance frees a slot every ``latency / limit`` seconds on average, so together
    they free ``R = sum(limit / latency)`` slots a second and the request with ``ahead``
    others in front gets one after ``(ahead + 1) / R``; it then takes the rate-weighted mean
    latency of those instances, ``sum(limit) / R``. ``None`` when no busy instance is faster
    (or none is measured: without a latency there is nothing to trade against).
    """
    rate = 0.0
    slots = 0
    for s in states:
        if s.free_slots or s.ewma_latency_s is None:
            continue
        latency = max(s.ewma_latency_s, 1e-6) * (1 + s.recent_failures)
        if latency < faster_than:
            rate += s.limit / latency
            slots += s.limit
    if not rate:
        return None
    return (ahead + 1) / rate, slots / rate


class LatencyAware:
    """Expected time to answer: EWMA latency x (1 + in flight / limit), x (1 + recent failures).

    ``EWMA x (in flight + 1)`` would treat an instance serving 3 of its 8 parallel slots as
    a queue of 3 and send work to a 4x slower idle instance; scaling by the limit does not.

    Queue-aware (shortest expected delay): a free slot is declined when waiting for a busy
    faster instance is expected to answer ``margin`` times sooner than the free slot's score
    — a 4x slower instance's slot costs 4 latencies, a fast instance's slot frees within a
    fraction of one. The slow instance still takes work once the queue in front is long
    enough (or the deadline near enough) that waiting is not clearly better, so capacity is
    not lost under load. ``margin=1`` is textbook SED (mean-optimal); on the 1x,1x,2x,4x bench
    fleet at 90% load it held a standing queue (p50 271 ms, 96% throughput), ``3`` did not.
    """

    name = "latency_aware"

    def __init__(self, margin: float = 3.0) -> None:
        # Wait only when waiting is expected ``margin`` times faster: estimates are noisy, and
        # every request held back lengthens the queue behind it (throughput, the p50).
        if not margin >= 1:
            raise ConfigError(f"latency_aware margin must be >= 1; got {margin!r}")
        self.margin = margin

    def pick(self, states: Sequence[InstanceState], rng: random.Random) -> int:
        return _fair_argmin(states, _latency_scores(states, weighted=False), rng)

    def admit(self, states: Sequence[InstanceState], ahead: int, budget_s: float, rng: random.Random) -> int | None:
        at = [i for i, s in enumerate(states) if s.free_slots]
        if not at:
            return None
        free = [states[i] for i in at]
        scores = _latency_scores(free, weighted=False)
        best = _fair_argmin(free, scores, rng)
        chosen = at[best]
        latency = free[best].ewma_latency_s
        if budget_s <= 0 or latency is None:
            return chosen  # no time left to wait, or an unmeasured instance worth trying
        waiting = expected_wait(states, latency * (1 + free[best].recent_failures), ahead)
        if waiting is None:
            return chosen
        wait_s, answer_s = waiting
        # scores[best] counts the slots it already runs: a slow instance's last slot costs more.
        return None if wait_s < budget_s and self.margin * (wait_s + answer_s) < scores[best] else chosen


class WeightedLatencyAware:
    """Latency-aware score divided by weight."""

    name = "weighted_latency_aware"

    def pick(self, states: Sequence[InstanceState], rng: random.Random) -> int:
        return _fair_argmin(states, _latency_scores(states, weighted=True), rng)


BUILTIN_STRATEGIES: MappingProxyType[str, Callable[[], Strategy]] = MappingProxyType(
    {
        cls.name: cls
        for cls in (
            RoundRobin,
            WeightedRoundRobin,
            LeastOutstanding,
            WeightedLeastOutstanding,
            PowerOfTwo,
            WeightedPowerOfTwo,
            LatencyAware,
            WeightedLatencyAware,
        )
    }
)


def resolve_strategy(spec: str | Strategy) -> Strategy:
    """A fresh strategy from a built-in name or ``"package.module:Attr"``, or ``spec`` itself.

    Each pool needs its own object (rotations keep per-pool counters), so names give new ones.
    """
    if not isinstance(spec, str):
        if not isinstance(spec, Strategy):
            raise ConfigError(f"strategy must be a name or have name and pick(states, rng); got {spec!r}")
        return spec
    if spec in BUILTIN_STRATEGIES:
        return BUILTIN_STRATEGIES[spec]()
    if ":" not in spec:
        known = ", ".join(sorted(BUILTIN_STRATEGIES))
        raise ConfigError(f"unknown strategy {spec!r}; use one of {known} or 'package.module:Class'")
    module_name, _, attr = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot import strategy {spec!r}: {exc}") from exc
    strategy = factory() if isinstance(factory, type) else factory
    if not isinstance(strategy, Strategy):
        raise ConfigError(f"{spec!r} is not a strategy (needs name and pick(states, rng))")
    return strategy
