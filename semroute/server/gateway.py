"""``Gateway``: one chat request, whichever API it came in by, answered through the ``Router``.

Both API modules parse their requests into a ``ChatCall`` and hand it here; what comes back
(a ``Reply`` or a stream of ``Chunk``s) they write in their own shapes. The rules:

* the alias (``semroute`` by default) is answered by the router: cache, verifier, classifier,
  tier pools;
* a tier's model name goes to that tier (through the cache unless ``cache_models`` is off);
* a call the cache cannot key honestly (a conversation with earlier turns, or a second user
  message) skips the cache and goes straight to a pool: the alias's default tier, or the named
  model's tier; a request's model options reach the model only on this path (cached answers
  ignore them), on top of the tier's default ``options`` key by key (a routed miss uses the
  tier's defaults alone: its answer is cached for everyone);
* any other model name is ``UnknownModel``.

Not here: HTTP, JSON shapes, authentication (``auth``), metrics (``observe``).
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidRequest
from ..redact import redact_url
from ..backends.groups import close_iterator, flatten, singletons
from ..model_options import merge_options
from ..router import Router
from ..types import Answer, Chunk, Completion, Message
from .settings import ServerSettings

__all__ = ["ChatCall", "Reply", "Gateway", "UnknownModel"]


class UnknownModel(InvalidRequest):
    """The request names a model the gateway does not serve."""

    def __init__(self, model: str) -> None:
        super().__init__(f'model "{model}" not found, try pulling it first')
        self.model = model


@dataclass(frozen=True, slots=True)
class ChatCall:
    """One parsed chat request: the model asked for, the conversation, and the tenant's namespace."""

    model: str
    messages: tuple[Message, ...]
    namespace: str | None = None
    options: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    """A complete answer and who gave it (what the ``X-Semroute-*`` headers say)."""

    text: str
    source: str
    model: str
    instance: str | None = None
    tier: str | None = None
    similarity: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    duration_s: float = 0.0
    timings_ms: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def of_answer(cls, answer: Answer, asked: str) -> Reply:
        return cls(answer.text, answer.source, answer.model or asked, answer.instance, answer.tier,
                   answer.similarity, answer.prompt_tokens, answer.completion_tokens, answer.latency_ms / 1000,
                   answer.timings_ms)

    def headers(self) -> dict[str, str]:
        """``X-Semroute-*`` plus a W3C ``Server-Timing`` header of the router's steps (embed,
        semantic, llm, ..., and total), which browsers' developer tools and tracing proxies display."""
        headers = headers_of(self.source, tier=self.tier, instance=self.instance, similarity=self.similarity,
                             model=self.model)
        steps = {**self.timings_ms, "total": self.duration_s * 1000}
        headers["server-timing"] = ", ".join(f"{_TOKEN.sub('-', name)};dur={ms:.3f}" for name, ms in steps.items())
        return headers

    @classmethod
    def of_completion(cls, completion: Completion, tier: str, started: float) -> Reply:
        return cls(completion.text, tier, completion.model, completion.instance, tier, None,
                   completion.prompt_tokens, completion.completion_tokens, time.perf_counter() - started)


# What Server-Timing's metric names may contain (an HTTP token); anything else becomes "-".
_TOKEN = re.compile(r"[^!#$%&'*+\-.^_`|~0-9A-Za-z]")


def headers_of(source: str, *, tier: str | None, instance: str | None, similarity: float | None,
               model: str | None) -> dict[str, str]:
    """The ``X-Semroute-*`` response headers: who answered, without touching either API's body."""
    headers = {"x-semroute-source": source}
    if tier:
        headers["x-semroute-tier"] = tier
    if instance:  # an instance name may be a URL with credentials; headers reach clients and proxies' logs
        headers["x-semroute-instance"] = redact_url(instance)
    if similarity is not None:
        headers["x-semroute-similarity"] = f"{similarity:.4f}"
    if model:
        headers["x-semroute-model"] = model
    return headers


def _question(messages: Sequence[Message]) -> tuple[str, str | None] | None:
    """(question, system) when the conversation is system prompts plus one user message, else None."""
    *head, last = messages
    if last.role != "user" or any(m.role != "system" for m in head):
        return None
    system = "\n\n".join(m.content for m in head) or None
    return last.content, system


