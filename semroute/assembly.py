"""``Assembly``: a router's parts, each built on first use from ``Components`` and settings.

Constructing a router does no I/O; the parts come into being when a request first needs them,
each in its own step so that the cheap path never pays for the expensive one:

    store      first lookup          (opens the journal, or Redis; no embedding model)
    cache      first semantic lookup (index of the embedder's dimension, loaded from its snapshot
                                      when there is one, verifier, consensus)
    classifier first miss            (the shipped model for the embedder, or FixedTier)
    pools      first call to a tier  (one backend per host, with the tier's Timeout and PoolSettings,
                                      and the Redis limiter when ``redis_url`` is set)

An exact hit therefore never loads the embedding model. A shipped model that does not fit the
embedder is logged and counted (``verifier.unavailable`` ...) and a simpler part stands in.
This module builds; it runs no request step (that is ``pipeline``).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from .cache.base import Store
from .components import Components
from .embed import strict_similarity
from .errors import ConfigError, ModelError
from .hits.consensus import AnswerConsensus
from .hits.judge import GreyZone
from .hits.language import LanguageGuard
from .hits.verify import SimilarityGate, ThresholdVerifier, Verifier
from .routing.classify import ComplexityClassifier
from .settings import JudgeSettings, RouterSettings, Tier
from .shared import RedisParts

if TYPE_CHECKING:
    from .backends.pool import Pool
    from .hits.lookup import SemanticCache

__all__ = ["Assembly"]

log = logging.getLogger("semroute")


class Assembly:
    """The store, cache, classifier, pools and grey-zone judge of one router, built lazily."""

    def __init__(self, parts: Components, *, tiers: Mapping[str, Tier], settings: RouterSettings) -> None:
        self.parts = parts
        self.tiers = dict(tiers)
        self.settings = settings
        self.metrics = parts.metrics
        self._store: Store | None = parts.store
        self._cache: SemanticCache | None = None
        self._classifier: ComplexityClassifier | None = parts.classifier
        self._pools: dict[str, Pool] = {}
        self._lock = threading.RLock()  # the cache is built inside ``store``'s first use
        # Store, pool limiters and flight shared with other processes through one Redis, if asked.
        # Building RedisParts does no I/O (the client connects on its first command).
        self.shared: RedisParts | None = None if parts.redis_url is None else RedisParts(parts.redis_url)
        # Where the default embedded store lives: its index snapshot is saved next to the journal.
        self._default_store_dir: Path | None = None
        self._snapshot: Path | None = None
        judge = settings.cache.judge
        self.grey: GreyZone | None = None if judge is None else self._grey_zone(judge)

    @property
    def store_open(self) -> bool:
        return self._store is not None

    @property
    def cache_built(self) -> bool:
        return self._cache is not None

    @property
    def store(self) -> Store:
        """The caller's store, else a ``MemoryStore`` under ``data_dir`` (opened on first use)."""
        if self._store is None:
            with self._lock:
                if self._store is None:
                    self._store = self._open_store()
        return self._store

    def _open_store(self) -> Store:
        cache = self.settings.cache
        if self.shared is not None:
            return self.shared.store(max_entries=cache.max_entries, clock=self.parts.clock,
                                     vector_dtype=cache.vectors)
        from .cache.memory import MemoryStore

        directory = self._default_dir()
        store = MemoryStore(directory, max_entries=cache.max_entries, clock=self.parts.clock,
                            vector_dtype=cache.vectors)
        self._default_store_dir = directory
        return store

    @property
    def cache(self) -> SemanticCache:
        """The semantic tier over the store: needs the embedder's dimension (loads the model)."""
        if self._cache is None:
            with self._lock:
                if self._cache is None:
                    self._cache = self._build_cache()
        return self._cache

    def _build_cache(self) -> SemanticCache:
        from .cache.index import FaissIndex
        from .hits.lookup import SemanticCache

        store = self.store
        embedder = self.parts.embedder
        index = FaissIndex(embedder.dim, kind=self.settings.cache.index, storage=self.settings.cache.vectors)
        inner = self.parts.verifier or self._default_verifier()
        verifier = SimilarityGate(self.settings.cache.min_similarity, inner)
        cache = SemanticCache(store, index, verifier, top_k=self.settings.cache.top_k, clock=self.parts.clock,
                              consensus=self._default_consensus(inner), language=self._language_guard())
        snapshot_dir = self._default_store_dir or self._shared_snapshot_dir(store)
        if snapshot_dir is not None:
            # The index is saved next to the journal on close (with the feed position it reflects),
            # so a restart loads it instead of rebuilding HNSW from every entry (minutes at 1M).
            name = f"index-{embedder.name.replace('/', '_')}-{embedder.dim}"
            if snapshot_dir is not self._default_store_dir:
                name += "-" + self._shared_snapshot_tag(store)
            self._snapshot = snapshot_dir / name
            cache.replica.load(self._snapshot)
        return cache

    def _shared_snapshot_dir(self, store: Store) -> Path | None:
        """``data_dir`` when this router follows a ``RedisStore`` (``redis_url`` or the caller's):
        the index of a shared store is persisted there too, so a restart reads only the feed since it."""
        from .cache.redis import RedisStore

        return self.parts.data_dir if self.parts.data_dir is not None and isinstance(store, RedisStore) else None

    @staticmethod
    def _shared_snapshot_tag(store: Store) -> str:
        """Names the server (host:port/db, no secret), key prefix and vector type a snapshot follows:
        a snapshot of another server's feed must never be taken for this one's (its position would mean nothing)."""
        import hashlib

        return "redis-" + hashlib.sha256(repr(store).encode()).hexdigest()[:12]

    def _language_guard(self) -> LanguageGuard | None:
        """The guard that keeps hits in the asker's language, loaded now (with the index, off the
        request path); None when ``cross_language`` is on."""
        if self.settings.cache.cross_language:
            return None
        guard = LanguageGuard()
        guard.load()
        return guard

    def _default_consensus(self, verifier: Verifier) -> AnswerConsensus | None:
        """The shipped answer consensus, over the pair model's probability; None when off or unusable."""
        if not self.settings.cache.consensus:
            return None
        embedder = self.parts.embedder
        try:
            return AnswerConsensus.over(verifier, embedder=embedder.name, dim=embedder.dim,
                                        threshold=self.settings.cache.consensus_threshold)
        except ModelError as exc:
            self.metrics.incr("consensus.unavailable")
            log.warning("shipped answer consensus unusable (%s); the pair verifier decides alone", exc)
            return None

    def _default_verifier(self) -> Verifier:
        from .hits.verify import PairVerifier

        embedder = self.parts.embedder
        try:
            return PairVerifier.default(embedder=embedder.name, dim=embedder.dim)
        except ModelError as exc:
            self.metrics.incr("verifier.unavailable")
            floor = max(strict_similarity(embedder), self.settings.cache.min_similarity)
            log.warning("shipped pair verifier unusable (%s); semantic hits need cosine >= %s", exc, floor)
            return ThresholdVerifier(floor)

    def _grey_zone(self, judge: JudgeSettings) -> GreyZone:
        if judge.tier not in self.tiers:
            raise ConfigError(f"judge tier {judge.tier!r} is not among the tiers {sorted(self.tiers)}")
        return GreyZone(judge, model=judge.model or self.tiers[judge.tier].model, metrics=self.metrics,
                        pool=functools.partial(self.pool, judge.tier), verifier=lambda: self.cache.verifier,
                        language=lambda: self.cache.language)

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

    @property
    def classifier_loaded(self) -> ComplexityClassifier | None:
        """The classifier if it is built already, else None (never loads it)."""
        return self._classifier

    def _default_classifier(self) -> ComplexityClassifier:
        from .routing.classify import FixedTier, load_default_classifier

        if len(self.tiers) < 2:
            return FixedTier(self.settings.default_tier)
        try:
            return load_default_classifier(self.parts.embedder)
        except ModelError as exc:
            self.metrics.incr("classifier.unavailable")
            log.warning("shipped complexity classifier unusable (%s); every miss goes to %r", exc,
                        self.settings.default_tier)
            return FixedTier(self.settings.default_tier)

    def pool(self, tier: str) -> Pool:
        """The pool of ``tier``: one backend per host, with the tier's timeout and pool settings."""
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

    def close(self) -> None:
        if self.grey is not None:
            self.grey.close()
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
