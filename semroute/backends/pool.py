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
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterator, Mapping, Sequence
from typing import Any

from ..errors import BackendError, ConfigError, DeadlineExceeded, InvalidRequest
from ..metrics import Metrics
from ..request import validate_chat, validate_options
from ..types import Chunk, Completion, Message
from ..settings import PoolSettings
from .balancer import Ask, Balancer, Instance
from .base import AsyncClosable, Backend, EmbeddingBackend
from .deadline import Deadline, await_before, call_before
from .groups import flatten, groups_of
from .health import AsyncHealthTask, HealthThread, probe
from .limiter import Limiter, LocalLimiter
from .strategy import InstanceState, Strategy, resolve_strategy

__all__ = ["Instance", "Pool"]

# Local releases wake queued requests directly; this poll only catches cooldowns ending and
# slots freed by other processes (a shared limiter), so it can be slow and cheap.
_POLL_S = 0.25
_Settle = Callable[[Completion | None, BaseException | None], None]


class Pool:
    """The instances of one tier. Thread-safe; usable from threads and event loops at once."""

    def __init__(
        self,
        backends: Sequence[Backend | Instance],
        *,
        strategy: str | Strategy = "latency_aware",
        settings: PoolSettings = PoolSettings(),
        limiter: Limiter | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        specs = [b if isinstance(b, Instance) else Instance(b) for b in backends]
        if not specs:
            raise ConfigError("a pool needs at least one backend")
        names = [s.backend.name for s in specs]
        if len(set(names)) != len(names):
            raise ConfigError(f"backend names must be unique in a pool; got {names}")
        self.settings = settings
        self.strategy = resolve_strategy(strategy)
        self._clock = clock
        self._core = Balancer(
            specs,
            strategy=self.strategy,
            settings=settings,
            limiter=limiter if limiter is not None else LocalLimiter(),
            clock=clock,
            rng=rng if rng is not None else random.Random(),
            metrics=metrics,
        )
        self._refresh_lock = threading.Lock()
        self._health: HealthThread | None = None
        self._ahealth: AsyncHealthTask | None = None

    # ----------------------------------------------------------------- public surface

    def chat(
        self, model: str, messages: Sequence[Message], *, options: Mapping[str, Any] | None = None,
        deadline_s: float | None = None,
    ) -> Completion:
        """One complete answer. A failed instance is replaced by another, within the retry budget.

        ``options`` (Ollama's model options, e.g. ``{"temperature": 0, "num_predict": 4}``) are
        passed to backends only when given, so backends without an ``options`` keyword still work.

        Raises ``InvalidRequest`` (before any I/O), ``Overloaded`` (queue full or deadline passed),
        ``NoInstanceAvailable`` (no instance has the model, all are down, or every attempt
        failed; ``attempts`` lists them) or a non-retryable ``BackendError`` (such as a 400).
        ``deadline_s`` bounds the whole call (queue, attempts, backoff, the instance's answer):
        past it, ``DeadlineExceeded`` at once, even while an instance hangs.
        """
        model = validate_chat(model, messages)
        options = validate_options(options)
        deadline = Deadline(deadline_s, self._clock)
        ask = Ask(model)
        for attempt in range(self.settings.retry.attempts):
            deadline.check("before an attempt")
            self._refresh_models()
            idx = self._acquire(ask, deadline)
            started = self._clock()
            backend = self._core.backend(idx)
            self._not_late(idx, ask, deadline)
            try:
                completion = call_before(lambda: backend.chat(model, messages, **_extra(options)), deadline,
                                         where="while an instance answered", settle=self._settle(idx, ask, model, started))
            except DeadlineExceeded:
                raise  # the call runs on; ``settle`` releases its slot when it ends
            except BackendError as exc:
                time.sleep(deadline.bound(self._core.failed(idx, ask, exc, attempt)))
                continue
            except BaseException:
                self._core.abandoned(idx, ask)
                raise
            self._core.succeeded(idx, model, self._clock() - started, None)
            return completion
        raise self._core.exhausted(ask)

    def stream(self, model: str, messages: Sequence[Message], *, options: Mapping[str, Any] | None = None,
               deadline_s: float | None = None) -> Iterator[Chunk]:
        """Chunks of one answer (``options`` as for ``chat``). Fails over only before the first chunk;
        after it, errors surface.

        Close the iterator if you stop early (it holds a slot until closed or collected).
        ``deadline_s`` is checked while queued, before each attempt and as each chunk arrives;
        a silent instance is bounded by its read timeout (``astream`` interrupts it at once).
        """
        model = validate_chat(model, messages)
        return self._stream(model, messages, _extra(validate_options(options)), Deadline(deadline_s, self._clock))

    def _stream(self, model: str, messages: Sequence[Message], extra: dict[str, Any], deadline: Deadline) -> Iterator[Chunk]:
        ask = Ask(model)
        for attempt in range(self.settings.retry.attempts):
            deadline.check("before an attempt")
            self._refresh_models()
            idx = self._acquire(ask, deadline)
            started = self._clock()
            ttft: float | None = None
            try:
                chunks = self._core.backend(idx).stream(model, messages, **extra)
                try:
                    for chunk in chunks:
                        if ttft is None:
                            ttft = self._clock() - started
                        deadline.check("while streaming")
                        yield chunk
                finally:
                    if isinstance(chunks, Generator):  # before the slot is given back
                        chunks.close()
            except DeadlineExceeded:
                self._core.abandoned(idx, ask)
                raise
            except BackendError as exc:
                if ttft is not None:  # text already reached the caller: surface, never repeat
                    self._core.failed(idx, ask, exc, attempt, retry=False)
                    raise
                time.sleep(deadline.bound(self._core.failed(idx, ask, exc, attempt)))
                continue
            except BaseException:  # the caller stopped reading (GeneratorExit) or was interrupted
                self._core.abandoned(idx, ask)
                raise
            self._core.succeeded(idx, model, self._clock() - started, ttft)
            return
        raise self._core.exhausted(ask)

    async def achat(
        self, model: str, messages: Sequence[Message], *, options: Mapping[str, Any] | None = None,
        deadline_s: float | None = None,
    ) -> Completion:
        """``chat`` for event loops: waits without blocking the loop."""
        model = validate_chat(model, messages)
        options = validate_options(options)
        deadline = Deadline(deadline_s, self._clock)
        ask = Ask(model)
        for attempt in range(self.settings.retry.attempts):
            deadline.check("before an attempt")
            await self._arefresh_models()
            idx = await self._aacquire(ask, deadline)
            started = self._clock()
            try:
                completion = await await_before(self._core.backend(idx).achat(model, messages, **_extra(options)), deadline)
            except DeadlineExceeded:
                self._core.abandoned(idx, ask)  # cancelled: the instance's connection was closed
                raise
            except BackendError as exc:
                await asyncio.sleep(deadline.bound(self._core.failed(idx, ask, exc, attempt)))
                continue
            except BaseException:
                self._core.abandoned(idx, ask)
                raise
            self._core.succeeded(idx, model, self._clock() - started, None)
            return completion
        raise self._core.exhausted(ask)

    async def aembed(self, model: str, texts: Sequence[str]) -> list[list[float]]:
        """Vectors from one instance that has ``model`` (Ollama's ``/api/embed``), failed over like ``achat``.

        Raises ``InvalidRequest`` when a backend of this pool cannot embed.
        """
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise InvalidRequest("texts must be a sequence of strings")
        ask = Ask(model)
        for attempt in range(self.settings.retry.attempts):
            await self._arefresh_models()
            idx = await self._aacquire(ask, Deadline(None, self._clock))
            backend = self._core.backend(idx)
            if not isinstance(backend, EmbeddingBackend):
                self._core.abandoned(idx)
                raise InvalidRequest(f"{backend.name} cannot embed (its backend has no aembed)")
            started = self._clock()
            try:
                vectors = await backend.aembed(model, texts)
            except BackendError as exc:
                await asyncio.sleep(self._core.failed(idx, ask, exc, attempt))
                continue
            except BaseException:
                self._core.abandoned(idx)
                raise
            self._core.succeeded(idx, model, self._clock() - started, None)
            return vectors
        raise self._core.exhausted(ask)

    def astream(self, model: str, messages: Sequence[Message], *, options: Mapping[str, Any] | None = None,
                deadline_s: float | None = None) -> AsyncIterator[Chunk]:
        """Chunks of one answer. ``aclose()`` the iterator if you stop early (it holds a slot).

        ``deadline_s`` bounds the whole stream, a silent instance included.
        """
        return flatten(self.astream_groups(model, messages, options=options, deadline_s=deadline_s))

    def astream_groups(self, model: str, messages: Sequence[Message], *, options: Mapping[str, Any] | None = None,
                       deadline_s: float | None = None) -> AsyncIterator[Sequence[Chunk]]:
        """``astream``'s chunks in the groups that arrived together (``semroute.backends.groups``):
        what a proxy relays, so that its per-chunk costs are paid once per read."""
        model = validate_chat(model, messages)
        extra = _extra(validate_options(options))
        return self._astream(model, messages, extra, Deadline(deadline_s, self._clock))

    async def _astream(self, model: str, messages: Sequence[Message], extra: dict[str, Any],
                       deadline: Deadline) -> AsyncIterator[Sequence[Chunk]]:
        ask = Ask(model)
        for attempt in range(self.settings.retry.attempts):
            deadline.check("before an attempt")
            await self._arefresh_models()
            idx = await self._aacquire(ask, deadline)
            started = self._clock()
            ttft: float | None = None
            try:
                groups = groups_of(self._core.backend(idx), model, messages, **extra)
                try:
                    while True:
                        try:
                            group = await await_before(anext(groups), deadline, where="while streaming")
                        except StopAsyncIteration:
                            break
                        if ttft is None:
                            ttft = self._clock() - started
                        yield group
                finally:
                    if isinstance(groups, AsyncGenerator):
                        await groups.aclose()
            except DeadlineExceeded:
                self._core.abandoned(idx, ask)
                raise
            except BackendError as exc:
                if ttft is not None:
                    self._core.failed(idx, ask, exc, attempt, retry=False)
                    raise
                await asyncio.sleep(deadline.bound(self._core.failed(idx, ask, exc, attempt)))
                continue
            except BaseException:
                self._core.abandoned(idx, ask)
                raise
            self._core.succeeded(idx, model, self._clock() - started, ttft)
            return
        raise self._core.exhausted(ask)

    def states(self, model: str | None = None) -> tuple[InstanceState, ...]:
        """A snapshot of every instance; ``has_model``/``model_loaded`` refer to ``model``."""
        return self._core.states(model)

    @property
    def queue_length(self) -> int:
        return self._core.queue_length

    def check_health(self) -> None:
        """One round of health checks (``/api/tags`` and ``/api/ps`` for every instance)."""
        for i, backend in enumerate(self._core.backends):
            self._core.apply_probe(i, probe(backend))

    async def acheck_health(self) -> None:
        probes = await asyncio.gather(*(asyncio.to_thread(probe, b) for b in self._core.backends))
        for i, p in enumerate(probes):
            self._core.apply_probe(i, p)

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
        for backend in self._core.backends:
            backend.close()

    async def aclose(self) -> None:
        """Stop health checks and close every backend, their async connections included."""
        await self.astop_health_checks()
        self.stop_health_checks()
        for backend in self._core.backends:
            if isinstance(backend, AsyncClosable):
                await backend.aclose()
            else:
                backend.close()

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> Pool:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # ----------------------------------------------------------------- waiting and refreshing

    def _acquire(self, ask: Ask, deadline: Deadline) -> int:
        got = self._core.enter(ask, in_loop=False)
        if isinstance(got, int):
            return got
        try:
            while True:
                got.wait(deadline.bound(min(self._core.remaining(got), _POLL_S)))
                if (idx := self._core.after_wait(got)) is not None:
                    return idx
                deadline.check("while queued for a slot")
        except BaseException:
            self._core.abandon_wait(got)
            raise

    async def _aacquire(self, ask: Ask, deadline: Deadline) -> int:
        got = self._core.enter(ask, in_loop=True)
        if isinstance(got, int):
            return got
        try:
            while True:
                await got.await_grant(deadline.bound(min(self._core.remaining(got), _POLL_S)))
                if (idx := self._core.after_wait(got)) is not None:
                    return idx
                deadline.check("while queued for a slot")
        except BaseException:  # including cancellation: leave the queue, give back a granted slot
            self._core.abandon_wait(got)
            raise

    def _not_late(self, idx: int, ask: Ask, deadline: Deadline) -> None:
        """A slot granted at or after the deadline is given back unused (nothing is sent)."""
        if deadline.remaining() <= 0:
            self._core.abandoned(idx, ask)
            raise deadline.error("before an instance was called")

    def _settle(self, idx: int, ask: Ask, model: str, started: float) -> _Settle:
        clock, core = self._clock, self._core
        return lambda value, error: _settle_with(core, idx, ask, model, clock() - started, value, error)

    def _refresh_models(self) -> None:
        """Learn each instance's models before it is first used, and again after ``models_ttl_s``."""
        if not self._core.stale():
            return
        with self._refresh_lock:  # one refresher at a time; the others find fresh models after it
            for i in self._core.stale():
                self._core.apply_probe(i, probe(self._core.backend(i)))

    async def _arefresh_models(self) -> None:
        if self._core.stale():
            await asyncio.to_thread(self._refresh_models)


def _settle_with(core: Balancer, idx: int, ask: Ask, model: str, latency: float,
                 value: Completion | None, error: BaseException | None) -> None:
    """Record the outcome of a call that ended after its caller's deadline."""
    if error is None:
        core.succeeded(idx, model, latency, None)
    elif isinstance(error, BackendError):
        try:
            core.failed(idx, ask, error, attempt=0, retry=False)  # learn it; nobody waits for a retry
        except BackendError:
            pass
    else:
        core.abandoned(idx, ask)


def _extra(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Keyword arguments for a backend call: ``options`` only when the caller gave some."""
    return {} if options is None else {"options": options}
