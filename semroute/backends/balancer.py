"""The pool's I/O-free core: which instance may take a request, and what its outcome teaches.

``Balancer`` holds each instance's live state (slots in flight, EWMA latency and
time-to-first-token, breaker, health, models) under one lock, admits requests (model-aware
candidates -> ``Strategy`` -> ``Limiter`` slot, else the FIFO ``WaitQueue``; a queue-aware
strategy may also keep a request queued rather than take a slow free slot), hands freed slots
to queued requests, and records successes, failures and health probes. It never calls a
backend and never sleeps or waits: ``Pool`` is the thin sync/async shell that does.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from ..errors import (
    BackendError,
    BackendProtocolError,
    BackendUnavailable,
    ConfigError,
    NoInstanceAvailable,
    Overloaded,
)
from ..metrics import Metrics
from ..redact import redact_text
from .base import Backend
from ..settings import PoolSettings
from .health import CircuitBreaker, Probe
from .limiter import Limiter, Waiter, WaitQueue
from .strategy import InstanceState, QueueAwareStrategy, Strategy

log = logging.getLogger("semroute.pool")

__all__ = ["Instance", "Ask", "Balancer", "model_key"]


@dataclass(frozen=True, slots=True)
class Instance:
    """One backend with its balancing settings. ``models=None`` asks the instance (``/api/tags``)."""

    backend: Backend
    weight: float = 1.0
    # Requests the pool keeps in flight on it: Ollama's OLLAMA_NUM_PARALLEL, or one more so the
    # instance never idles while an answer travels back and the next request travels out.
    limit: int = 4
    models: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.weight <= 0 or self.limit < 1:
            raise ConfigError(f"instance {self.backend.name!r}: need weight > 0 and limit >= 1")


class _Member:
    """The pool's live, mutable view of one instance (guarded by the pool's lock)."""

    def __init__(self, spec: Instance, breaker: CircuitBreaker) -> None:
        self.spec = spec
        self.name = redact_text(spec.backend.name)  # shown in logs, errors and stats; keys the limiter
        self.breaker = breaker
        self.healthy = True
        self.models: frozenset[str] | None = None if spec.models is None else frozenset(map(model_key, spec.models))
        self.models_at = float("-inf")
        self.loaded: frozenset[str] = frozenset()
        self.in_flight = 0
        self.ewma_latency: float | None = None
        self.ewma_ttft: float | None = None

    def stale(self, now: float, ttl: float) -> bool:
        # Unknown or unhealthy instances are re-asked as soon as their breaker lets them be tried
        # (an unhealthy one with configured models too: nothing else would bring it back).
        learn = self.spec.models is None and (self.models is None or now - self.models_at >= ttl)
        return (learn or not self.healthy) and self.breaker.available()


def _ewma(old: float | None, new: float, alpha: float) -> float:
    return new if old is None else alpha * new + (1 - alpha) * old


def _retryable(exc: BackendError) -> bool:
    # A 4xx other than "not found / timeout / too many" would fail the same way everywhere.
    status = exc.status if isinstance(exc, BackendProtocolError) else None
    return status is None or status >= 500 or status in (404, 408, 429)


@dataclass(slots=True)
class Ask:
    """One request's admission needs: the model and the instances it already tried."""

    model: str
    tried: set[int] = field(default_factory=set)
    attempts: list[tuple[str, str]] = field(default_factory=list)
    key: str = ""
    # When the current attempt was sent (the breaker's clock): tells a probe from a request
    # that was already in flight when its instance's breaker opened.
    dispatched_at: float | None = None

    def __post_init__(self) -> None:
        self.key = model_key(self.model)


def model_key(name: str) -> str:
    """Ollama's naming: a model without a tag is ``:latest`` (``llama3`` == ``llama3:latest``)."""
    name = name.strip()
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


