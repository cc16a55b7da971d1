"""Which tier answers a miss?

Owns: the ``ComplexityClassifier`` seam, the shipped logistic classifier and ``FixedTier``
(``classify``), and the text features it reads besides the embedding (``features``). Not here:
fitting it (``semroute.training.complexity``). May import: ``types``, ``errors``, ``artifacts``.
"""

from __future__ import annotations

from .classify import ComplexityClassifier, FixedTier, LogisticComplexityClassifier

__all__ = ["ComplexityClassifier", "FixedTier", "LogisticComplexityClassifier"]
