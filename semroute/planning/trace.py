"""Reading the Azure LLM inference trace (2023): arrival times and token counts, no text.

The CSV has ``TIMESTAMP`` (ISO, 7-digit fractions), ``ContextTokens`` and ``GeneratedTokens``
per request. Used for realistic arrival processes by the planner's check (bench/plan_check.py)
and by ``semroute replay``. It is not a question source: the trace has no text.
"""

from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path

import numpy as np

from ..errors import ConfigError

__all__ = ["read_azure_trace", "is_azure_trace"]

COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")


def is_azure_trace(header: list[str]) -> bool:
    return all(c in header for c in COLUMNS)


def read_azure_trace(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(seconds since the first request, context tokens, generated tokens), in file order."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            if not is_azure_trace(list(reader.fieldnames or ())):
                raise ConfigError(f"{path}: not an Azure trace (needs columns {', '.join(COLUMNS)})")
            rows = list(reader)
        stamps = [datetime.fromisoformat(r["TIMESTAMP"][:26]) for r in rows]
        context = np.array([int(r["ContextTokens"]) for r in rows], dtype=np.int64)
        generated = np.array([int(r["GeneratedTokens"]) for r in rows], dtype=np.int64)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    except (ValueError, KeyError) as exc:
        raise ConfigError(f"{path}: malformed Azure trace row: {exc}") from exc
    if not rows:
        raise ConfigError(f"{path}: no data rows")
    arrivals = np.array([(s - stamps[0]).total_seconds() for s in stamps])
    return arrivals, context, generated
