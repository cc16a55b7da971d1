"""Cheap text features of a prompt that the complexity classifier adds to its embedding.

The embedding says what a prompt is about; these say how much work it asks for, in ways an
English-only sentence embedding misses (it barely separates Turkish prompts). Every feature is
language-neutral, costs a few microseconds and is justified by what makes a prompt need a
larger model:

- ``log_chars``, ``log_words``: long, multi-part requests need more reasoning and output.
- ``digit_share``: calculations and word problems are full of numbers; factoid questions rarely are.
- ``sentences``: several sentences usually mean context plus a task, or several sub-questions.
- ``clauses``: commas, semicolons and colons count the parts of a request ("compare X, Y and Z").
- ``math``: operators and units of calculation (``+ = ^ % $ / *``) mark arithmetic and algebra.
- ``code``: braces, backticks, brackets and call syntax mark code to write or debug.

This module only computes numbers from text; scaling and weighting belong to the classifier.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np

__all__ = ["FEATURE_NAMES", "text_features"]

FEATURE_NAMES: tuple[str, ...] = ("log_chars", "log_words", "digit_share", "sentences", "clauses", "math", "code")

# Sentence ends followed by space or end of text; a decimal point ("2.5") is not a sentence end.
_SENTENCE_END = re.compile(r"[.!?。]+(?:\s|$)")
_MATH_CHARS = frozenset("+=^%$*/×÷<>")
_CODE_CHARS = frozenset("{}[]`_#|\\")


def _one(text: str) -> tuple[float, ...]:
    n_chars = len(text)
    words = text.split()
    digits = sum(ch.isdigit() for ch in text)
    sentences = max(1, len(_SENTENCE_END.findall(text)))
    clauses = text.count(",") + text.count(";") + text.count(":") + text.count("\n")
    maths = sum(ch in _MATH_CHARS for ch in text)
    code = sum(ch in _CODE_CHARS for ch in text) + text.count("()")
    return (
        math.log1p(n_chars),
        math.log1p(len(words)),
        digits / max(1, n_chars),
        math.log(sentences),
        math.log1p(clauses),
        math.log1p(maths),
        math.log1p(code),
    )


def text_features(texts: Sequence[str]) -> np.ndarray:
    """Return a float64 array of shape (len(texts), len(FEATURE_NAMES))."""
    if len(texts) == 0:
        return np.zeros((0, len(FEATURE_NAMES)), dtype=np.float64)
    return np.array([_one(t) for t in texts], dtype=np.float64)
