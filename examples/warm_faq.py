"""Warm semroute's cache from an FAQ file: the script you run from cron after the FAQ changes.

    python examples/warm_faq.py faq.csv --config semroute.toml --namespace support --ttl-s inf

FILE is CSV with a header row or JSON Lines, each row with ``question`` and ``answer`` (and
optional ``namespace``, ``ttl``, ``metadata``). Every row is checked before anything is stored
(a bad row names its line and the script exits 1 with the cache unchanged); ``Router.warm``
then skips rows already stored with the same answer, embeds the rest in batches and stores
them. With a shared store (Redis, set in the TOML file) every web worker sees the new entries.
The report goes to stdout as one JSON line, so cron mail or a log collector can keep it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from semroute import Router, SemrouteError, read_warm_file


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
        rows, bad = read_warm_file(args.file)
        if bad:  # refuse the whole file: a cron job must not half-apply an FAQ edit
            for row in bad:
                print(f"warm_faq: {row.reason}", file=sys.stderr)
            return 1
        with Router.from_config(args.config) if args.config else Router() as router:
            report = router.warm(rows, namespace=args.namespace, ttl_s=args.ttl_s, batch_size=args.batch_size)
            entries = len(router.pipeline.cache)
    except (OSError, SemrouteError) as exc:
        print(f"warm_faq: {exc}", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - started
    # Rows already stored with the same answer are skipped unembedded: the nightly run is cheap.
    print(json.dumps({"file": str(args.file), "rows": len(rows), "entries": entries, "seconds": round(seconds, 2),
                      "rows_per_s": round(len(rows) / seconds, 1),
                      **{k: v for k, v in report.as_dict().items() if k != "seconds"}}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
