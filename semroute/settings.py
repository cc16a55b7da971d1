"""Every settings value object, in one tree: router and cache policy, tiers and their pools.

    RouterSettings ─ cache: CacheSettings ─ judge: JudgeSettings | None
    Tier ─ timeout: Timeout             (one backend call: connect, first token, total)
         └ pool: PoolSettings ─ retry: RetrySettings
                               ├ queue: QueueSettings
                               └ breaker: BreakerSettings

Settings hold numbers and names only and validate on construction (a bad value is a
``ConfigError`` at once); they open nothing and read no environment. ``default_tiers`` is the
one place that reads ``OLLAMA_HOST``, and callers choose when to call it; ``parse_tiers``
turns plain data (a TOML table) into tiers.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import ConfigError
from .model_options import check_options

__all__ = [
    "Tier",
    "Timeout",
    "RetrySettings",
    "QueueSettings",
    "BreakerSettings",
    "PoolSettings",
    "JudgeSettings",
    "CacheSettings",
    "RouterSettings",
    "default_tiers",
    "parse_tiers",
    "DEFAULT_OLLAMA_HOST",
]

DEFAULT_OLLAMA_HOST = "http://127.0.0.1:11434"


@dataclass(frozen=True, slots=True)
class Timeout:
    """How long a backend waits, in seconds.

    ``connect``: to open the TCP connection (also bounds ``health()``).
    ``read``: the longest silence while a request runs, that is the wait for the first token
    (which includes queueing and model loading on the server) and each gap between streamed
    tokens. ``total``: the whole request, first byte to last (None: no limit). A streamed
    answer that passes ``total`` fails with ``BackendTimeout`` after the chunks already given.
    """

    connect: float = 3.0
    read: float = 120.0
    total: float | None = None

    def __post_init__(self) -> None:
        for name, value in (("connect", self.connect), ("read", self.read), ("total", self.total)):
            if value is None and name == "total":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value < math.inf):
                raise ConfigError(f"Timeout.{name} must be a positive number of seconds, got {value!r}")

    @property
    def effective_read(self) -> float:
        """A single silence longer than ``total`` breaks ``total`` too, so it bounds ``read``."""
        return self.read if self.total is None else min(self.read, self.total)


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
class QueueSettings:
    """How many requests may wait for a slot, and for how long."""

    max_length: int = 256
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if self.max_length < 0:
            raise ConfigError("queue max_length must be >= 0")
        if self.timeout_s < 0:
            raise ConfigError("queue timeout_s must be >= 0")


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    """When to stop sending traffic to an instance and when to try it again.

    ``failure_window_s``: failures older than this are forgotten (they stop counting towards
    the threshold and towards the load a strategy sees).
    """

    failure_threshold: int = 3
    cooldown_s: float = 1.0
    max_cooldown_s: float = 30.0
    backoff_factor: float = 2.0
    failure_window_s: float = 10.0

    def __post_init__(self) -> None:
        if self.failure_threshold < 1:
            raise ConfigError("failure_threshold must be >= 1")
        if not 0 < self.cooldown_s <= self.max_cooldown_s:
            raise ConfigError("need 0 < cooldown_s <= max_cooldown_s")
        if self.backoff_factor < 1:
            raise ConfigError("backoff_factor must be >= 1")
        if not 0 < self.failure_window_s < math.inf:
            raise ConfigError("failure_window_s must be a positive number of seconds")


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
        for name, kind in (("retry", RetrySettings), ("queue", QueueSettings), ("breaker", BreakerSettings)):
            if not isinstance(getattr(self, name), kind):
                raise ConfigError(f"PoolSettings.{name} must be a {kind.__name__}, got {getattr(self, name)!r}")
        if not 0 < self.ewma_alpha <= 1 or self.models_ttl_s <= 0 or self.health_interval_s <= 0:
            raise ConfigError("need 0 < ewma_alpha <= 1, models_ttl_s > 0 and health_interval_s > 0")


@dataclass(frozen=True, slots=True)
class Tier:
    """One model tier: the model, the Ollama hosts that serve it and how they are balanced.

    ``limit`` is each host's concurrency (Ollama's ``OLLAMA_NUM_PARALLEL``); ``strategy`` names a
    balancing strategy (see ``semroute.backends.strategy``); ``timeout`` bounds each backend call
    and ``pool`` is how the tier's pool retries, queues and cools down failing hosts. ``options``
    are the tier's default model options in Ollama's names (``{"num_predict": 256}``), sent on
    every miss; a request's own options override them key by key (``semroute.model_options``).
    """

    model: str
    hosts: tuple[str, ...] = (DEFAULT_OLLAMA_HOST,)
    strategy: str = "latency_aware"
    limit: int = 4
    timeout: Timeout = field(default_factory=Timeout)
    pool: PoolSettings = field(default_factory=PoolSettings)
    options: Mapping[str, Any] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError(f"a tier needs a model name, got {self.model!r}")
        hosts = (self.hosts,) if isinstance(self.hosts, str) else tuple(self.hosts)
        if not hosts or not all(isinstance(h, str) and h.strip() for h in hosts):
            raise ConfigError(f"tier {self.model!r} needs at least one host, got {self.hosts!r}")
        object.__setattr__(self, "hosts", hosts)
        if not isinstance(self.limit, int) or self.limit < 1:
            raise ConfigError(f"tier {self.model!r}: limit must be an int >= 1, got {self.limit!r}")
        if not isinstance(self.timeout, Timeout):
            raise ConfigError(f"tier {self.model!r}: timeout must be a Timeout, got {self.timeout!r}")
        if not isinstance(self.pool, PoolSettings):
            raise ConfigError(f"tier {self.model!r}: pool must be a PoolSettings, got {self.pool!r}")
        object.__setattr__(self, "options", check_options(self.options, f"tier {self.model!r}"))


@dataclass(frozen=True, slots=True)
class JudgeSettings:
    """The optional grey-zone judge (``semroute.judge``): which candidates it sees, how long it may take.

    Only a candidate the verifier rejected with cosine >= ``min_similarity`` and (for a verifier
    with a pair model) P(same question) >= ``min_probability`` is judged, one per lookup, by
    ``model`` (None: the tier's own model) on ``tier``'s pool. A call longer than ``timeout_s``
    counts as "no"; ``cache_size`` verdicts are remembered.
    """

    min_similarity: float = 0.7
    min_probability: float = 0.5
    model: str | None = None
    tier: str = "small"
    timeout_s: float = 5.0
    cache_size: int = 4096

    def __post_init__(self) -> None:
        if not -1.0 <= self.min_similarity <= 1.0:
            raise ConfigError(f"judge min_similarity is a cosine similarity in [-1, 1], got {self.min_similarity!r}")
        if not 0.0 <= self.min_probability <= 1.0:
            raise ConfigError(f"judge min_probability is a probability in [0, 1], got {self.min_probability!r}")
        if self.model is not None and (not isinstance(self.model, str) or not self.model.strip()):
            raise ConfigError(f"judge model must be a model name or None, got {self.model!r}")
        if isinstance(self.timeout_s, bool) or not isinstance(self.timeout_s, int | float) or not self.timeout_s > 0:
            raise ConfigError(f"judge timeout_s must be a positive number of seconds, got {self.timeout_s!r}")
        if isinstance(self.cache_size, bool) or not isinstance(self.cache_size, int) or self.cache_size < 0:
            raise ConfigError(f"judge cache_size must be an int >= 0, got {self.cache_size!r}")


@dataclass(frozen=True, slots=True)
class CacheSettings:
    """How the cache behaves.

    ``min_similarity`` is a cosine similarity in [-1, 1] below which no candidate is even
    shown to the verifier; ``ttl_s`` is the default time-to-live (None: forever). ``index``
    is exact ``"flat"`` search, approximate ``"hnsw"``, or ``"auto"``: flat while a scope is
    small, HNSW from a few thousand entries on, IVF with 4-bit codes from 131,072 on (candidates
    re-ranked exactly against the store's vectors; see ``FaissIndex``). ``judge`` turns on the
    grey-zone judge (off by default: None). ``consensus`` lets the nearest cached questions vote
    by answer (``semroute.consensus``): an answer several of them share is served even below
    ``min_similarity``, and a hit contradicting such an answer is refused. It needs the shipped
    pair verifier and changes nothing when every cached answer is different;
    ``consensus_threshold`` overrides its shipped operating point (``semroute calibrate --retrieval``).
    ``vectors="float16"`` keeps vectors in half the memory in the store and the index (cosine
    changes by < 1e-3): for caches of a million entries. ``cross_language`` serves a cached answer
    to a question in another language (off: an English question is never served the answer cached
    for its Turkish translation; ``semroute.hits.language``).
    """

    min_similarity: float = 0.8
    top_k: int = 4
    ttl_s: float | None = None
    max_entries: int = 100_000
    index: Literal["flat", "hnsw", "auto"] = "auto"
    judge: JudgeSettings | None = None
    consensus: bool = True
    consensus_threshold: float | None = None
    vectors: Literal["float32", "float16"] = "float32"
    cross_language: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.cross_language, bool):
            raise ConfigError(f"cross_language must be true or false, got {self.cross_language!r}")
        if self.vectors not in ("float32", "float16"):
            raise ConfigError(f"vectors must be 'float32' or 'float16', got {self.vectors!r}")
        if not isinstance(self.consensus, bool):
            raise ConfigError(f"consensus must be true or false, got {self.consensus!r}")
        t = self.consensus_threshold
        if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or not 0.0 <= t <= 1.0):
            raise ConfigError(f"consensus_threshold is a probability in [0, 1] or None, got {t!r}")
        if not -1.0 <= self.min_similarity <= 1.0:
            raise ConfigError(f"min_similarity is a cosine similarity in [-1, 1], got {self.min_similarity!r}")
        if self.top_k < 1:
            raise ConfigError(f"top_k must be >= 1, got {self.top_k!r}")
        if self.ttl_s is not None and self.ttl_s <= 0:
            raise ConfigError(f"ttl_s must be positive or None, got {self.ttl_s!r}")
        if self.max_entries < 1:
            raise ConfigError(f"max_entries must be >= 1, got {self.max_entries!r}")
        if self.index not in ("flat", "hnsw", "auto"):
            raise ConfigError(f"index must be 'flat', 'hnsw' or 'auto', got {self.index!r}")
        if self.judge is not None and not isinstance(self.judge, JudgeSettings):
            raise ConfigError(f"judge must be a JudgeSettings or None, got {self.judge!r}")


@dataclass(frozen=True, slots=True)
class RouterSettings:
    """Request policy: input limits, the tier used without a classifier, and tier fallback."""

    max_question_chars: int = 4000
    default_tier: str = "small"
    fallback: Literal["other-tier", "raise"] = "other-tier"
    cache: CacheSettings = field(default_factory=CacheSettings)

    def __post_init__(self) -> None:
        if self.max_question_chars < 1:
            raise ConfigError(f"max_question_chars must be >= 1, got {self.max_question_chars!r}")
        if self.fallback not in ("other-tier", "raise"):
            raise ConfigError(f"fallback must be 'other-tier' or 'raise', got {self.fallback!r}")


def default_tiers(host: str | None = None) -> dict[str, Tier]:
    """``llama3.2:3b`` (small) and ``llama3.1:8b`` (large) at ``host``, ``OLLAMA_HOST`` or localhost."""
    host = host or _ollama_host_from_env()
    return {"small": Tier("llama3.2:3b", (host,)), "large": Tier("llama3.1:8b", (host,))}


def _ollama_host_from_env() -> str:
    raw = os.environ.get("OLLAMA_HOST", "").strip()
    if not raw:
        return DEFAULT_OLLAMA_HOST
    if "://" not in raw:
        raw = f"http://{raw}"
    if raw.count(":") == 1:  # scheme only, no port: Ollama's default port
        raw = f"{raw}:11434"
    return raw


def parse_tiers(raw: Mapping[str, object]) -> dict[str, Tier]:
    """Tiers from plain data (a TOML table); unknown keys are errors.

    ``{"small": {"model": ..., "hosts": [...], "strategy": ..., "limit": 4,
    "timeout": {"connect": 3, "read": 120}, "pool": {"health_interval_s": 10,
    "retry": {...}, "queue": {...}, "breaker": {...}}}}``
    """
    tiers: dict[str, Tier] = {}
    for name, spec in raw.items():
        if isinstance(spec, Tier):
            tiers[name] = spec
        elif isinstance(spec, Mapping) and "model" in spec:
            tiers[name] = _tier_from(name, spec)
        else:
            raise ConfigError(f"tier {name!r} must be a Tier or a table with 'model' and 'hosts', got {spec!r}")
    return tiers


_TIER_KEYS = {"model", "hosts", "host", "strategy", "limit", "timeout", "pool", "options"}
_POOL_PARTS = {"retry": RetrySettings, "queue": QueueSettings, "breaker": BreakerSettings}


def _tier_from(name: str, spec: Mapping[str, Any]) -> Tier:
    unknown = sorted(set(spec) - _TIER_KEYS)
    if unknown:
        raise ConfigError(f"tier {name!r}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(_TIER_KEYS))}")
    hosts = spec.get("hosts", spec.get("host", (DEFAULT_OLLAMA_HOST,)))
    extra: dict[str, Any] = {k: spec[k] for k in ("strategy", "limit", "options") if k in spec}
    if "timeout" in spec:
        extra["timeout"] = _settings(f"tiers.{name}.timeout", Timeout, spec["timeout"])
    if "pool" in spec:
        pool = dict(_mapping(f"tiers.{name}.pool", spec["pool"]))
        for part, kind in _POOL_PARTS.items():
            if part in pool:
                pool[part] = _settings(f"tiers.{name}.pool.{part}", kind, pool[part])
        extra["pool"] = _settings(f"tiers.{name}.pool", PoolSettings, pool)
    return Tier(str(spec["model"]), tuple([hosts] if isinstance(hosts, str) else hosts), **extra)


def _mapping(where: str, value: object) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"[{where}] must be a table, got {value!r}")
    return value


def _settings(where: str, kind: type, value: object) -> Any:
    if isinstance(value, kind):
        return value
    try:
        return kind(**_mapping(where, value))
    except TypeError as exc:  # an unknown field
        raise ConfigError(f"[{where}]: {exc}") from exc