class Balancer:
    """Admission and bookkeeping for one pool. Every method is quick and takes the lock itself."""

    def __init__(
        self,
        specs: Sequence[Instance],
        *,
        strategy: Strategy,
        settings: PoolSettings,
        limiter: Limiter,
        clock: Callable[[], float],
        rng: random.Random,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self._metrics = metrics if metrics is not None else Metrics()
        self.strategy = strategy
        # A queue-aware strategy sees busy instances too and may keep a request queued.
        self._admit = strategy.admit if isinstance(strategy, QueueAwareStrategy) else None
        self._limiter = limiter
        self._clock = clock
        self._rng = rng
        self._members = [_Member(s, CircuitBreaker(settings.breaker, clock=clock)) for s in specs]
        self._queue: WaitQueue[Ask] = WaitQueue(settings.queue, clock=clock, on_head=self._head_changed)
        self._lock = threading.Lock()

    def _head_changed(self, enqueued_at: float | None) -> None:
        """Tell the limiter when this pool's oldest waiter began waiting, in wall time."""
        since = None if enqueued_at is None else time.time() - (self._clock() - enqueued_at)
        self._limiter.queued(since)

    def backend(self, i: int) -> Backend:
        return self._members[i].spec.backend

    @property
    def backends(self) -> list[Backend]:
        return [m.spec.backend for m in self._members]

    def states(self, model: str | None) -> tuple[InstanceState, ...]:
        with self._lock:
            return tuple(self._state(i, model) for i in range(len(self._members)))

    @property
    def queue_length(self) -> int:
        return len(self._queue)

    def enter(self, ask: Ask, *, in_loop: bool) -> int | Waiter[Ask]:
        """A granted instance index, or a queued ``Waiter`` (raises ``Overloaded`` if the queue is full)."""
        with self._lock:
            if not len(self._queue):  # FIFO: nobody may overtake a queued request
                # A zero-length queue leaves no room to wait: then take any free slot.
                room = self._queue.settings.max_length > 0
                idx = self._admit_locked(ask, budget_s=self._queue.settings.timeout_s if room else 0.0)
                if idx is not None:
                    return idx
            try:
                waiter = self._queue.enter(ask, in_loop=in_loop)
            except Overloaded:
                self._metrics.incr("pool.overloaded")
                raise
            self._metrics.incr("pool.queued")
            self._dispatch_locked()
            return waiter

    def remaining(self, waiter: Waiter[Ask]) -> float:
        return self._queue.remaining(waiter)

    def _state(self, i: int, model: str | None) -> InstanceState:
        m = self._members[i]
        key = None if model is None else model_key(model)
        return InstanceState(
            name=m.name,
            weight=m.spec.weight,
            in_flight=max(m.in_flight, self._limiter.in_flight(m.name)),
            limit=m.spec.limit,
            ewma_latency_s=m.ewma_latency,
            ewma_ttft_s=m.ewma_ttft,
            recent_failures=m.breaker.failures,
            healthy=m.healthy,
            has_model=m.models is not None and (key is None or key in m.models),
            model_loaded=key is not None and key in m.loaded,
            breaker=m.breaker.state,
            reopens_in_s=m.breaker.reopens_in(),
        )

    def _usable_candidates(self, ask: Ask) -> list[int]:
        """Instances that may take this request now or when a slot frees. Raises when none ever could."""
        members = self._members
        with_model = [i for i, m in enumerate(members) if m.models is not None and ask.key in m.models]
        if not with_model:
            asked = ", ".join(f"{m.name} ({'unreachable' if m.models is None else 'no such model'})" for m in members)
            raise NoInstanceAvailable(f"no instance has model {ask.model!r}; asked {asked}", attempts=tuple(ask.attempts))
        usable = [i for i in with_model if members[i].healthy and members[i].breaker.available()]
        if not usable:
            names = ", ".join(members[i].name for i in with_model)
            raise NoInstanceAvailable(
                f"every instance with model {ask.model!r} is unhealthy or cooling down: {names}", attempts=tuple(ask.attempts)
            )
        return [i for i in usable if i not in ask.tried] or usable  # fail over to new instances first

    def _admit_locked(self, ask: Ask, *, ahead: int = 0, budget_s: float = 0.0) -> int | None:
        """Grant a slot (an instance index) or ``None``: every slot is taken, or the strategy would wait."""
        usable = self._usable_candidates(ask)
        members = self._members
        free = [i for i in usable if self._limiter.in_flight(members[i].name) < members[i].spec.limit]
        # A half-open instance gets its probe before the strategy is asked: its recent failures
        # make every score rank it last, and without the probe it would never close again.
        for i in [i for i in free if members[i].breaker.state == "half_open"]:
            if self._take_locked(i, ask):
                return i
        if self._admit is not None:
            return self._admit_queue_aware(ask, usable, ahead, budget_s)
        while free:
            j = self.strategy.pick([self._state(i, ask.model) for i in free], self._rng)
            if not isinstance(j, int) or not 0 <= j < len(free):
                raise ConfigError(f"strategy {self.strategy.name!r} returned {j!r} for {len(free)} candidates")
            i = free.pop(j)
            if self._take_locked(i, ask):
                return i
        return None

    def _take_locked(self, i: int, ask: Ask) -> bool:
        """Take a slot on instance ``i`` for ``ask`` if the limiter still has one."""
        m = self._members[i]
        if not self._limiter.try_acquire(m.name, m.spec.limit):
            return False
        m.in_flight += 1
        ask.dispatched_at = m.breaker.on_dispatch()
        return True

    def _admit_queue_aware(self, ask: Ask, usable: list[int], ahead: int, budget_s: float) -> int | None:
        states = [self._state(i, ask.model) for i in usable]
        for _ in range(len(usable)):
            j = self._admit(states, ahead, budget_s, self._rng)  # type: ignore[misc]
            if j is None:
                return None
            if not isinstance(j, int) or not 0 <= j < len(usable) or not states[j].free_slots:
                raise ConfigError(f"strategy {self.strategy.name!r} returned {j!r}, not a free one of {len(usable)}")
            m = self._members[usable[j]]
            if self._take_locked(usable[j], ask):
                return usable[j]
            states[j] = replace(states[j], in_flight=m.spec.limit)  # a shared limiter filled it meanwhile
        return None

    def _has_free_slot_locked(self) -> bool:
        # Only slots a request may take now: an open or unhealthy instance's idle slots are no
        # reason to walk the queue (with 100 waiters polling, that walk ate the CPU of the whole
        # pool during an incident: bench/reliability.py, refuse, 120 clients).
        return any(
            m.healthy and m.breaker.available() and self._limiter.in_flight(m.name) < m.spec.limit
            for m in self._members
        )

    def _dispatch_locked(self) -> None:
        """Hand freed slots to queued requests, oldest first."""
        # Cheap exit first: this runs on every release and every waiter's poll.
        if not len(self._queue) or not self._has_free_slot_locked():
            return
        left = 0  # waiters in front that left the queue are no longer ahead
        for ahead, waiter in enumerate(self._queue):  # a copy: granted waiters leave while we walk
            try:
                idx = self._admit_locked(waiter.request, ahead=ahead - left, budget_s=self._queue.remaining(waiter))
            except NoInstanceAvailable as exc:
                left += 1
                self._queue.leave(waiter)
                waiter.fail(exc)
                continue
            if idx is not None:
                left += 1
                self._queue.leave(waiter)
                waiter.grant(idx)
                if not self._has_free_slot_locked():
                    return

    def after_wait(self, waiter: Waiter[Ask]) -> int | None:
        with self._lock:
            if not waiter.done:
                self._dispatch_locked()  # slots freed elsewhere, cooldowns ended
            if waiter.error is not None:
                raise waiter.error
            if waiter.value is not None:
                return waiter.value
            if self._queue.remaining(waiter) <= 0:
                self._metrics.incr("pool.overloaded")
                raise self._queue.expire(waiter)
            return None

    def abandon_wait(self, waiter: Waiter[Ask]) -> None:
        """The waiting caller gave up (cancelled, deadline, error): give back a slot it was granted."""
        with self._lock:
            self._queue.leave(waiter)
            granted, waiter.value = waiter.value, None
        if granted is not None:
            self.abandoned(granted, waiter.request)

    def _release_locked(self, idx: int) -> None:
        m = self._members[idx]
        m.in_flight -= 1
        self._limiter.release(m.name)
        self._dispatch_locked()

    def release(self, idx: int) -> None:
        with self._lock:
            self._release_locked(idx)

    def abandoned(self, idx: int, ask: Ask | None = None) -> None:
        with self._lock:
            self._members[idx].breaker.record_release(dispatched_at=None if ask is None else ask.dispatched_at)
            self._release_locked(idx)

    def succeeded(self, idx: int, model: str, latency_s: float, ttft_s: float | None) -> None:
        alpha = self.settings.ewma_alpha
        with self._lock:
            m = self._members[idx]
            m.breaker.record_success()
            m.ewma_latency = _ewma(m.ewma_latency, latency_s, alpha)
            if ttft_s is not None:
                m.ewma_ttft = _ewma(m.ewma_ttft, ttft_s, alpha)
            m.loaded = m.loaded | {model_key(model)}  # Ollama keeps a model loaded after serving it
            self._release_locked(idx)

    def failed(self, idx: int, ask: Ask, exc: BackendError, attempt: int, *, retry: bool = True) -> float:
        """Record a failure and release the slot; return the delay before the next attempt or raise."""
        instance_fault = _retryable(exc)
        retryable = retry and instance_fault
        with self._lock:
            m = self._members[idx]
            if isinstance(exc, BackendProtocolError) and exc.status == 404 and m.models is not None:
                m.models = m.models - {ask.key}  # the model was removed; not the instance's fault
                m.breaker.record_release(dispatched_at=ask.dispatched_at)
            elif instance_fault:  # fast 503s and refused connections count: a failing instance must not look idle
                retry_after = exc.retry_after if isinstance(exc, BackendUnavailable) else None
                m.breaker.record_failure(retry_after=retry_after, dispatched_at=ask.dispatched_at)
            else:
                m.breaker.record_release(dispatched_at=ask.dispatched_at)
            ask.tried.add(idx)
            ask.attempts.append((m.name, f"{type(exc).__name__}: {exc}"))
            self._release_locked(idx)
            last = attempt + 1 >= self.settings.retry.attempts
            delay = self._backoff_locked(ask, attempt) if retryable and not last else 0.0
        self._metrics.incr("pool.instance_failures")
        log.warning("instance %s failed for model %s (%s: %s)%s", m.name, ask.model, type(exc).__name__, exc,
                    "; failing over" if retryable else "")
        if not retryable:
            raise exc
        self._metrics.incr("pool.failovers")
        return delay

    def _backoff_locked(self, ask: Ask, attempt: int) -> float:
        untried = [
            i
            for i, m in enumerate(self._members)
            if i not in ask.tried and m.healthy and m.breaker.available() and m.models and ask.key in m.models
        ]
        if untried:
            return 0.0  # fail over at once; the failed instance is the one that needs rest
        r = self.settings.retry
        delay = r.backoff_s * 2**attempt * self._rng.uniform(0.5, 1.0)
        reopen = min((m.breaker.reopens_in() for m in self._members if m.models and ask.key in m.models), default=0.0)
        return min(r.max_backoff_s, max(delay, reopen))

    def exhausted(self, ask: Ask) -> NoInstanceAvailable:
        self._metrics.incr("pool.exhausted")
        tried = "; ".join(f"{name}: {err}" for name, err in ask.attempts)
        return NoInstanceAvailable(
            f"model {ask.model!r}: all {len(ask.attempts)} attempts failed ({tried})", attempts=tuple(ask.attempts)
        )

    def apply_probe(self, i: int, result: Probe) -> None:
        with self._lock:
            m = self._members[i]
            recovered = result.healthy and not m.healthy
            went_down = m.healthy and not result.healthy
            m.healthy = result.healthy
            m.models_at = self._clock()
            if result.healthy and m.spec.models is None:
                m.models = frozenset(map(model_key, result.models or ()))
            if result.loaded is not None:
                m.loaded = frozenset(map(model_key, result.loaded))
            if not result.healthy:
                m.breaker.trip()  # unreachable: no request (and no re-probe) until the cooldown ends
            elif recovered or m.breaker.state == "open":
                m.breaker.half_open_now()  # it answers: let the next request probe it at once
            self._dispatch_locked()
        if not result.healthy:
            self._metrics.incr("pool.probe_failures")
        if went_down:
            log.warning("instance %s is unhealthy; no requests go to it until it answers again", m.name)
        elif recovered:
            log.info("instance %s answers again", m.name)

    def stale(self) -> list[int]:
        with self._lock:
            now = self._clock()
            return [i for i, m in enumerate(self._members) if m.stale(now, self.settings.models_ttl_s)]
