"""The cache: storage only. ``Store`` (truth: entries, TTL, LRU, namespaces, change feed) and
``Index`` (a derived vector replica), kept in step by ``Replica``.

Owns: ``MemoryStore`` (the embedded store, optionally journaled to SQLite), ``RedisStore``
(shared by processes and hosts through a plain Redis 7; ``redis`` loads on first use), ``FaissIndex``
(faiss loads on first construction, not on import), ``Replica``. Not here: deciding whether a
cached answer is right for a question (``semroute.hits``). May import: ``types``, ``errors``.
"""

from __future__ import annotations

from .base import Change, Index, Store
from .index import FaissIndex
from .memory import MemoryStore
from .redis import RedisStore
from .replica import Replica

__all__ = ["Change", "FaissIndex", "Index", "MemoryStore", "RedisStore", "Replica", "Store"]
