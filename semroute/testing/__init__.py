"""Test helpers that run real servers: ``FakeOllama`` (Ollama's HTTP API), ``FakeFleet``
and ``RedisServer`` (a private real ``redis-server``); ``ManualClock`` for the ``clock=``
parameters of TTLs, breakers and limits.

Imported lazily so ``import semroute.testing`` stays cheap and never loads torch.
``semroute.testing.fuzz`` (import it explicitly; needs ``hypothesis``) fuzzes the public entry
points and tells typed ``SemrouteError`` outcomes from untyped ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["FakeOllama", "FakeFleet", "InstanceSpec", "Timing", "Capacity", "Fault", "FakeStats", "answer_text", "RedisServer", "ManualClock"]

_WHERE = {
    "FakeOllama": "fake_ollama",
    "FakeFleet": "fleet",
    "InstanceSpec": "fleet",
    "Timing": "fake_config",
    "Capacity": "fake_config",
    "Fault": "fake_config",
    "FakeStats": "fake_config",
    "answer_text": "fake_content",
    "RedisServer": "redis_server",
    "ManualClock": "clock",
}

if TYPE_CHECKING:
    from .clock import ManualClock
    from .fake_config import Capacity, FakeStats, Fault, Timing
    from .fake_content import answer_text
    from .fake_ollama import FakeOllama
    from .fleet import FakeFleet, InstanceSpec
    from .redis_server import RedisServer


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'semroute.testing' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f".{module}", __name__), name)
