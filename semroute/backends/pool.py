"""A pool: the Ollama instances of one tier, balanced, limited, health-checked, failed over.

A request for ``model`` goes to one instance that has the model (``/api/tags``), is healthy,
is not cooling down after failures, and has a free slot; the ``Strategy`` chooses among those.
When every such instance is full the request waits in a bounded FIFO queue (``Overloaded``
after its deadline). A failure before the first byte fails over to another instance within a
retry budget, with backoff (``Retry-After`` holds the failed instance back at least that long);
after the first streamed chunk the error surfaces instead (a retry would repeat text).
Latency and time-to-first-token EWMAs are learnt from real calls.

Connect, first-token and total timeouts are the backend's own settings (it raises
``BackendTimeout``). The pool does not cache, classify or choose tiers (that is the router).
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field

from ..errors import BackendError, BackendProtocolError, ConfigError, InvalidRequest, NoInstanceAvailable
from ..types import Chunk, Completion, Message
from .base import Backend
from .health import AsyncHealthTask, BreakerSettings, CircuitBreaker, HealthThread, Probe, probe
from .limiter import Limiter, LocalLimiter, QueueSettings, WaitQueue
from .strategy import InstanceState, Strategy, resolve_strategy

__all__ = ["Instance", "RetrySettings", "PoolSettings", "Pool"]

_POLL_S = 0.05  # queued requests re-check this often (cooldowns ending, slots freed elsewhere)


@dataclass(frozen=True, slots=True)
class Instance:
    """One backend with its balancing settings. ``models=None`` asks the instance (``/api/tags``)."""

    backend: Backend
    weight: float = 1.0
    limit: int = 4  # Ollama's OLLAMA_NUM_PARALLEL
    models: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.weight <= 0 or self.limit < 1:
            raise ConfigError(f"instance {self.backend.name!r}: need weight > 0 and limit >= 1")


@dataclass(frozen=True, slots=True)
class RetrySettings:
    """At most ``attempts`` tries per request; waits grow from ``backoff_s`` up to ``max_backoff_s``."""

    attempts: int = 3
    backoff_s: float = 0.05
    max_backoff_s: float = 2.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.backoff_s < 0 or self.max_backoff_s < self.backoff_s:
            raise ConfigError("need attempts >= 1 and 0 <= backoff_s <= max_backoff_s")


@dataclass(frozen=True, slots=True)
class PoolSettings:
    """How a pool retries, queues, cools down instances, checks health and learns latency."""

    retry: RetrySettings = field(default_factory=RetrySettings)
    queue: QueueSettings = field(default_factory=QueueSettings)
    breaker: BreakerSettings = field(default_factory=BreakerSettings)
    health_interval_s: float = 10.0
    models_ttl_s: float = 60.0
    ewma_alpha: float = 0.3

    def __post_init__(self) -> None:
        if not 0 < self.ewma_alpha <= 1 or self.models_ttl_s <= 0 or self.health_interval_s <= 0:
            raise ConfigError("need 0 < ewma_alpha <= 1, models_ttl_s > 0 and health_interval_s > 0")


class _Member:
    """The pool's live, mutable view of one instance (guarded by the pool's lock)."""

    def __init__(self, spec: Instance, breaker: CircuitBreaker) -> None:
        self.spec = spec
        self.name = spec.backend.name
        self.breaker = breaker
        self.healthy = True
        self.models: frozenset[str] | None = None if spec.models is None else frozenset(spec.models)
        self.models_at = float("-inf")
        self.loaded: frozenset[str] = frozenset()
        self.in_flight = 0
        self.ewma_latency: float | None = None
        self.ewma_ttft: float | None = None

    def stale(self, now: float, ttl: float) -> bool:
        # Unknown or unhealthy instances are re-asked as soon as their breaker lets them be tried.
        due = self.models is None or not self.healthy or now - self.models_at >= ttl
        return self.spec.models is None and due and self.breaker.available()


def _ewma(old: float | None, new: float, alpha: float) -> float:
    return new if old is None else alpha * new + (1 - alpha) * old


def _retryable(exc: BackendError) -> bool:
    # A 4xx other than "not found / timeout / too many" would fail the same way everywhere.
    status = exc.status if isinstance(exc, BackendProtocolError) else None
    return status is None or status >= 500 or status in (404, 408, 429)


@dataclass(slots=True)
class _Ask:
    """One request's admission needs: the model and the instances it already tried."""

    model: str
    tried: set[int]
    attempts: list[tuple[str, str]]


