"""Tens of thousands of hypothesis cases over every public entry point; untyped errors counted."""

from __future__ import annotations

import logging
import os
import tempfile
import traceback
from collections import Counter
from pathlib import Path

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings

from reliability_helpers import SMALL, light_router
from semroute.backends.ollama import OllamaBackend
from semroute.backends.pool import Pool
from semroute.cache import MemoryStore
from semroute.cli import main
from semroute.embed import OllamaEmbedder
from semroute.testing import FakeFleet
from semroute.testing.fuzz import Targets, calls


def _cli(argv: list[str]) -> BaseException | None:
    here = os.getcwd()
    with tempfile.TemporaryDirectory() as scratch:  # fuzzed arguments name paths: keep them out of the checkout
        os.chdir(scratch)
        try:
            result = CliRunner().invoke(main, argv)
        finally:
            os.chdir(here)
    return None if result.exception is None or isinstance(result.exception, SystemExit) else result.exception


def run(cases: int) -> dict[str, object]:
    outcomes: Counter[str] = Counter()
    by_entry: Counter[str] = Counter()
    untyped: Counter[str] = Counter()
    examples: dict[str, str] = {}
    logging.disable(logging.CRITICAL)
    tmp = Path(tempfile.mkdtemp(prefix="semroute-fuzz-"))
    with FakeFleet(2) as fleet:
        router = light_router(fleet.urls, tmp / "router")
        pool = Pool([OllamaBackend(u) for u in fleet.urls])
        store = MemoryStore(tmp / "store")
        embedder = OllamaEmbedder(SMALL, host=fleet.urls[0])
        targets = Targets(router=router, pool=pool, store=store, embedder=embedder, cli=_cli)

        @settings(max_examples=cases, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(calls())
        def fuzz(call) -> None:
            outcome, error = targets.run(call)
            outcomes[outcome] += 1
            by_entry[call.name] += 1
            if outcome == "untyped":
                frame = traceback.extract_tb(error.__traceback__)[-1]
                key = f"{call.name}: {type(error).__name__} at {Path(frame.filename).name}:{frame.lineno}"
                untyped[key] += 1
                examples.setdefault(key, f"{call!r}: {error}"[:400])

        try:
            fuzz()
        finally:
            logging.disable(logging.NOTSET)
            router.close()
            pool.close()
            store.close()
            embedder.close()
    total = sum(outcomes.values())
    return {"cases": total, "outcomes": dict(outcomes), "untyped": sum(untyped.values()),
            "untyped_kinds": dict(untyped), "examples": examples, "per_entry_point": dict(by_entry),
            "target_met": total >= 10_000 and not untyped}
