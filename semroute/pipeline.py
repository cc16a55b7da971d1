"""The steps of one request, shared by the router's sync and async shells.

Each step is a method that either does no I/O (plan, decide, tier order) or exactly one
kind of I/O (cache lookup, embedding, storing), so ``Router`` can run the I/O steps inline
or in worker threads. Store failures fail open: the request goes on to the model and the
error is counted and logged.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from typing import TYPE_CHECKING

from .cache.base import Store
from .components import Components
from .embed import strict_similarity
from .errors import BackendError, ConfigError, InvalidRequest, ModelError, NoInstanceAvailable, StoreError
from .hits.consensus import AnswerConsensus, served_by
from .hits.judge import GreyZone
from .hits.verify import SimilarityGate, ThresholdVerifier, Verifier
from .cache.memory import check_tags
from .request import exact_key, normalise, policy_fingerprint, scope_of, validate_namespace, validate_question
from .routing.classify import ComplexityClassifier, decide
from .shared import RedisParts
from .settings import JudgeSettings, RouterSettings, Tier
from .types import Answer, CacheEntry, Candidate, Completion, Decision, Hit, Message, Verdict

if TYPE_CHECKING:
    from .backends.pool import Pool
    from .hits.lookup import SemanticCache

__all__ = ["Plan", "Pipeline"]

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
    """Owns the router's parts (cache, embedder, classifier, pools) and runs the steps."""

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
        self._classifier = parts.classifier
        self.settings = settings
        self.metrics = parts.metrics
        self.clock = parts.clock
        self._store: Store | None = parts.store
        self._cache: SemanticCache | None = None
        self._pools: dict[str, Pool] = {}
        # Store, pool limiters and flight shared with other processes through one Redis, if asked.
        self.shared = None if parts.redis_url is None else RedisParts(parts.redis_url)
        self._store_down = False
        self._snapshot: Path | None = None  # where the default embedded cache saves its index
        self._lock = threading.Lock()
        self._models = {name: tier.model for name, tier in self.tiers.items()}
        # The policy fingerprint depends only on the system prompt here: memoise it off the hot path.
        self._policy = functools.lru_cache(maxsize=1024)(self._policy_for)
        self._grey = None if settings.cache.judge is None else self._grey_zone(settings.cache.judge)

    # -- parts, built on first use (constructors do no I/O) -----------------------------

    @property
    def ready(self) -> bool:
        """True once the cache (store, index, embedder dimension) has been built."""
        return self._cache is not None

    def prepare(self) -> None:
        """Build the cache now (it loads the store and the embedding model); idempotent."""
        self.cache  # noqa: B018 - the property builds it

    @property
    def cache(self) -> SemanticCache:
        if self._cache is None:
            with self._lock:
                if self._cache is None:
                    self._cache = self._build_cache()
        return self._cache

    def _build_cache(self) -> SemanticCache:
        from .cache import FaissIndex, MemoryStore
        from .hits import SemanticCache

        store = self._store
        if store is None and self.shared is not None:
            store = self._store = self.shared.store(max_entries=self.settings.cache.max_entries, clock=self.clock,
                                                    vector_dtype=self.settings.cache.vectors)
        snapshot = None
        if store is None:
            directory = self._default_dir()
            store = MemoryStore(directory, max_entries=self.settings.cache.max_entries, clock=self.clock,
                                vector_dtype=self.settings.cache.vectors)
            self._store = store
            # The index is saved next to the journal on close (with the feed position it reflects),
            # so a restart loads it instead of rebuilding HNSW from every entry (minutes at 1M).
            snapshot = directory / f"index-{self.embedder.name.replace('/', '_')}-{self.embedder.dim}"
        index = FaissIndex(self.embedder.dim, kind=self.settings.cache.index, storage=self.settings.cache.vectors)
        inner = self.parts.verifier or self._default_verifier()
        verifier = SimilarityGate(self.settings.cache.min_similarity, inner)
        cache = SemanticCache(store, index, verifier, top_k=self.settings.cache.top_k, clock=self.clock,
                              consensus=self._default_consensus(inner))
        if snapshot is not None:
            self._snapshot = snapshot
            cache.replica.load(snapshot)
        return cache

    def _default_consensus(self, verifier: Verifier) -> AnswerConsensus | None:
        """The shipped answer consensus, over the pair model's probability; None when off or unusable."""
        if not self.settings.cache.consensus:
            return None
        try:
            return AnswerConsensus.over(verifier, embedder=self.embedder.name, dim=self.embedder.dim,
                                        threshold=self.settings.cache.consensus_threshold)
        except ModelError as exc:
            self.metrics.incr("consensus.unavailable")
            log.warning("shipped answer consensus unusable (%s); the pair verifier decides alone", exc)
            return None

    def _default_verifier(self) -> Verifier:
        from .hits.verify import PairVerifier

        try:
            return PairVerifier.default(embedder=self.embedder.name, dim=self.embedder.dim)
        except ModelError as exc:
            self.metrics.incr("verifier.unavailable")
            floor = max(strict_similarity(self.embedder), self.settings.cache.min_similarity)
            log.warning("shipped pair verifier unusable (%s); semantic hits need cosine >= %s", exc, floor)
            return ThresholdVerifier(floor)

    def _grey_zone(self, judge: JudgeSettings) -> GreyZone:
        if judge.tier not in self.tiers:
            raise ConfigError(f"judge tier {judge.tier!r} is not among the tiers {sorted(self.tiers)}")
        return GreyZone(judge, model=judge.model or self.tiers[judge.tier].model, metrics=self.metrics,
                        pool=functools.partial(self.pool, judge.tier), verifier=lambda: self.cache.verifier)

    def _default_dir(self) -> Path:
        if self.parts.data_dir is not None:
            return self.parts.data_dir
        import platformdirs

        return Path(platformdirs.user_cache_dir("semroute"))

    @property
    def classifier(self) -> ComplexityClassifier:
        """The caller's classifier, else the shipped one (loaded on first miss)."""
        if self._classifier is None:
            with self._lock:
                if self._classifier is None:
                    self._classifier = self._default_classifier()
        return self._classifier

    def _default_classifier(self) -> ComplexityClassifier:
        from .routing.classify import FixedTier, load_default_classifier

        if len(self.tiers) < 2:
            return FixedTier(self.settings.default_tier)
        try:
            return load_default_classifier(self.embedder)
        except ModelError as exc:
            self.metrics.incr("classifier.unavailable")
            log.warning("shipped complexity classifier unusable (%s); every miss goes to %r", exc,
                        self.settings.default_tier)
            return FixedTier(self.settings.default_tier)

    def pool(self, tier: str) -> Pool:
        pool = self._pools.get(tier)
        if pool is None:
            with self._lock:
                pool = self._pools.get(tier)
                if pool is None:
                    pool = self._pools[tier] = self._build_pool(tier, self.tiers[tier])
        return pool

    def _build_pool(self, name: str, tier: Tier) -> Pool:
        from .backends.pool import Instance, Pool

        factory = self.parts.backends()
        instances = [Instance(factory(host, timeout=tier.timeout), limit=tier.limit) for host in tier.hosts]
        limiter = None if self.shared is None else self.shared.limiter(name)  # slots shared by every process
        return Pool(instances, strategy=tier.strategy, settings=tier.pool, metrics=self.metrics, limiter=limiter)

    # -- steps ------------------------------------------------------------------------------

    def plan(self, question: object, *, namespace: str | None, system: str | None, tier: str | None) -> Plan:
        started = time.perf_counter()
        text = validate_question(question, max_chars=self.settings.max_question_chars)
        ns = self.namespace if namespace is None else validate_namespace(namespace)
        if system is not None:
            system = validate_question(system, max_chars=self.settings.max_question_chars * 4)
        if tier is not None and (not isinstance(tier, str) or str.__str__(tier) not in self.tiers):
            raise InvalidRequest(f"tier {tier!r} is not configured; tiers are {sorted(self.tiers)}")
        tier = None if tier is None else str.__str__(tier)
        scope = scope_of(ns, self._policy(system))
        messages = ((Message("system", system),) if system else ()) + (Message("user", text),)
        return Plan(text, ns, system, scope, exact_key(scope, normalise(text)), messages, tier, started)

    def exact(self, plan: Plan) -> Answer | None:
        try:
            self.cache.sync()
            hit = self.cache.exact(plan.key, self.clock())
        except StoreError as exc:
            self._store_failed("lookup", exc)
            return None
        if self._store_down:
            self._store_down = False
            log.warning("cache store is answering again")
        return None if hit is None else self._hit_answer(plan, hit)

    def embed(self, plan: Plan) -> np.ndarray:
        t0 = time.perf_counter()
        vector = self.embedder.embed([plan.question])[0]
        plan.timings["embed"] = elapsed = (time.perf_counter() - t0) * 1000
        self.metrics.observe("step.embed", elapsed)
        return vector

    def semantic(self, plan: Plan, vector: np.ndarray) -> Answer | None:
        t0 = time.perf_counter()
        try:
            hit, judged = self.cache.semantic(plan.question, vector, plan.scope, self.clock())
        except StoreError as exc:
            self._store_failed("lookup", exc)
            return None
        plan.timings["semantic"] = elapsed = (time.perf_counter() - t0) * 1000
        self.metrics.observe("step.semantic_lookup", elapsed)
        self.metrics.incr("verifier.judged", len(judged))
        self.metrics.incr("verifier.rejected", sum(1 for _, v in judged if not v.accepted))
        path = None if hit is None else served_by(hit)
        if path == "consensus":
            self.metrics.incr("consensus.hits")
        elif path == "confident_gate":
            self.metrics.incr("verifier.confident_hits")
        elif hit is None and any(v.accepted for _, v in judged):
            self.metrics.incr("consensus.vetoes")  # a verified candidate whose answer the neighbours outvoted
        if hit is None:
            plan.rejected.extend(judged)
        return None if hit is None else self._hit_answer(plan, hit)

    def judge(self, plan: Plan) -> Answer | None:
        """The grey-zone check (off by default): a model's cached yes/no on the best rejected candidate."""
        hit = None if self._grey is None else self._grey.run(plan.question, plan.rejected, plan.timings)
        return None if hit is None else self._hit_answer(plan, hit)

    async def ajudge(self, plan: Plan) -> Answer | None:
        hit = None if self._grey is None else await self._grey.arun(plan.question, plan.rejected, plan.timings)
        return None if hit is None else self._hit_answer(plan, hit)

    def decide(self, plan: Plan, vector: np.ndarray) -> Decision:
        if plan.tier is not None:
            return Decision(tier=plan.tier, probability=None, reason="tier chosen by the caller")
        decision = decide(self.classifier, vector, plan.question)
        if decision.tier not in self.tiers:
            return Decision(self.settings.default_tier, decision.probability, f"{decision.reason}; tier missing")
        return decision

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
        self, plan: Plan, vector: np.ndarray, decision: Decision, tier: str, completion: Completion
    ) -> Answer:
        """Store a complete answer (when it is non-empty) and build the caller's ``Answer``."""
        entry_id = None
        if completion.text.strip():
            entry = self._entry(plan, vector, completion.text, model=completion.model, tier=tier)
            t0 = time.perf_counter()
            try:
                self.cache.insert([entry])
                entry_id = entry.id
            except StoreError as exc:
                self._store_failed("insert", exc)
            plan.timings["store"] = (time.perf_counter() - t0) * 1000
        else:
            self.metrics.incr("answers.empty_not_stored")
        if tier != decision.tier:
            self.metrics.incr("answers.fallback")
        self.metrics.incr("tokens.prompt", completion.prompt_tokens)
        self.metrics.incr("tokens.completion", completion.completion_tokens)
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
            ),
        )

    def follower_answer(self, plan: Plan, answer: Answer) -> Answer:
        """A coalesced caller gets the leader's answer with its own latency."""
        self.metrics.incr("requests.coalesced")
        return self._finish(plan, answer)

    def warm(
        self,
        pairs: Iterable[tuple[str, str]],
        *,
        namespace: str | None,
        system: str | None,
        batch_size: int,
        progress: Callable[[int], None] | None,
        ttl_s: float | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> int:
        if ttl_s is not None and (isinstance(ttl_s, bool) or not isinstance(ttl_s, int | float) or not ttl_s > 0):
            raise InvalidRequest(f"ttl_s must be positive (math.inf: never expire), got {ttl_s!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidRequest(f"batch_size must be an int >= 1, got {batch_size!r}")
        if isinstance(pairs, (str, bytes)) or not isinstance(pairs, Iterable):
            raise InvalidRequest(f"pairs must be an iterable of (question, answer), got {type(pairs).__name__}")
        if tags is not None and not isinstance(tags, Mapping):
            raise InvalidRequest(f"tags must be a mapping of name to value, got {tags!r}")
        tag_pairs = tuple(sorted(check_tags((tags or {}).items())))
        items = list(pairs)
        plans = []
        for i, pair in enumerate(items):
            if not isinstance(pair, tuple | list) or len(pair) != 2:
                raise InvalidRequest(f"pair {i} must be (question, answer), got {pair!r}")
            plans.append(self.plan(pair[0], namespace=namespace, system=system, tier=None))
            try:
                validate_question(pair[1], max_chars=1_000_000)
            except InvalidRequest as exc:
                raise InvalidRequest(f"answer of pair {i}: {exc}".replace("question", "text")) from exc
        stored = 0
        for start in range(0, len(plans), batch_size):
            batch = plans[start : start + batch_size]
            vectors = self.embedder.embed([p.question for p in batch])
            entries = [
                self._entry(plan, vector, items[start + j][1], model="", tier="", ttl_s=ttl_s, tags=tag_pairs)
                for j, (plan, vector) in enumerate(zip(batch, vectors))
            ]
            self.cache.insert(entries)
            stored += len(entries)
            if progress is not None:
                progress(len(entries))
        self.metrics.incr("cache.warmed", stored)
        return stored

    def invalidate(self, *, ids: Iterable[str], namespace: str | None, where: Mapping[str, str] | None) -> int:
        if isinstance(ids, str):
            raise InvalidRequest("ids must be an iterable of entry ids, not a single string")
        ids = list(ids)
        if not ids and namespace is None and not where:
            raise InvalidRequest("say what to invalidate: ids, namespace and/or where tags")
        removed = self.cache.delete(ids) if ids else 0
        if namespace is not None or where:
            removed += self.cache.store.invalidate(namespace=namespace, where=where or None)
            self.cache.sync()
        self.metrics.incr("cache.invalidated", removed)
        return removed

    def close(self) -> None:
        if self._grey is not None:
            self._grey.close()
        for pool in self._pools.values():
            pool.close()
        if self._snapshot is not None and self._cache is not None:
            try:
                self._cache.replica.save(self._snapshot)
            except (OSError, RuntimeError) as exc:  # the next start rebuilds the index: slower, still correct
                log.warning("could not save the cache index snapshot: %s", exc)
        if self._store is not None:
            self._store.close()
        if self.shared is not None:
            self.shared.close()

    # -- helpers ------------------------------------------------------------------------------

    def _policy_for(self, system: str | None) -> str:
        return policy_fingerprint(models=self._models, system=system, embedder=self.embedder.name)

    def _entry(
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

    def _hit_answer(self, plan: Plan, hit: Hit) -> Answer:
        entry = hit.entry
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
        )
        return self._finish(plan, answer)

    def _finish(self, plan: Plan, answer: Answer) -> Answer:
        latency = (time.perf_counter() - plan.started) * 1000
        self.metrics.incr(f"answers.{answer.source}")
        self.metrics.observe(f"latency.{answer.source}", latency)
        return replace(answer, latency_ms=latency, timings_ms=tuple(plan.timings.items()))

    def _store_failed(self, what: str, exc: StoreError) -> None:
        self.metrics.incr(f"store.errors.{what}")
        if not self._store_down:  # once per outage: a down store must not flood the log
            self._store_down = True
            log.error("cache store %s failed, answering without the cache until it is back: %s", what, exc)