class Pool:
    """The instances of one tier. Thread-safe; usable from threads and event loops at once."""

    def __init__(
        self,
        backends: Sequence[Backend | Instance],
        *,
        strategy: str | Strategy = "least_outstanding",
        settings: PoolSettings = PoolSettings(),
        limiter: Limiter | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        specs = [b if isinstance(b, Instance) else Instance(b) for b in backends]
        if not specs:
            raise ConfigError("a pool needs at least one backend")
        names = [s.backend.name for s in specs]
        if len(set(names)) != len(names):
            raise ConfigError(f"backend names must be unique in a pool; got {names}")
        self.settings = settings
        self.strategy = resolve_strategy(strategy)
        self._limiter = limiter if limiter is not None else LocalLimiter()
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._members = [_Member(s, CircuitBreaker(settings.breaker, clock=clock)) for s in specs]
        self._queue: WaitQueue[_Ask] = WaitQueue(settings.queue, clock=clock)
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._health: HealthThread | None = None
        self._ahealth: AsyncHealthTask | None = None

    # ----------------------------------------------------------------- public surface

    def chat(self, model: str, messages: Sequence[Message]) -> Completion:
        _check(model, messages)
        ask = _Ask(model, set(), [])
        for attempt in range(self.settings.retry.attempts):
            self._refresh_models()
            idx = self._acquire(ask)
            started = self._clock()
            try:
                completion = self._members[idx].spec.backend.chat(model, messages)
            except BackendError as exc:
                delay = self._failed(idx, ask, exc, attempt)
                time.sleep(delay)
                continue
            except BaseException:
                self._abandoned(idx)
                raise
            self._succeeded(idx, model, self._clock() - started, None)
            return completion
        raise self._exhausted(ask)

    def stream(self, model: str, messages: Sequence[Message]) -> Iterator[Chunk]:
        """Chunks of one answer. Close the iterator if you stop early (it holds a slot)."""
        _check(model, messages)
        return self._stream(model, messages)

    def _stream(self, model: str, messages: Sequence[Message]) -> Iterator[Chunk]:
        ask = _Ask(model, set(), [])
        for attempt in range(self.settings.retry.attempts):
            self._refresh_models()
            idx = self._acquire(ask)
            started = self._clock()
            ttft: float | None = None
            try:
                chunks = self._members[idx].spec.backend.stream(model, messages)
                try:
                    for chunk in chunks:
                        if ttft is None:
                            ttft = self._clock() - started
                        yield chunk
                finally:
                    getattr(chunks, "close", lambda: None)()  # before the slot is given back
            except BackendError as exc:
                if ttft is not None:  # text already reached the caller: surface, never repeat
                    self._failed(idx, ask, exc, attempt, retry=False)
                    raise
                time.sleep(self._failed(idx, ask, exc, attempt))
                continue
            except BaseException:  # the caller stopped reading (GeneratorExit) or was interrupted
                self._abandoned(idx)
                raise
            self._succeeded(idx, model, self._clock() - started, ttft)
            return
        raise self._exhausted(ask)

    async def achat(self, model: str, messages: Sequence[Message]) -> Completion:
        _check(model, messages)
        ask = _Ask(model, set(), [])
        for attempt in range(self.settings.retry.attempts):
            await self._arefresh_models()
            idx = await self._aacquire(ask)
            started = self._clock()
            try:
                completion = await self._members[idx].spec.backend.achat(model, messages)
            except BackendError as exc:
                await asyncio.sleep(self._failed(idx, ask, exc, attempt))
                continue
            except BaseException:
                self._abandoned(idx)
                raise
            self._succeeded(idx, model, self._clock() - started, None)
            return completion
        raise self._exhausted(ask)

    def astream(self, model: str, messages: Sequence[Message]) -> AsyncIterator[Chunk]:
        """Chunks of one answer. ``aclose()`` the iterator if you stop early (it holds a slot)."""
        _check(model, messages)
        return self._astream(model, messages)

    async def _astream(self, model: str, messages: Sequence[Message]) -> AsyncIterator[Chunk]:
        ask = _Ask(model, set(), [])
        for attempt in range(self.settings.retry.attempts):
            await self._arefresh_models()
            idx = await self._aacquire(ask)
            started = self._clock()
            ttft: float | None = None
            try:
                chunks = self._members[idx].spec.backend.astream(model, messages)
                try:
                    async for chunk in chunks:
                        if ttft is None:
                            ttft = self._clock() - started
                        yield chunk
                finally:
                    aclose = getattr(chunks, "aclose", None)
                    if aclose is not None:
                        await aclose()
            except BackendError as exc:
                if ttft is not None:
                    self._failed(idx, ask, exc, attempt, retry=False)
                    raise
                await asyncio.sleep(self._failed(idx, ask, exc, attempt))
                continue
            except BaseException:
                self._abandoned(idx)
                raise
            self._succeeded(idx, model, self._clock() - started, ttft)
            return
        raise self._exhausted(ask)

    def states(self, model: str | None = None) -> tuple[InstanceState, ...]:
        """A snapshot of every instance; ``has_model``/``model_loaded`` refer to ``model``."""
        with self._lock:
            return tuple(self._state(i, model) for i in range(len(self._members)))

    @property
    def queue_length(self) -> int:
        return len(self._queue)

    def check_health(self) -> None:
        """One round of health checks (``/api/tags`` and ``/api/ps`` for every instance)."""
        for i, m in enumerate(self._members):
            self._apply_probe(i, probe(m.spec.backend))

    async def acheck_health(self) -> None:
        probes = await asyncio.gather(*(asyncio.to_thread(probe, m.spec.backend) for m in self._members))
        for i, p in enumerate(probes):
            self._apply_probe(i, p)

    def start_health_checks(self) -> None:
        """Check every ``health_interval_s`` in a background thread until ``stop_health_checks``."""
        if self._health is None or not self._health.running:
            self._health = HealthThread(self.check_health, interval_s=self.settings.health_interval_s).start()

    def stop_health_checks(self) -> None:
        health, self._health = self._health, None
        if health is not None:
            health.stop()

    async def astart_health_checks(self) -> None:
        """Check every ``health_interval_s`` in an asyncio task of the running loop."""
        if self._ahealth is None or not self._ahealth.running:
            self._ahealth = AsyncHealthTask(self.acheck_health, interval_s=self.settings.health_interval_s).start()

    async def astop_health_checks(self) -> None:
        ahealth, self._ahealth = self._ahealth, None
        if ahealth is not None:
            await ahealth.stop()

    def close(self) -> None:
        self.stop_health_checks()
        for m in self._members:
            m.spec.backend.close()

    async def aclose(self) -> None:
        await self.astop_health_checks()
        self.close()

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> Pool:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # ----------------------------------------------------------------- admission

    def _state(self, i: int, model: str | None) -> InstanceState:
        m = self._members[i]
        return InstanceState(
            name=m.name,
            weight=m.spec.weight,
            in_flight=max(m.in_flight, self._limiter.in_flight(m.name)),
            limit=m.spec.limit,
            ewma_latency_s=m.ewma_latency,
            ewma_ttft_s=m.ewma_ttft,
            recent_failures=m.breaker.failures,
            healthy=m.healthy,
            has_model=m.models is not None and (model is None or model in m.models),
            model_loaded=model is not None and model in m.loaded,
        )

    def _free_candidates(self, ask: _Ask) -> list[int]:
        """Instances that may take this request now. Raises when none ever could."""
        members = self._members
        with_model = [i for i, m in enumerate(members) if m.models is not None and ask.model in m.models]
        if not with_model:
            asked = ", ".join(f"{m.name} ({'unreachable' if m.models is None else 'no such model'})" for m in members)
            raise NoInstanceAvailable(f"no instance has model {ask.model!r}; asked {asked}", attempts=tuple(ask.attempts))
        usable = [i for i in with_model if members[i].healthy and members[i].breaker.available()]
        if not usable:
            names = ", ".join(members[i].name for i in with_model)
            raise NoInstanceAvailable(
                f"every instance with model {ask.model!r} is unhealthy or cooling down: {names}", attempts=tuple(ask.attempts)
            )
        fresh = [i for i in usable if i not in ask.tried] or usable  # fail over to new instances first
        return [i for i in fresh if self._limiter.in_flight(members[i].name) < members[i].spec.limit]

    def _admit_locked(self, ask: _Ask) -> int | None:
        free = self._free_candidates(ask)
        while free:
            j = self.strategy.pick([self._state(i, ask.model) for i in free], self._rng)
            if not isinstance(j, int) or not 0 <= j < len(free):
                raise ConfigError(f"strategy {self.strategy.name!r} returned {j!r} for {len(free)} candidates")
            i = free.pop(j)
            m = self._members[i]
            if self._limiter.try_acquire(m.name, m.spec.limit):
                m.in_flight += 1
                m.breaker.on_dispatch()
                return i
        return None

    def _dispatch_locked(self) -> None:
        """Hand freed slots to queued requests, oldest first."""
        for waiter in self._queue:
            if not any(self._limiter.in_flight(m.name) < m.spec.limit for m in self._members):
                return
            try:
                idx = self._admit_locked(waiter.request)
            except NoInstanceAvailable as exc:
                self._queue.leave(waiter)
                waiter.fail(exc)
                continue
            if idx is not None:
                self._queue.leave(waiter)
                waiter.grant(idx)

    def _acquire(self, ask: _Ask) -> int:
        with self._lock:
            if not len(self._queue):  # FIFO: nobody may overtake a queued request
                idx = self._admit_locked(ask)
                if idx is not None:
                    return idx
            waiter = self._queue.enter(ask)
            self._dispatch_locked()
        try:
            while True:
                waiter.wait(min(self._queue.remaining(waiter), _POLL_S))
                if (idx := self._after_wait(waiter)) is not None:
                    return idx
        except BaseException:
            self._abandon_wait(waiter)
            raise

    async def _aacquire(self, ask: _Ask) -> int:
        with self._lock:
            if not len(self._queue):
                idx = self._admit_locked(ask)
                if idx is not None:
                    return idx
            waiter = self._queue.enter(ask, in_loop=True)
            self._dispatch_locked()
        try:
            while True:
                await waiter.await_grant(min(self._queue.remaining(waiter), _POLL_S))
                if (idx := self._after_wait(waiter)) is not None:
                    return idx
        except BaseException:
            self._abandon_wait(waiter)
            raise

    def _after_wait(self, waiter) -> int | None:  # noqa: ANN001 - Waiter[_Ask]
        with self._lock:
            if not waiter.done:
                self._dispatch_locked()  # slots freed elsewhere, cooldowns ended
            if waiter.error is not None:
                raise waiter.error
            if waiter.value is not None:
                return waiter.value
            if self._queue.remaining(waiter) <= 0:
                raise self._queue.expire(waiter)
            return None

    def _abandon_wait(self, waiter) -> None:  # noqa: ANN001 - Waiter[_Ask]
        """The waiting caller gave up (cancelled, deadline, error): give back a slot it was granted."""
        with self._lock:
            self._queue.leave(waiter)
            granted, waiter.value = waiter.value, None
        if granted is not None:
            self._abandoned(granted)

    # ----------------------------------------------------------------- outcomes

    def _release_locked(self, idx: int) -> None:
        m = self._members[idx]
        m.in_flight -= 1
        self._limiter.release(m.name)
        self._dispatch_locked()

    def _release(self, idx: int) -> None:
        with self._lock:
            self._release_locked(idx)

    def _abandoned(self, idx: int) -> None:
        with self._lock:
            self._members[idx].breaker.record_release()
            self._release_locked(idx)

    def _succeeded(self, idx: int, model: str, latency_s: float, ttft_s: float | None) -> None:
        alpha = self.settings.ewma_alpha
        with self._lock:
            m = self._members[idx]
            m.breaker.record_success()
            m.ewma_latency = _ewma(m.ewma_latency, latency_s, alpha)
            if ttft_s is not None:
                m.ewma_ttft = _ewma(m.ewma_ttft, ttft_s, alpha)
            m.loaded = m.loaded | {model}  # Ollama keeps a model loaded after serving it
            self._release_locked(idx)

    def _failed(self, idx: int, ask: _Ask, exc: BackendError, attempt: int, *, retry: bool = True) -> float:
        """Record a failure and release the slot; return the delay before the next attempt or raise."""
        instance_fault = _retryable(exc)
        retryable = retry and instance_fault
        with self._lock:
            m = self._members[idx]
            if isinstance(exc, BackendProtocolError) and exc.status == 404 and m.models is not None:
                m.models = m.models - {ask.model}  # the model was removed; not the instance's fault
                m.breaker.record_release()
            elif instance_fault:  # fast 503s and refused connections count: a failing instance must not look idle
                m.breaker.record_failure(retry_after=getattr(exc, "retry_after", None))
            else:
                m.breaker.record_release()
            ask.tried.add(idx)
            ask.attempts.append((m.name, f"{type(exc).__name__}: {exc}"))
            self._release_locked(idx)
            if not retryable:
                raise exc
            if attempt + 1 >= self.settings.retry.attempts:
                return 0.0
            return self._backoff_locked(ask, attempt)

    def _backoff_locked(self, ask: _Ask, attempt: int) -> float:
        untried = [
            i
            for i, m in enumerate(self._members)
            if i not in ask.tried and m.healthy and m.breaker.available() and m.models and ask.model in m.models
        ]
        if untried:
            return 0.0  # fail over at once; the failed instance is the one that needs rest
        r = self.settings.retry
        delay = r.backoff_s * 2**attempt * self._rng.uniform(0.5, 1.0)
        reopen = min((m.breaker.reopens_in() for m in self._members if m.models and ask.model in m.models), default=0.0)
        return min(r.max_backoff_s, max(delay, reopen))

    def _exhausted(self, ask: _Ask) -> NoInstanceAvailable:
        tried = "; ".join(f"{name}: {err}" for name, err in ask.attempts)
        return NoInstanceAvailable(
            f"model {ask.model!r}: all {len(ask.attempts)} attempts failed ({tried})", attempts=tuple(ask.attempts)
        )

    # ----------------------------------------------------------------- models and health

    def _apply_probe(self, i: int, result: Probe) -> None:
        with self._lock:
            m = self._members[i]
            m.healthy = result.healthy
            m.models_at = self._clock()
            if result.healthy and m.spec.models is None:
                m.models = frozenset(result.models or ())
            if result.loaded is not None:
                m.loaded = frozenset(result.loaded)
            if not result.healthy:
                m.breaker.record_failure()
            self._dispatch_locked()

    def _stale(self) -> list[int]:
        with self._lock:
            now = self._clock()
            return [i for i, m in enumerate(self._members) if m.stale(now, self.settings.models_ttl_s)]

    def _refresh_models(self) -> None:
        """Learn each instance's models before it is first used, and again after ``models_ttl_s``."""
        if not self._stale():
            return
        with self._refresh_lock:  # one refresher at a time; the others find fresh models after it
            for i in self._stale():
                self._apply_probe(i, probe(self._members[i].spec.backend))

    async def _arefresh_models(self) -> None:
        if self._stale():
            await asyncio.to_thread(self._refresh_models)


def _check(model: object, messages: object) -> None:
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest(f"model must be a non-empty string, got {model!r}")
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence) or not messages:
        raise InvalidRequest("messages must be a non-empty sequence of Message")
    if not all(isinstance(m, Message) for m in messages):
        raise InvalidRequest("every message must be a semroute.types.Message")
