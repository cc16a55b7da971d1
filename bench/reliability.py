"""Reliability bench: the long versions of ``tests/test_reliability.py`` (issue 12).

Parts (``--parts``, default all):

* ``recovery``: a fleet of three fake Ollama instances under closed-loop load through one pool
  (default settings and strategy, a real clock); instance 1 breaks for ``--fault-s`` seconds
  (refuse, 500, 503, hang, drop, restart; refuse again with health checks on), then heals.
  Per-instance answers are counted in 0.5 s windows; reported: instance 1's share before the
  fault (the baseline, same run), in the 10 s after the fault ends, and the time from the end of
  the fault until its share is back to >= 80 % of a fair third. One PNG of the refuse incident.
* ``fuzz``: ``--fuzz-cases`` hypothesis cases over every public entry point
  (``semroute.testing.fuzz``); reported: how many ended in a non-``SemrouteError``.
* ``sigkill``: ``--kills`` times, a child process writes to a journaled ``MemoryStore`` and
  prints each confirmed id; it is SIGKILLed after a random number of writes and the directory
  reopened; reported: confirmed writes and how many of them were lost.
* ``isolation``: questions warmed in one namespace/system prompt and asked from others;
  reported: cross-scope answers served from another scope's entries.
* ``redaction``: a router whose hosts carry ``user:password@`` and ``?token=``; reported: how
  often either secret appears in logs, errors, ``stats()`` and Prometheus text.
* ``soak``: a router (hash embedder, so the cache and not the embedding model is measured)
  whose cache is filled to ``max_entries``, then asked a 90 % repeat / 10 % new mix for
  ``--soak-s`` seconds from threads; reported: lost responses and RSS drift once full.

    PYTHONPATH=.:tests python bench/reliability.py                       # about 8 minutes on 2 cores
    PYTHONPATH=.:tests python bench/reliability.py --quick               # about 2 minutes
    PYTHONPATH=.:tests python bench/reliability.py --parts recovery --kinds refuse

Writes ``bench/results/reliability.json`` and ``bench/results/reliability_incident.png``.
``tests/`` is on the path for ``reliability_helpers`` (the light router the tests use).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from pathlib import Path

from reliability_bench import durability, faults, fuzzing, leaks, soak

RESULTS = Path(__file__).resolve().parent / "results"


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--parts", default="recovery,fuzz,sigkill,isolation,redaction,soak")
    p.add_argument("--kinds", default="refuse,error,busy,hang,drop,restart,refuse+health")
    p.add_argument("--clients", type=int, default=120, help="concurrent closed-loop clients in recovery")
    p.add_argument("--fault-s", type=float, default=1.5)
    p.add_argument("--after-s", type=float, default=12.0, help="observed after the fault ends")
    p.add_argument("--fuzz-cases", type=int, default=12_000)
    p.add_argument("--kills", type=int, default=31)
    p.add_argument("--soak-s", type=float, default=60.0)
    p.add_argument("--soak-entries", type=int, default=5_000)
    p.add_argument("--quick", action="store_true", help="fewer kinds, cases, kills and a shorter soak")
    p.add_argument("--out", type=Path, default=RESULTS / "reliability.json")
    p.add_argument("--plot", type=Path, default=RESULTS / "reliability_incident.png")
    args = p.parse_args(argv)
    if args.quick:
        args.kinds, args.after_s, args.fuzz_cases = "refuse,hang,refuse+health", 10.0, 10_000
        args.kills, args.soak_s, args.soak_entries = 8, 20.0, 2_000
    return args


def _brief(value: object) -> object:
    """The report without its long series (kept in the JSON file)."""
    if isinstance(value, dict):
        return {k: _brief(v) for k, v in value.items() if k not in ("windows", "rss_mb", "examples")}
    return value


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    logging.getLogger("semroute").setLevel(logging.ERROR)  # thousands of expected failover warnings
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    report: dict[str, object] = {"args": {k: str(v) for k, v in vars(args).items()}, "started": time.time()}
    runners = {
        "recovery": lambda: asyncio.run(faults.run(args)),
        "fuzz": lambda: fuzzing.run(args.fuzz_cases),
        "sigkill": lambda: durability.run(args.kills),
        "isolation": leaks.isolation,
        "redaction": leaks.redaction,
        "soak": lambda: soak.run(args.soak_s, args.soak_entries),
    }
    for part in parts:
        t0 = time.perf_counter()
        result = runners[part]()
        result["seconds"] = round(time.perf_counter() - t0, 1)
        report[part] = result
        print(f"\n== {part} ({result['seconds']} s)")
        print(json.dumps(_brief(result), indent=1))
    if "recovery" in report:
        faults.plot(report["recovery"], args.plot)  # type: ignore[arg-type]
        print(f"plot: {args.plot}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, default=str) + "\n", encoding="utf-8")
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
