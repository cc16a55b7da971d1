"""Checking warm-up rows for exact conflicts before ``semroute warm`` loads the embedding model.

The same question (same namespace, same normalised text) with two different answers is an
error naming the file and rows: the later row would silently replace the earlier one. With
``--skip-bad`` the conflict is reported instead and the first row wins (``Router.warm``).
A row repeating an earlier question with the same answer is not an error: ``Router.warm``
skips and counts it.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import ConfigError
from ..request import normalise
from ..warming import WarmRow

__all__ = ["check_conflicts"]

_SHOWN = 5  # conflicts listed in the message; the count says how many more


def check_conflicts(rows: Sequence[WarmRow]) -> None:
    """Raise ``ConfigError`` naming the rows when one question carries two different answers."""
    first: dict[tuple[str | None, str], WarmRow] = {}
    conflicts: list[str] = []
    path = ""
    for row in rows:
        key = (row.namespace, normalise(row.question))
        seen = first.setdefault(key, row)
        if seen is row or seen.answer.strip() == row.answer.strip():
            continue
        (a_path, a_line), (b_path, b_line) = _split(seen.where), _split(row.where)
        path = path or a_path
        pair = f"rows {a_line} and {b_line}" if a_path == b_path else f"{a_path} row {a_line} and {b_path} row {b_line}"
        conflicts.append(f"{pair} ({row.question[:60]!r})")
    if conflicts:
        more = f" and {len(conflicts) - _SHOWN} more" if len(conflicts) > _SHOWN else ""
        raise ConfigError(f"{path}: the same question with different answers in {'; '.join(conflicts[:_SHOWN])}{more}; "
                          "keep one answer per question (or --skip-bad to keep the first)")


def _split(where: str) -> tuple[str, str]:
    path, _, line = where.rpartition(":")
    return path, line
