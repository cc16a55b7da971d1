"""Reading warm-up files (CSV with a header row, or JSON Lines) into ``WarmRow``s and ``BadRow``s.

Columns: ``question`` and ``answer`` (required), ``namespace``, ``ttl`` or ``ttl_s`` (seconds;
``inf`` never expires) and ``metadata`` (a JSON object of tags, the ones ``invalidate(where=...)``
matches; in CSV a JSON object in the cell). A problem with the whole file (missing, not
UTF-8, no data rows, a required column missing) raises ``ConfigError``; a problem with one
row becomes a ``BadRow`` naming the file and line, and the other rows are still read.
This module reads data files; it stores nothing (``Router.warm`` does).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping
from pathlib import Path

from .errors import ConfigError, InvalidRequest
from .warming import BadRow, WarmRow, coerce_row

__all__ = ["read_warm_file"]

REQUIRED = ("question", "answer")


def read_text(path: Path) -> str:
    """A data file's text (UTF-8, a BOM allowed); every failure a ``ConfigError`` naming the file."""
    try:
        return path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such file") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc


def read_warm_file(path: str | Path, *, max_chars: int | None = None) -> tuple[list[WarmRow], list[BadRow]]:
    """The good rows (``where`` = ``file:line``) and the bad ones of one CSV or JSONL file."""
    path = Path(path)
    text = read_text(path)
    jsonl = path.suffix.lower() in (".jsonl", ".ndjson")
    records, bad = _jsonl(path, text) if jsonl else _csv(path, text)
    if not records and not bad:
        raise ConfigError(f"{path}: no data rows")
    if records and not jsonl:
        missing = [c for c in REQUIRED if c not in records[0][1]]
        if missing:
            raise ConfigError(f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(records[0][1]) or 'none'}")
    rows = []
    for line, record in records:
        try:
            rows.append(_row(path, line, record, max_chars))
        except InvalidRequest as exc:
            bad.append(BadRow(f"{path}:{line}", str(exc)))
    bad.sort(key=lambda b: int(b.where.rpartition(":")[2]))
    return rows, bad


def _row(path: Path, line: int, record: Mapping[str, object], max_chars: int | None) -> WarmRow:
    empty = [c for c in REQUIRED if not isinstance(record.get(c), str) or not str(record.get(c)).strip()]
    if empty:
        raise InvalidRequest(f"{path}: row {line} has an empty {', '.join(empty)}")
    question = str(record["question"])
    if max_chars is not None and len(question) > max_chars:
        raise InvalidRequest(f"{path}: row {line}: the question has {len(question)} characters; "
                             f"the maximum is {max_chars} (RouterSettings.max_question_chars)")
    fields: dict[str, object] = {"question": question, "answer": record["answer"]}
    if _given(record.get("namespace")):
        fields["namespace"] = str(record["namespace"])
    ttl = record.get("ttl_s", record.get("ttl"))
    if _given(ttl):
        fields["ttl_s"] = _ttl(path, line, ttl)
    meta = record.get("metadata")
    if _given(meta):
        fields["metadata"] = _metadata(path, line, meta)
    try:
        return coerce_row(fields, f"{path}:{line}")
    except InvalidRequest as exc:
        raise InvalidRequest(f"{path}: row {line}: {exc}") from None


def _given(value: object) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def _ttl(path: Path, line: int, value: object) -> float:
    try:
        ttl = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        ttl = math.nan
    if isinstance(value, bool) or not ttl > 0:
        raise InvalidRequest(f"{path}: row {line}: ttl must be a positive number of seconds (inf: never), got {value!r}")
    return ttl


def _metadata(path: Path, line: int, value: object) -> object:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise InvalidRequest(f"{path}: row {line}: metadata must be a JSON object, got {value!r}") from None
    return value


def _csv(path: Path, text: str) -> tuple[list[tuple[int, dict[str, object]]], list[BadRow]]:
    rows: list[tuple[int, dict[str, object]]] = []
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        for row in reader:  # line_num: the line the record ends on (the header is line 1)
            rows.append((reader.line_num, {k: (v or "") for k, v in row.items() if k is not None}))
    except csv.Error as exc:
        raise ConfigError(f"{path}: malformed CSV: {exc}") from exc
    return rows, []


def _jsonl(path: Path, text: str) -> tuple[list[tuple[int, dict[str, object]]], list[BadRow]]:
    rows: list[tuple[int, dict[str, object]]] = []
    bad: list[BadRow] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            bad.append(BadRow(f"{path}:{number}", f"{path}: line {number} is not JSON: {exc.msg}"))
            continue
        if not isinstance(obj, dict):
            bad.append(BadRow(f"{path}:{number}", f"{path}: line {number} must be a JSON object"))
            continue
        rows.append((number, {str(k): v for k, v in obj.items()}))
    return rows, bad
