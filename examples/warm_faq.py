"""Warm semroute's cache from an FAQ file: the script you run from cron after the FAQ changes.

    python examples/warm_faq.py faq.csv --config semroute.toml --namespace support --ttl-s inf

FILE is CSV with a header row or JSON Lines, each row with ``question`` and ``answer``. Every
row is checked before anything is stored (a bad row names its line and the script exits 1
with the cache unchanged); ``Router.warm`` then embeds the questions in batches and stores
them. With a shared store (Redis, set in the TOML file) every web worker sees the new entries.
The report goes to stdout as one JSON line, so cron mail or a log collector can keep it.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

from semroute import Router, SemrouteError


def read_pairs(path: Path) -> list[tuple[str, str]]:
    """(question, answer) rows of a CSV or JSONL file; a bad row raises ValueError naming its line."""
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        rows = [(n, json.loads(line)) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    else:
        rows = list(enumerate(csv.DictReader(text.splitlines()), start=2))  # line 1 is the header
    pairs = []
    for number, row in rows:
        question, answer = (row.get("question") or "").strip(), (row.get("answer") or "").strip()
        if not question or not answer:
            raise ValueError(f"{path}: line {number} needs a question and an answer")
        pairs.append((question, answer))
    return pairs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--config", type=Path, help="semroute TOML file (store, embedder, tiers)")
    parser.add_argument("--namespace", help="namespace to warm (default: the Router's)")
    parser.add_argument("--ttl-s", type=float, help="time to live in seconds; inf: never expire")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        pairs = read_pairs(args.file)
        with Router.from_config(args.config) if args.config else Router() as router:
            stored = router.warm(pairs, namespace=args.namespace, ttl_s=args.ttl_s, batch_size=args.batch_size).stored
            entries = len(router.pipeline.cache)
    except (OSError, ValueError, SemrouteError) as exc:  # json.JSONDecodeError is a ValueError
        print(f"warm_faq: {exc}", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - started
    print(json.dumps({"file": str(args.file), "rows": len(pairs), "stored": stored, "entries": entries,
                      "seconds": round(seconds, 2), "rows_per_s": round(len(pairs) / seconds, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
