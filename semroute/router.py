"""``Router``: the one object applications use. It composes the seams; it decides nothing itself.

A question is validated, looked up in the exact tier, embedded once, looked up in the
semantic tier (candidates pass the verifier), and on a miss the complexity classifier picks
a tier whose pool of Ollama instances answers; complete answers are stored for next time.
``ask``/``aask`` and ``stream``/``astream`` are thin sync/async shells over the same steps
in ``semroute.pipeline`` and, for the model calls of a miss, ``semroute.miss``; the router adds
the coalescing of identical misses (in this process, or across processes through Redis).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from .backends.base import BackendFactory
from .backends.deadline import Deadline
from .backends.sizing import sizing
from .cache.base import Store
from .components import Components
from .embed import Embedder, default_embedder
from .cache.memory import check_tags
from .errors import InvalidRequest
from .flight import AsyncSingleFlight, AsyncStreamFlight, SingleFlight, StreamFlight
from .hits.verify import Verifier
from .pipeline import Pipeline, Plan
from .metrics import Metrics
from .miss import MissPath, time_left
from .routing.classify import ComplexityClassifier
from .savings import CostModel, savings
from .settings import RouterSettings, Tier, default_tiers, parse_tiers
from .types import Answer, Chunk
from .warming import WarmOptions, WarmReport

if TYPE_CHECKING:
    import numpy as np

__all__ = ["Router"]

log = logging.getLogger("semroute")

TierSpec = Mapping[str, "Tier | Mapping[str, object]"]


class Router:
    """Semantic cache + complexity router in front of Ollama.

    ``Router()`` is the embedded default: an in-process cache persisted under the user cache
    directory, the default embedder (``semroute.embed.default_embedder``), the shipped
    complexity classifier, tiers ``llama3.2:3b`` / ``llama3.1:8b`` at ``OLLAMA_HOST`` or localhost. Every part can be
    passed in instead; ``classifier=FixedTier("small")`` turns tier choice off.
    ``redis_url`` shares the cache, instance limits and in-flight misses with every process
    using that Redis (see ``semroute.shared``).
    """

    def __init__(
        self,
        *,
        tiers: TierSpec | None = None,
        data_dir: str | Path | None = None,
        namespace: str = "default",
        embedder: Embedder | None = None,
        verifier: Verifier | None = None,
        classifier: ComplexityClassifier | None = None,
        store: Store | None = None,
        settings: RouterSettings | None = None,
        backend_factory: BackendFactory | None = None,
        clock: Callable[[], float] = time.time,
        redis_url: str | None = None,
    ) -> None:
        parts = Components(
            embedder=embedder or default_embedder(),
            verifier=verifier,
            classifier=classifier,
            store=store,
            data_dir=None if data_dir is None else Path(data_dir),
            backend_factory=backend_factory,
            clock=clock,
            redis_url=redis_url,
            metrics=Metrics(clock=clock),  # the period the counters cover is on the router's clock
        )
        self.tiers: dict[str, Tier] = parse_tiers(tiers) if tiers is not None else default_tiers()
        self.settings = settings or RouterSettings()
        self.metrics = parts.metrics
        self.pipeline = Pipeline(parts, tiers=self.tiers, settings=self.settings, namespace=namespace)
        self.miss = MissPath(self.pipeline, self.tiers)
        self._flight: SingleFlight[Answer] = SingleFlight()
        self._aflight: AsyncSingleFlight[Answer] = AsyncSingleFlight()
        self._stream_flight: StreamFlight[Chunk] = StreamFlight()
        self._astream_flight: AsyncStreamFlight[Chunk] = AsyncStreamFlight()
        # With Redis, identical misses coalesce across every process sharing it (streams too).
        self._shared_flight = None if self.pipeline.shared is None else self.pipeline.shared.flight()

    @classmethod
    def from_config(cls, path: str | Path, *, allow_strategy_import: bool = False, **overrides: object) -> Router:
        """A router from a TOML file (see ``semroute.config``); keyword arguments override it.

        ``allow_strategy_import=True`` lets the file name a ``"package.module:Class"`` strategy.
        """
        from .config import load_config

        return cls(**{**load_config(path, allow_strategy_import=allow_strategy_import), **overrides})  # type: ignore[arg-type]

    # -- sync -----------------------------------------------------------------------------

    def ask(
        self, question: str, *, namespace: str | None = None, system: str | None = None, tier: str | None = None,
        deadline_s: float | None = None,
    ) -> Answer:
        """Answer one question from the cache or a model tier.

        ``deadline_s`` bounds the whole request (cache, queue wait, retries, other tiers, the
        model's answer); past it ``DeadlineExceeded`` is raised (a ``BackendTimeout``).

        Raises ``InvalidRequest`` (bad input, before any I/O), ``Overloaded`` (every instance of
        the tier busy and its queue full, or the queue deadline passed), ``NoInstanceAvailable``
        or ``BackendError`` (no tier could answer). Store failures never raise: the question
        goes to the model and ``store.errors.*`` counts them.
        """
        deadline = Deadline(deadline_s, time.monotonic)
        plan = self.pipeline.plan(question, namespace=namespace, system=system, tier=tier)
        answer = self.pipeline.exact(plan)
        if answer is not None:
            return answer
        vector, answer = self.pipeline.lookup(plan)
        answer = answer or self.pipeline.judge(plan)
        if answer is not None:
            return answer
        generate = lambda: self.miss.generate(plan, vector, deadline)  # noqa: E731
        try:
            if self._shared_flight is not None:
                answer, shared = self._shared_flight.do(plan.key, generate, wait_s=time_left(deadline))
                if shared:  # the Redis flight reports joining only when the answer arrives
                    self._coalesced()
            else:
                answer, shared = self._flight.do(plan.key, generate, wait_s=time_left(deadline), on_join=self._coalesced)
        except TimeoutError:  # a follower's own deadline passed while the leader still works
            raise deadline.error("waiting for an identical request") from None
        return self.pipeline.follower_answer(plan, answer) if shared else answer

    def _coalesced(self) -> None:
        """A caller joined an identical miss in flight (counted when it joins, not when it ends)."""
        self.metrics.incr("requests.coalesced")

    def stream(
        self, question: str, *, namespace: str | None = None, system: str | None = None, tier: str | None = None,
        deadline_s: float | None = None,
    ) -> Iterator[Chunk]:
        """Stream an answer. A cache hit is one final chunk; a miss streams from the model.

        Concurrent identical misses share one model call, and each caller receives the whole
        stream. The answer is stored only once the stream completed without error. Failures
        after the first chunk surface as ``BackendError``; nothing is retried (no duplicate text).
        """
        deadline = Deadline(deadline_s, time.monotonic)
        plan = self.pipeline.plan(question, namespace=namespace, system=system, tier=tier)  # bad input raises now
        return self._stream(plan, deadline)

    def _stream(self, plan: Plan, deadline: Deadline) -> Iterator[Chunk]:
        answer = self.pipeline.exact(plan)
        if answer is None:
            vector, answer = self.pipeline.lookup(plan)
            answer = answer or self.pipeline.judge(plan)
        if answer is not None:
            yield _hit_chunk(answer)
            return
        assert vector is not None  # no exact hit, so the question was embedded
        if self._shared_flight is not None:
            try:
                yield from self._shared_flight.stream(plan.key, lambda: self.miss.stream(plan, vector, deadline),
                                                      wait_s=time_left(deadline))
            except TimeoutError:  # following another process's stream past this request's deadline
                raise deadline.error("waiting for an identical request") from None
            return
        # a local follower reads the leader's stream, which is bounded by the leader's deadline
        chunks, shared = self._stream_flight.join(plan.key, lambda: self.miss.stream(plan, vector, deadline))
        if shared:
            self._coalesced()
        with contextlib.closing(chunks):
            yield from chunks

    def warm(
        self,
        rows: Iterable[object],
        *,
        namespace: str | None = None,
        system: str | None = None,
        batch_size: int = 64,
        progress: Callable[[int], None] | None = None,
        ttl_s: float | None = None,
        tags: Mapping[str, str] | None = None,
        near_duplicates: float | None = None,
        on_bad: Literal["raise", "skip"] = "raise",
    ) -> WarmReport:
        """Store known question/answer rows (an FAQ) and report what was added, skipped and why.

        A row is a ``(question, answer)`` pair, a mapping with ``question``, ``answer`` and
        optional ``namespace``, ``ttl_s`` and ``metadata`` (tags), or a ``WarmRow`` (what
        ``read_warm_file`` yields from CSV/JSONL). ``ttl_s`` overrides the cache's default
        time-to-live (``math.inf``: never expire); ``tags`` label every entry
        (``{"topic": "speed-limits"}``) for ``invalidate(where=...)``. Rows already stored with
        the same answer are skipped without embedding (an interrupted warm-up resumes);
        ``near_duplicates=0.95`` also skips rows that close to an earlier one, reporting a
        conflict when the answers differ. ``on_bad="raise"`` validates every row before storing
        any; ``"skip"`` reports bad rows in ``WarmReport.bad`` and stores the rest.
        ``progress(n)`` is called as rows are done.
        """
        if tags is not None and not isinstance(tags, Mapping):
            raise InvalidRequest(f"tags must be a mapping of name to value, got {tags!r}")
        options = WarmOptions(namespace=namespace, system=system, batch_size=batch_size, ttl_s=ttl_s,
                              tags=tuple(sorted(check_tags((tags or {}).items()))), near_duplicates=near_duplicates,
                              on_bad=on_bad)
        return self.pipeline.warm(rows, options, progress)

    def invalidate(
        self, *, ids: Iterable[str] = (), namespace: str | None = None, where: Mapping[str, str] | None = None
    ) -> int:
        """Delete cached entries by id, and/or every entry of ``namespace`` carrying all ``where`` tags.

        The deletes travel through the store's change feed, so every process sharing the cache
        stops serving them at its next lookup. Returns how many entries were deleted.
        """
        return self.pipeline.invalidate(ids=ids, namespace=namespace, where=where)

    # -- async ----------------------------------------------------------------------------

    async def aask(
        self, question: str, *, namespace: str | None = None, system: str | None = None, tier: str | None = None,
        deadline_s: float | None = None,
    ) -> Answer:
        """``ask`` for asyncio; raises what ``ask`` raises. The event loop never waits on the store,
        the index, the embedding or a model load: they run in worker threads, or on the loop only
        when nothing they touch can make it wait (``_alookup``)."""
        deadline = Deadline(deadline_s, time.monotonic)
        plan = self.pipeline.plan(question, namespace=namespace, system=system, tier=tier)
        vector, answer = await self._alookup(plan)
        if answer is not None:
            return answer
        answer = await self.pipeline.ajudge(plan)
        if answer is not None:
            return answer
        assert vector is not None  # no exact hit, so the question was embedded
        generate = lambda: self.miss.agenerate(plan, vector, deadline)  # noqa: E731
        try:
            if self._shared_flight is not None:
                answer, shared = await self._shared_flight.ado(plan.key, generate, wait_s=time_left(deadline))
                if shared:
                    self._coalesced()
            else:
                answer, shared = await self._aflight.do(plan.key, generate, wait_s=time_left(deadline),
                                                        on_join=self._coalesced)
        except TimeoutError:
            raise deadline.error("waiting for an identical request") from None
        return self.pipeline.follower_answer(plan, answer) if shared else answer

    def _cached(self, plan: Plan) -> tuple[np.ndarray | None, Answer | None]:
        """The exact tier, then (on no exact hit) the embedding and the semantic tier, in one trip
        to a worker thread: under load each trip's hand-off to and back from a thread costs as
        much as the exact tier itself. The vector is None when the exact tier answered."""
        answer = self.pipeline.exact(plan)
        if answer is not None:
            return None, answer
        return self.pipeline.lookup(plan)

    async def _alookup(self, plan: Plan) -> tuple[np.ndarray | None, Answer | None]:
        """``_cached`` for event loops. With an embedder that takes loop calls itself (the gateway's
        batcher), the exact and the semantic tier run on the loop whenever nothing they touch can
        make it wait (``Pipeline.exact_if_free``), else in a worker thread: a miss then crosses to
        a thread and back once (the batcher's), not twice, which measured 0.20-0.29 ms less added
        latency per miss and ~0.1 ms per exact hit (``bench/serve_ab.py``, 2026-12-05). Over a
        Redis store or a caller's own verifier, one worker thread does the whole lookup, as before.
        """
        pipeline = self.pipeline
        if not pipeline.looks_up_in_place:
            return await asyncio.to_thread(self._cached, plan)
        ran, answer = pipeline.exact_if_free(plan)
        if not ran:
            answer = await asyncio.to_thread(pipeline.exact, plan)
        if answer is not None:
            return None, answer
        vector = await pipeline.aembed(plan)
        ran, answer = pipeline.semantic_if_free(plan, vector)
        if not ran:
            answer = await asyncio.to_thread(pipeline.semantic, plan, vector)
        return vector, answer

    def astream(
        self, question: str, *, namespace: str | None = None, system: str | None = None, tier: str | None = None,
        deadline_s: float | None = None,
    ) -> AsyncIterator[Chunk]:
        """``stream`` for asyncio: ``async for chunk in router.astream(question)``."""
        deadline = Deadline(deadline_s, time.monotonic)
        plan = self.pipeline.plan(question, namespace=namespace, system=system, tier=tier)  # bad input raises now
        return self._astream(plan, deadline)

    async def _astream(self, plan: Plan, deadline: Deadline) -> AsyncIterator[Chunk]:
        vector, answer = await self._alookup(plan)
        if answer is None:
            answer = await self.pipeline.ajudge(plan)
        if answer is not None:
            yield _hit_chunk(answer)
            return
        assert vector is not None  # no exact hit, so the question was embedded
        if self._shared_flight is not None:
            chunks = self._shared_flight.astream(plan.key, lambda: self.miss.astream(plan, vector, deadline),
                                                 wait_s=time_left(deadline))
            shared = False
        else:
            chunks, shared = self._astream_flight.join(plan.key, lambda: self.miss.astream(plan, vector, deadline))
        if shared:
            self._coalesced()
        try:
            async for chunk in chunks:
                yield chunk
        except TimeoutError:  # following another process's stream past this request's deadline
            raise deadline.error("waiting for an identical request") from None
        finally:
            await chunks.aclose()

    # -- lifecycle ------------------------------------------------------------------------

    def stats(self, cost: CostModel | None = None) -> dict[str, object]:
        """Counters, latency percentiles and histograms, ``savings`` (tokens generated and avoided,
        money saved and cost per 1,000 questions under ``cost``, see ``semroute.savings``), each
        tier's instances (in flight, EWMA latency, health, breaker) and its ``sizing`` (slots,
        queue, what is in use; see the README's sizing rule)."""
        snapshot = self.metrics.snapshot()
        snapshot["savings"] = savings(snapshot, cost)
        snapshot["instances"] = {
            name: [dataclasses.asdict(s) for s in self.pipeline.pool(name).states(tier.model)]
            for name, tier in self.tiers.items()
        }
        snapshot["sizing"] = {name: sizing(self.pipeline.pool(name), tier.model) for name, tier in self.tiers.items()}
        return snapshot

    def start_health_checks(self) -> None:
        """Probe every instance in the background (``/api/tags``, ``/api/ps``) until ``close()``."""
        for tier in self.tiers:
            self.pipeline.pool(tier).start_health_checks()

    def close(self) -> None:
        self.pipeline.close()

    def __enter__(self) -> Router:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _hit_chunk(answer: Answer) -> Chunk:
    return Chunk(text=answer.text, done=True, model=answer.model or "", source=answer.source,
                 similarity=answer.similarity)
