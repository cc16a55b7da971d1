"""``manage.py semroute_warm FILE``: store an FAQ's question/answer pairs in the app's cache.

FILE is CSV (header row) or JSON Lines with ``question`` and ``answer`` columns, read like the
``semroute warm`` command reads it; the Router is the one ``settings.SEMROUTE`` describes (so a
shared store, e.g. Redis, is warmed for every worker). Bad files fail before anything is stored.
"""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError

from semroute.errors import SemrouteError
from semroute.integrations.django import get_router


class Command(BaseCommand):
    help = "Warm the semroute cache with question/answer pairs from a CSV or JSONL file."

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", help="CSV (header row) or .jsonl with question and answer columns")
        parser.add_argument("--namespace", default=None, help="namespace (default: the Router's)")
        parser.add_argument("--system", default=None, help="system prompt the answers were written for")
        parser.add_argument("--batch-size", type=int, default=64, help="texts embedded per batch")
        parser.add_argument("--ttl-s", type=float, default=None, help="time to live in seconds (inf: never expire)")

    def handle(self, *args, file: str, namespace: str | None, system: str | None, batch_size: int,
               ttl_s: float | None, **options) -> None:
        from semroute.cli.files import read_rows

        started = time.perf_counter()
        try:
            rows = read_rows(file, ["question", "answer"])
            stored = get_router().warm(
                [(row["question"], row["answer"]) for row in rows],
                namespace=namespace, system=system, batch_size=batch_size,
                ttl_s=ttl_s,
            ).stored
        except SemrouteError as exc:
            raise CommandError(f"{type(exc).__name__}: {exc}") from exc
        self.stdout.write(f"warmed {stored} entries from {file} in {time.perf_counter() - started:.1f} s")
