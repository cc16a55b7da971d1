"""Checking an FAQ file's rows before ``semroute warm`` loads the embedding model.

A question longer than the router accepts, or asked twice with two different answers (the
later row would silently replace the earlier one in the exact tier), is an error naming the
file and rows; a row repeating an earlier question with the same answer is skipped and counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..errors import ConfigError
from ..request import normalise

__all__ = ["checked_pairs"]

_SHOWN = 5  # conflicts listed in the message; the count says how many more


def checked_pairs(path: Path, rows: Sequence[tuple[int, dict[str, str]]], *,
                  max_chars: int) -> tuple[list[tuple[str, str]], int]:
    """(question, answer) pairs in file order without repeats, and how many repeats were skipped."""
    first: dict[str, tuple[int, str]] = {}  # normalised question -> (row, answer)
    pairs: list[tuple[str, str]] = []
    conflicts: list[str] = []
    repeated = 0
    for number, row in rows:
        question, answer = row["question"], row["answer"]
        if len(question) > max_chars:
            raise ConfigError(f"{path}: row {number}: the question has {len(question)} characters; "
                              f"the maximum is {max_chars} (RouterSettings.max_question_chars)")
        key = normalise(question)
        seen = first.get(key)
        if seen is None:
            first[key] = (number, answer)
            pairs.append((question, answer))
        elif seen[1].strip() == answer.strip():
            repeated += 1
        else:
            conflicts.append(f"rows {seen[0]} and {number} ({question[:60]!r})")
    if conflicts:
        more = f" and {len(conflicts) - _SHOWN} more" if len(conflicts) > _SHOWN else ""
        raise ConfigError(f"{path}: the same question with different answers in {'; '.join(conflicts[:_SHOWN])}{more}; "
                          "keep one answer per question")
    return pairs, repeated
