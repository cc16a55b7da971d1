"""Is this cached answer right for this question?

Owns: the ``Verifier`` seam and its built-ins (``verify``), the pair features and what they read
(``pairs``; one question's words, stems and lexicon hits: ``analysis``; the word lists:
``lexicon``), the answer consensus (``consensus``), the optional grey-zone LLM judge (``judge``),
the guard that keeps hits in the asker's language (``language``) and ``SemanticCache``
(``lookup``), which composes them over the cache's ``Replica`` into the
exact and semantic tiers. Not here: storage (``semroute.cache``), fitting the models
(``semroute.training``). May import: ``types``, ``errors``, ``settings``,
``metrics``, ``artifacts``, ``cache``.
"""

from __future__ import annotations

from .lookup import SemanticCache
from .verify import ByNamespace, PairVerifier, ThresholdVerifier, Verifier

__all__ = ["ByNamespace", "PairVerifier", "SemanticCache", "ThresholdVerifier", "Verifier"]
