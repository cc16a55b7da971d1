"""``MissPath``: a miss asks the classifier's tier first, then the others, and stores what completes.

Kept apart from ``Router`` because it is one rule written four ways (sync/async, whole/streamed):
a tier that fails before any text goes to the next tier in ``Pipeline.tier_order``; a stream
that already sent text is never retried (the caller would see it twice); a deadline that passes
ends the request instead of trying another tier. The answer is queued for the store as soon as
it is complete, before the caller gets its last chunk (a caller may stop reading there).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

from .backends.deadline import Deadline
from .errors import BackendError, DeadlineExceeded, NoInstanceAvailable
from .types import Answer, Chunk, Completion

if TYPE_CHECKING:
    import numpy as np

    from .pipeline import Pipeline, Plan
    from .settings import Tier

__all__ = ["MissPath", "time_left"]


class MissPath:
    """The model calls of a miss, over the pipeline's tier pools (see the module docstring)."""

    def __init__(self, pipeline: Pipeline, tiers: Mapping[str, Tier]) -> None:
        self.pipeline = pipeline
        self.tiers = tiers

    def generate(self, plan: Plan, vector: np.ndarray, deadline: Deadline) -> Answer:
        decision = self.pipeline.decide(plan, vector)
        last_error: Exception | None = None
        for tier in self.pipeline.tier_order(decision.tier):
            deadline.check("before the model was asked")
            started = time.perf_counter()
            try:
                completion = self.pipeline.pool(tier).chat(self.tiers[tier].model, plan.messages,
                                                           options=self.tiers[tier].options, deadline_s=time_left(deadline))
            except DeadlineExceeded:
                raise  # no other tier: the caller's time is up
            except (BackendError, NoInstanceAvailable) as exc:
                last_error = self.pipeline.tier_failed(tier, exc)
                continue
            self.pipeline.llm_done(plan, started)
            return self.pipeline.complete(plan, vector, decision, tier, completion)
        assert last_error is not None
        raise last_error

    async def agenerate(self, plan: Plan, vector: np.ndarray, deadline: Deadline) -> Answer:
        decision = await self.pipeline.adecide(plan, vector)
        last_error: Exception | None = None
        for tier in self.pipeline.tier_order(decision.tier):
            deadline.check("before the model was asked")
            started = time.perf_counter()
            try:
                completion = await self.pipeline.pool(tier).achat(self.tiers[tier].model, plan.messages,
                                                                  options=self.tiers[tier].options,
                                                                  deadline_s=time_left(deadline))
            except DeadlineExceeded:
                raise
            except (BackendError, NoInstanceAvailable) as exc:
                last_error = self.pipeline.tier_failed(tier, exc)
                continue
            self.pipeline.llm_done(plan, started)
            return self.pipeline.complete(plan, vector, decision, tier, completion, later=True)  # stored off the loop
        assert last_error is not None
        raise last_error

    def stream(self, plan: Plan, vector: np.ndarray, deadline: Deadline) -> Iterator[Chunk]:
        decision = self.pipeline.decide(plan, vector)
        for tier in self.pipeline.tier_order(decision.tier):
            deadline.check("before the model was asked")
            parts: list[str] = []
            started = time.perf_counter()
            try:
                for chunk in self.pipeline.pool(tier).stream(self.tiers[tier].model, plan.messages,
                                                             options=self.tiers[tier].options,
                                                             deadline_s=time_left(deadline)):
                    parts.append(chunk.text)
                    if chunk.done:
                        self.pipeline.llm_done(plan, started)
                        self.pipeline.complete(plan, vector, decision, tier, joined(parts, chunk))
                    yield chunk.with_source(tier)
            except DeadlineExceeded:
                raise
            except (BackendError, NoInstanceAvailable) as exc:
                self._stream_failed(tier, exc, parts)
                continue
            return
        raise NoInstanceAvailable(f"no tier could stream an answer for tier {decision.tier!r}")

    async def astream(self, plan: Plan, vector: np.ndarray, deadline: Deadline) -> AsyncIterator[Chunk]:
        decision = await self.pipeline.adecide(plan, vector)
        for tier in self.pipeline.tier_order(decision.tier):
            deadline.check("before the model was asked")
            parts: list[str] = []
            started = time.perf_counter()
            try:
                async for chunk in self.pipeline.pool(tier).astream(self.tiers[tier].model, plan.messages,
                                                                    options=self.tiers[tier].options,
                                                                    deadline_s=time_left(deadline)):
                    parts.append(chunk.text)
                    if chunk.done:
                        self.pipeline.llm_done(plan, started)
                        self.pipeline.complete(plan, vector, decision, tier, joined(parts, chunk), later=True)
                    yield chunk.with_source(tier)
            except DeadlineExceeded:
                raise
            except (BackendError, NoInstanceAvailable) as exc:
                self._stream_failed(tier, exc, parts)
                continue
            return
        raise NoInstanceAvailable(f"no tier could stream an answer for tier {decision.tier!r}")

    def _stream_failed(self, tier: str, exc: Exception, parts: Sequence[str]) -> None:
        """A stream's tier failed: re-raise if text already reached the caller, else count and go on."""
        if parts:
            self.pipeline.metrics.incr("stream.broken")
            raise exc
        self.pipeline.tier_failed(tier, exc)


def time_left(deadline: Deadline) -> float | None:
    """The seconds a pool call may take; never zero (the deadline was just checked)."""
    return None if deadline.until is None else max(deadline.remaining(), 1e-6)


def joined(parts: Sequence[str], last: Chunk) -> Completion:
    """A streamed answer as one completion, for the store."""
    return Completion(
        text="".join(parts),
        model=last.model,
        instance=last.instance,
        prompt_tokens=last.prompt_tokens,
        completion_tokens=last.completion_tokens,
    )