class Gateway:
    """Routes ``ChatCall``s to the router or a pool; lists models; reports readiness."""

    def __init__(self, router: Router, settings: ServerSettings) -> None:
        self.router = router
        self.settings = settings

    # -- which way a call goes -------------------------------------------------------------------

    def tier_of(self, model: str) -> str | None:
        """The tier a model name selects: None for the alias; ``UnknownModel`` for anything else."""
        if model == self.settings.alias:
            return None
        for name, tier in self.router.tiers.items():
            if tier.model == model:
                return name
        raise UnknownModel(model)

    def _cached(self, call: ChatCall, tier: str | None) -> tuple[str, str | None] | None:
        if tier is not None and not self.settings.cache_models:
            return None
        return _question(call.messages)

    def _direct_tier(self, tier: str | None) -> str:
        return tier if tier is not None else self.router.settings.default_tier

    # -- answering -------------------------------------------------------------------------------

    async def answer(self, call: ChatCall) -> Reply:
        tier = self.tier_of(call.model)
        asked = self._cached(call, tier)
        if asked is not None:
            answer = await self.router.aask(asked[0], namespace=call.namespace, system=asked[1], tier=tier)
            return Reply.of_answer(answer, call.model)
        name = self._direct_tier(tier)
        started = time.perf_counter()
        pool = self.router.pipeline.pool(name)
        spec = self.router.tiers[name]
        completion = await pool.achat(spec.model, call.messages, options=merge_options(spec.options, call.options))
        return Reply.of_completion(completion, name, started)

    def stream(self, call: ChatCall) -> AsyncIterator[Chunk]:
        """Chunks of the answer, each with ``source`` set. Bad calls raise now, not at the first chunk."""
        return flatten(self.stream_groups(call))

    def stream_groups(self, call: ChatCall) -> AsyncIterator[Sequence[Chunk]]:
        """``stream``'s chunks in the groups that arrived together from the instance (a cached or
        routed answer comes one chunk per group): what the APIs write, one socket write a group."""
        tier = self.tier_of(call.model)
        asked = self._cached(call, tier)
        if asked is not None:
            return singletons(self.router.astream(asked[0], namespace=call.namespace, system=asked[1], tier=tier))
        name = self._direct_tier(tier)
        spec = self.router.tiers[name]
        groups = self.router.pipeline.pool(name).astream_groups(
            spec.model, call.messages, options=merge_options(spec.options, call.options))
        return _tagged(groups, name)

    async def embed(self, model: str, texts: Sequence[str]) -> list[list[float]]:
        """``/api/embed``: the named model's tier pool embeds (the alias uses the default tier)."""
        name = self._direct_tier(self.tier_of(model))
        return await self.router.pipeline.pool(name).aembed(self.router.tiers[name].model, texts)

    # -- what is served --------------------------------------------------------------------------

    def models(self) -> list[str]:
        """The alias, then each tier's model once."""
        return list(dict.fromkeys([self.settings.alias, *(t.model for t in self.router.tiers.values())]))

    def loaded(self) -> list[str]:
        """Tier models some instance has loaded in memory (as its health checks saw)."""
        out = []
        for name, tier in self.router.tiers.items():
            if any(s.model_loaded for s in self.router.pipeline.pool(name).states(tier.model)):
                out.append(tier.model)
        return list(dict.fromkeys(out))

    def load_cache(self) -> None:
        """Open the store and load the embedding model (blocking; the app runs it in a thread)."""
        self.router.pipeline.prepare()

    @property
    def cache_loaded(self) -> bool:
        return self.router.pipeline.ready

    def unready_tiers(self) -> list[str]:
        """Tiers without one healthy instance that has the tier's model."""
        return [
            name for name, tier in self.router.tiers.items()
            if not any(s.healthy and s.has_model for s in self.router.pipeline.pool(name).states(tier.model))
        ]


async def _tagged(groups: AsyncIterator[Sequence[Chunk]], tier: str) -> AsyncIterator[Sequence[Chunk]]:
    try:
        async for group in groups:
            yield [chunk.with_source(tier) for chunk in group]
    finally:
        await close_iterator(groups)
