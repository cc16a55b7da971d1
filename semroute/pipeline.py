"""The steps of one request, shared by the router's sync and async shells.

Each step is a method that either does no I/O (plan, decide, tier order) or exactly one
kind of I/O (store read, embedding + semantic lookup, storing), so ``Router`` runs the I/O
steps inline in ``ask`` and in worker threads in ``aask``. Store failures fail open: the
request goes on to the model and the error is counted and logged. The parts the steps use
are built on first use by ``Assembly`` (an exact hit opens the store, never the embedder).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from .assembly import Assembly
from .cache.base import Store
from .components import Components
from .embed import AsyncEmbedder
from .errors import BackendError, ConfigError, InvalidRequest, NoInstanceAvailable, StoreError
from .hits.consensus import served_by
from .hits.language import LANGUAGE_REFUSAL
from .request import exact_key, normalise, policy_fingerprint, scope_of, validate_namespace, validate_question
from .routing.classify import ComplexityClassifier, FixedTier, LogisticComplexityClassifier, decide
from .savings import AnswerTokens
from .settings import RouterSettings, Tier
from .types import Answer, CacheEntry, Candidate, Completion, Decision, Hit, Message, Verdict
from .warming import WarmOptions, WarmReport, warm_rows
from .write_behind import WriteBehind

if TYPE_CHECKING:
    from .backends.pool import Pool
    from .hits.lookup import SemanticCache

__all__ = ["Plan", "Pipeline"]

_INLINE_CLASSIFIERS = (FixedTier, LogisticComplexityClassifier)
log = logging.getLogger("semroute")

TIERS = ("small", "large")


@dataclass(frozen=True, slots=True)
class Plan:
    """A validated request: its text, scope, exact key and the messages a model would get."""

    question: str
    namespace: str
    system: str | None
    scope: str
    key: str
    messages: tuple[Message, ...]
    tier: str | None
    started: float
    # Per-step milliseconds of this request (embed, semantic, llm, store); filled as steps run.
    timings: dict[str, float] = field(default_factory=dict, compare=False)
    # The verifier's verdicts on a semantic miss: what the grey-zone judge may look at.
    rejected: list[tuple[Candidate, Verdict]] = field(default_factory=list, compare=False)


class Pipeline:
    """Runs the steps of one request over the router's parts (built lazily by ``Assembly``)."""

    def __init__(
        self, parts: Components, *, tiers: Mapping[str, Tier], settings: RouterSettings, namespace: str = "default"
    ) -> None:
        unknown = set(tiers) - set(TIERS)
        if unknown or not tiers:
            raise ConfigError(f"tiers must be named among {TIERS}, got {sorted(tiers)}")
        if settings.default_tier not in tiers:
            raise ConfigError(f"default tier {settings.default_tier!r} is not among the tiers {sorted(tiers)}")
        self.parts = parts
        self.tiers = dict(tiers)
        self.namespace = validate_namespace(namespace)
        self.embedder = parts.embedder
        # Decided once: a runtime Protocol check costs tens of microseconds, and every aask asks.
        self._async_embedder = parts.embedder if isinstance(parts.embedder, AsyncEmbedder) else None
        self.settings = settings
        self.metrics = parts.metrics
        self.clock = parts.clock
        self.assembly = Assembly(parts, tiers=self.tiers, settings=settings)
        self.shared = self.assembly.shared  # Redis parts (store, limiters, flight), or None
        self._store_down = False  # logged once per outage, and once when the store answers again
        self._models = {name: tier.model for name, tier in self.tiers.items()}
        # The policy fingerprint depends only on the system prompt here: memoise it off the hot path.
        self._policy = functools.lru_cache(maxsize=1024)(self._policy_for)
        self._embedded = False  # the first embedding loads the model: that request is a cold one
        self.answer_tokens = AnswerTokens()  # what each answer generated here cost: tokens a hit avoids
        self.behind = WriteBehind(self._write, self._write_failed)  # new answers, stored off the caller's path

    # -- parts (see ``Assembly``) ----------------------------------------------------------

    @property
    def ready(self) -> bool:
        """True once the semantic tier (store, index, verifier, consensus) has been built."""
        return self.assembly.cache_built

    def prepare(self) -> None:
        """Build the store and the semantic tier now (loads the embedding model); idempotent."""
        self.assembly.cache  # noqa: B018 - the property builds it

    @property
    def store(self) -> Store:
        return self.assembly.store

    @property
    def cache(self) -> SemanticCache:
        return self.assembly.cache

    @property
    def classifier(self) -> ComplexityClassifier:
        return self.assembly.classifier

    def pool(self, tier: str) -> Pool:
        return self.assembly.pool(tier)

    # -- steps ------------------------------------------------------------------------------

    def plan(self, question: object, *, namespace: str | None, system: str | None, tier: str | None) -> Plan:
        started = time.perf_counter()
        text = _text("question", question, max_chars=self.settings.max_question_chars)
        ns = self.namespace if namespace is None else validate_namespace(namespace)
        if system is not None:
            system = _text("system prompt", system, max_chars=self.settings.max_question_chars * 4)
        if tier is not None and (not isinstance(tier, str) or str.__str__(tier) not in self.tiers):
            raise InvalidRequest(f"tier {tier!r} is not configured; tiers are {sorted(self.tiers)}")
        tier = None if tier is None else str.__str__(tier)
        scope = scope_of(ns, self._policy(system))
        messages = ((Message("system", system),) if system else ()) + (Message("user", text),)
        return Plan(text, ns, system, scope, exact_key(scope, normalise(text)), messages, tier, started)

    def exact(self, plan: Plan) -> Answer | None:
        """The exact tier: one store read by key. Opens the store on first use, never the embedder."""
        t0 = time.perf_counter()
        opening = not self.assembly.store_open
        try:
            store = self.assembly.store
            if opening:
                plan.timings["open"] = (time.perf_counter() - t0) * 1000
            entry = self.behind.pending(plan.key) or store.get_by_key(plan.key, now=self.clock())
        except StoreError as exc:
            self._store_failed("lookup", exc)
            return None
        if self._store_down:
            self._store_down = False
            log.warning("cache store is answering again")
        if entry is None:
            return None
        return self._hit_answer(plan, Hit(entry=entry, source="exact", similarity=1.0))

    def lookup(self, plan: Plan) -> tuple[np.ndarray, Answer | None]:
        """Embed the question, then the semantic tier: the vector (reused on a miss) and a hit or None."""
        vector = self.embed(plan)
        return vector, self.semantic(plan, vector)

    def embed(self, plan: Plan) -> np.ndarray:
        t0 = time.perf_counter()
        return self._embedded_in(plan, t0, self.embedder.embed([plan.question])[0])

    @property
    def embeds_async(self) -> bool:
        """Whether the embedder takes calls from event loops itself (an ``AsyncEmbedder``)."""
        return self._async_embedder is not None

    async def aembed(self, plan: Plan) -> np.ndarray:
        """``embed`` for event loops, through the embedder's ``aembed`` (only when ``embeds_async``:
        otherwise ``Router.aask`` embeds in its worker thread with the rest of the lookup)."""
        assert self._async_embedder is not None, "aembed needs an AsyncEmbedder (see embeds_async)"
        t0 = time.perf_counter()
        return self._embedded_in(plan, t0, (await self._async_embedder.aembed([plan.question]))[0])

    def _embedded_in(self, plan: Plan, t0: float, vector: np.ndarray) -> np.ndarray:
        plan.timings["embed"] = elapsed = (time.perf_counter() - t0) * 1000
        if self._embedded:
            self.metrics.observe("step.embed", elapsed)
        else:  # the first call loads the model: not a sample of embedding latency
            self._embedded = True
        return vector

    @property
    def looks_up_in_place(self) -> bool:
        """Whether lookups may run in the caller's thread, even an event loop's (``exact_if_free``):
        the cache is built over in-memory parts (``SemanticCache.holdable``) and the embedder takes
        loop calls itself (``embeds_async``). Otherwise one worker thread does all of a lookup."""
        return self.assembly.cache_built and self.embeds_async and self.assembly.cache.holdable

    def exact_if_free(self, plan: Plan) -> tuple[bool, Answer | None]:
        """``exact`` in this thread if nothing it touches can make it wait (``SemanticCache.try_hold``):
        (whether it ran, its answer). Not before the cache is built: building it loads the model."""
        return self._in_place(self.exact, plan)

    def semantic_if_free(self, plan: Plan, vector: np.ndarray) -> tuple[bool, Answer | None]:
        """``semantic`` in this thread on the same terms as ``exact_if_free``."""
        return self._in_place(self.semantic, plan, vector)

    def _in_place(self, step: Callable[..., Answer | None], *args: object) -> tuple[bool, Answer | None]:
        cache = self.assembly.cache if self.assembly.cache_built else None
        if cache is None or not cache.try_hold():
            return False, None
        try:
            return True, step(*args)
        finally:
            if cache.release_hold():  # expired entries the reads left in place: purged off this thread
                self.behind.housekeep(lambda: self._purge(cache.store))

    def _purge(self, store: Store) -> None:
        try:
            self.metrics.incr("cache.expired_purged", store.purge_expired(self.clock()))  # type: ignore[attr-defined]
        except StoreError as exc:
            self._store_failed("purge", exc)

    def semantic(self, plan: Plan, vector: np.ndarray) -> Answer | None:
        t0 = time.perf_counter()
        building = not self.assembly.cache_built
        try:
            cache = self.assembly.cache
            if building:  # the index, verifier and consensus are built once: start-up, not lookup
                t1 = time.perf_counter()
                plan.timings["open"] = plan.timings.get("open", 0.0) + (t1 - t0) * 1000
                t0 = t1
            cache.sync()
            hit, judged = cache.semantic(plan.question, vector, plan.scope, self.clock())
        except StoreError as exc:
            self._store_failed("lookup", exc)
            return None
        plan.timings["semantic"] = elapsed = (time.perf_counter() - t0) * 1000
        self.metrics.observe("step.semantic_lookup", elapsed)
        self._count_verdicts(hit, judged)
        if hit is None:
            plan.rejected.extend(judged)
            return None
        return self._hit_answer(plan, hit, nearest=max([hit.similarity, *(c.similarity for c, _ in judged)]))

    def _count_verdicts(self, hit: Hit | None, judged: list[tuple[Candidate, Verdict]]) -> None:
        self.metrics.incr("verifier.judged", len(judged))
        self.metrics.incr("verifier.rejected", sum(1 for _, v in judged if not v.accepted))
        self.metrics.incr("verifier.language_refused", sum(1 for _, v in judged if v.reason.startswith(LANGUAGE_REFUSAL)))
        path = None if hit is None else served_by(hit)
        if path == "consensus":
            self.metrics.incr("consensus.hits")
        elif path == "confident_gate":
            self.metrics.incr("verifier.confident_hits")
        elif hit is None and any(v.accepted for _, v in judged):
            self.metrics.incr("consensus.vetoes")  # a verified candidate whose answer the neighbours outvoted

    def judge(self, plan: Plan) -> Answer | None:
        """The grey-zone check (off by default): a model's cached yes/no on the best rejected candidate."""
        grey = self.assembly.grey
        hit = None if grey is None else grey.run(plan.question, plan.rejected, plan.timings)
        return None if hit is None else self._hit_answer(plan, hit)

    async def ajudge(self, plan: Plan) -> Answer | None:
        grey = self.assembly.grey
        hit = None if grey is None else await grey.arun(plan.question, plan.rejected, plan.timings)
        return None if hit is None else self._hit_answer(plan, hit)

    def decide(self, plan: Plan, vector: np.ndarray) -> Decision:
        if plan.tier is not None:
            return Decision(tier=plan.tier, probability=None, reason="tier chosen by the caller")
        decision = decide(self.classifier, vector, plan.question)
        if decision.tier not in self.tiers:
            return Decision(self.settings.default_tier, decision.probability, f"{decision.reason}; tier missing")
        return decision

    async def adecide(self, plan: Plan, vector: np.ndarray) -> Decision:
        """``decide`` for event loops: inline when it is arithmetic on data in memory (the caller
        named the tier, or a built-in classifier is loaded: ~70 µs, less than a thread hop), in a
        thread while it may load the classifier or run a caller's own (which may do anything)."""
        if plan.tier is not None or isinstance(self.assembly.classifier_loaded, _INLINE_CLASSIFIERS):
            return self.decide(plan, vector)
        return await asyncio.to_thread(self.decide, plan, vector)

    def tier_order(self, first: str) -> list[str]:
        """The chosen tier, then (with fallback "other-tier") the others."""
        if self.settings.fallback == "raise":
            return [first]
        return [first] + [t for t in TIERS if t != first and t in self.tiers]

    def llm_done(self, plan: Plan, started: float) -> None:
        """Record how long the model call took (``started`` from ``time.perf_counter()``)."""
        plan.timings["llm"] = elapsed = (time.perf_counter() - started) * 1000
        self.metrics.observe("step.llm", elapsed)

    def tier_failed(self, tier: str, exc: BackendError | NoInstanceAvailable) -> Exception:
        self.metrics.incr(f"tier.{tier}.failed")
        self.metrics.incr("tier.fallback")
        log.warning("tier %s failed (%s); trying the next tier if any", tier, exc)
        return exc

    def complete(
        self, plan: Plan, vector: np.ndarray, decision: Decision, tier: str, completion: Completion, *,
        later: bool = False,
    ) -> Answer:
        """Store a complete answer (when it is non-empty) and build the caller's ``Answer``;
        ``later``: the write lands after this returns (``WriteBehind``: the event loop's callers)."""
        entry_id = None
        if completion.text.strip():
            entry = self.new_entry(plan, vector, completion.text, model=completion.model, tier=tier)
            if later:
                self.answer_tokens.remember(entry.id, entry.answer, completion.completion_tokens)
                self.behind.submit(entry)
                entry_id = entry.id
            else:
                t0 = time.perf_counter()
                try:
                    self._write(entry)
                    entry_id = entry.id
                    self.answer_tokens.remember(entry.id, entry.answer, completion.completion_tokens)
                except StoreError as exc:
                    self._store_failed("insert", exc)
                plan.timings["store"] = (time.perf_counter() - t0) * 1000
        else:
            self.metrics.incr("answers.empty_not_stored")
        if tier != decision.tier:
            self.metrics.incr("answers.fallback")
        # the nearest cached question the verifier refused: why this was a miss
        nearest = max(plan.rejected, key=lambda pair: pair[0].similarity, default=None)
        self.metrics.incr(f"tier.{tier}.answered")
        for name, tokens in (("prompt", completion.prompt_tokens), ("completion", completion.completion_tokens)):
            self.metrics.incr(f"tokens.{name}", tokens)
            self.metrics.incr(f"tokens.{name}.{tier}", tokens)
        return self._finish(
            plan,
            Answer(
                text=completion.text,
                source=tier,  # type: ignore[arg-type]
                latency_ms=0.0,
                tier=tier,
                model=completion.model,
                instance=completion.instance,
                probability=decision.probability,
                entry_id=entry_id,
                prompt_tokens=completion.prompt_tokens,
                completion_tokens=completion.completion_tokens,
                verdict=None if nearest is None else nearest[1],
                nearest_similarity=None if nearest is None else nearest[0].similarity,
            ),
        )

    def follower_answer(self, plan: Plan, answer: Answer) -> Answer:
        """A coalesced caller gets the leader's answer with its own latency."""
        return self._finish(plan, answer)

    def warm(self, rows: Iterable[object], options: WarmOptions, progress: Callable[[int], None] | None) -> WarmReport:
        """Store known question/answer rows (see ``semroute.warming``)."""
        return warm_rows(self, rows, options, progress)

    def invalidate(self, *, ids: Iterable[str], namespace: str | None, where: Mapping[str, str] | None) -> int:
        if isinstance(ids, str):
            raise InvalidRequest("ids must be an iterable of entry ids, not a single string")
        ids = list(ids)
        if not ids and namespace is None and not where:
            raise InvalidRequest("say what to invalidate: ids, namespace and/or where tags")
        self.behind.flush()  # an answer still being written must not land after its invalidation
        removed = self.cache.delete(ids) if ids else 0
        if namespace is not None or where:
            removed += self.cache.store.invalidate(namespace=namespace, where=where or None)
            self.cache.sync()
        self.metrics.incr("cache.invalidated", removed)
        return removed

    def close(self) -> None:
        self.behind.close()  # the answers still being written, before the store closes
        self.assembly.close()

    def _write(self, entry: CacheEntry) -> None:
        t0 = time.perf_counter()
        self.cache.insert([entry])
        self.metrics.observe("step.store", (time.perf_counter() - t0) * 1000)

    def _write_failed(self, entry: CacheEntry, exc: Exception) -> None:
        if isinstance(exc, StoreError):
            self._store_failed("insert", exc)
        else:
            self.metrics.incr("store.errors.insert")
            log.error("storing the answer to %r failed", entry.question[:80], exc_info=exc)

    # -- helpers ------------------------------------------------------------------------------

    def _policy_for(self, system: str | None) -> str:
        return policy_fingerprint(models=self._models, system=system, embedder=self.embedder.name)

    def new_entry(
        self, plan: Plan, vector: np.ndarray, answer: str, *, model: str, tier: str, ttl_s: float | None = None,
        tags: tuple[tuple[str, str], ...] = (),
    ) -> CacheEntry:
        now = self.clock()
        ttl = self.settings.cache.ttl_s if ttl_s is None else ttl_s
        if ttl is not None and math.isinf(ttl):
            ttl = None
        return CacheEntry(
            id=uuid.uuid4().hex,
            key=plan.key,
            scope=plan.scope,
            namespace=plan.namespace,
            question=plan.question,
            answer=answer,
            vector=np.asarray(vector, dtype=np.float32),
            created_at=now,
            expires_at=None if ttl is None else now + ttl,
            model=model,
            tier=tier,
            embedder=self.embedder.name,
            tags=tags,
        )

    def _hit_answer(self, plan: Plan, hit: Hit, *, nearest: float | None = None) -> Answer:
        entry = hit.entry
        tokens, estimated = self.answer_tokens.of(entry.id, entry.answer)
        self.metrics.incr("tokens.avoided", tokens)
        self.metrics.incr(f"tokens.avoided.{hit.source}", tokens)
        if estimated:
            self.metrics.incr("tokens.avoided_estimated", tokens)
        answer = Answer(
            text=entry.answer,
            source=hit.source,
            latency_ms=0.0,
            similarity=hit.similarity,
            tier=entry.tier or None,
            model=entry.model or None,
            cached_question=entry.question,
            entry_id=entry.id,
            verdict=hit.verdict,
            nearest_similarity=max([hit.similarity, *(c.similarity for c, _ in plan.rejected),
                                    *(() if nearest is None else (nearest,))]),
        )
        return self._finish(plan, answer)

    def _finish(self, plan: Plan, answer: Answer) -> Answer:
        latency = (time.perf_counter() - plan.started) * 1000
        self.metrics.incr(f"answers.{answer.source}")
        # A request that opened the store or loaded a model measures the start-up, not its tier.
        cold = "open" in plan.timings
        self.metrics.observe("latency.cold_start" if cold else f"latency.{answer.source}", latency)
        return replace(answer, latency_ms=latency, timings_ms=plan.timings)

    def _store_failed(self, what: str, exc: StoreError) -> None:
        self.metrics.incr(f"store.errors.{what}")
        if not self._store_down:  # once per outage: a down store must not flood the log
            self._store_down = True
            log.error("cache store %s failed, answering without the cache until it is back: %s", what, exc)


def _text(what: str, value: object, *, max_chars: int) -> str:
    """``validate_question`` for any text field, with the error naming ``what`` it checked."""
    try:
        return validate_question(value, max_chars=max_chars)
    except InvalidRequest as exc:
        message = str(exc)
        if message.startswith("question"):
            message = what + message[len("question"):]
        raise InvalidRequest(message) from None
