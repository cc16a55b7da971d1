"""Reading the CLI's input files (CSV or JSON Lines) into rows, with clear errors.

Every problem becomes a ``ConfigError`` naming the file and, where known, the line.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path

from ..errors import ConfigError
from ..warm_files import read_text

__all__ = ["read_rows", "read_numbered_rows"]


def read_rows(path: str | Path, required: Sequence[str]) -> list[dict[str, str]]:
    """Rows of a ``.csv`` (header row) or ``.jsonl`` file that has every ``required`` column."""
    return [row for _, row in read_numbered_rows(path, required)]


def read_numbered_rows(path: str | Path, required: Sequence[str]) -> list[tuple[int, dict[str, str]]]:
    """``read_rows`` with each row's line number in the file (for messages that point at a row)."""
    path = Path(path)
    text = read_text(path)
    rows = _jsonl(path, text) if path.suffix.lower() in (".jsonl", ".ndjson") else _csv(path, text)
    if not rows:
        raise ConfigError(f"{path}: no data rows")
    missing = [c for c in required if c not in rows[0][1]]
    if missing:
        found = ", ".join(rows[0][1]) or "none"
        raise ConfigError(f"{path}: missing column(s) {', '.join(missing)}; found {found}")
    for number, row in rows:
        empty = [c for c in required if not str(row.get(c) or "").strip()]
        if empty:
            raise ConfigError(f"{path}: row {number} has an empty {', '.join(empty)}")
    return rows


def _csv(path: Path, text: str) -> list[tuple[int, dict[str, str]]]:
    rows = []
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        for row in reader:  # line_num: the line the record ends on (the header is line 1)
            rows.append((reader.line_num, {k: (v or "") for k, v in row.items() if k is not None}))
    except csv.Error as exc:
        raise ConfigError(f"{path}: malformed CSV: {exc}") from exc
    return rows


def _jsonl(path: Path, text: str) -> list[tuple[int, dict[str, str]]]:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: line {number} is not JSON: {exc.msg}") from exc
        if not isinstance(obj, dict):
            raise ConfigError(f"{path}: line {number} must be a JSON object")
        rows.append((number, {str(k): "" if v is None else str(v) for k, v in obj.items()}))
    return rows
