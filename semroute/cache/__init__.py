"""The cache: ``Store`` (truth: entries, TTL, LRU, change feed) and ``Index`` (a derived vector
replica), composed by ``SemanticCache`` into the exact and semantic tiers.

``MemoryStore`` is the embedded store (optionally journaled to SQLite), ``FaissIndex`` the
faiss-backed index (faiss loads on first construction, not on import).
"""

from __future__ import annotations

from .base import Change, Index, Store
from .index import FaissIndex
from .memory import MemoryStore
from .semantic import SemanticCache

__all__ = ["Change", "FaissIndex", "Index", "MemoryStore", "SemanticCache", "Store"]
