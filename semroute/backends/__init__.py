"""LLM backends: the ``Backend`` seam, Ollama over HTTP, and the pool that balances instances.

The settings value objects (``Timeout``, ``PoolSettings`` and its parts) live in
``semroute.settings`` and are re-exported here.

Names are imported on first use, so ``import semroute.backends`` does not load the ``ollama``
client (or pydantic) until a backend is actually made.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .base import Backend
from ..settings import BreakerSettings, PoolSettings, QueueSettings, RetrySettings, Timeout

_LAZY = {
    "OllamaBackend": "ollama",
    "Pool": "pool",
    "Instance": "pool",
    "Limiter": "limiter",
    "LocalLimiter": "limiter",
    "CircuitBreaker": "health",
    "Strategy": "strategy",
    "InstanceState": "strategy",
    "RoundRobin": "strategy",
    "WeightedRoundRobin": "strategy",
    "LeastOutstanding": "strategy",
    "WeightedLeastOutstanding": "strategy",
    "PowerOfTwo": "strategy",
    "WeightedPowerOfTwo": "strategy",
    "LatencyAware": "strategy",
    "WeightedLatencyAware": "strategy",
    "resolve_strategy": "strategy",
}

__all__ = [
    "Backend",
    "Timeout",
    "OllamaBackend",
    "Pool",
    "PoolSettings",
    "RetrySettings",
    "Instance",
    "Limiter",
    "LocalLimiter",
    "QueueSettings",
    "BreakerSettings",
    "CircuitBreaker",
    "Strategy",
    "InstanceState",
    "RoundRobin",
    "WeightedRoundRobin",
    "LeastOutstanding",
    "WeightedLeastOutstanding",
    "PowerOfTwo",
    "WeightedPowerOfTwo",
    "LatencyAware",
    "WeightedLatencyAware",
    "resolve_strategy",
]
assert set(__all__) == {"Backend", "Timeout", "PoolSettings", "RetrySettings", "QueueSettings", "BreakerSettings", *_LAZY}

if TYPE_CHECKING:
    from .health import CircuitBreaker
    from .limiter import Limiter, LocalLimiter
    from .ollama import OllamaBackend
    from .pool import Instance, Pool
    from .strategy import (
        InstanceState,
        LatencyAware,
        LeastOutstanding,
        PowerOfTwo,
        RoundRobin,
        Strategy,
        WeightedLatencyAware,
        WeightedLeastOutstanding,
        WeightedPowerOfTwo,
        WeightedRoundRobin,
        resolve_strategy,
    )


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'semroute.backends' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
