"""``manage.py semroute_stats [--json]``: cache size, counters and instances of the app's Router.

Counters and latencies are this process's own (a fresh command process has served nothing);
a serving worker's live numbers are at its ``metrics/`` view. The cache size and the tiers'
instances are shared facts: with a shared store (Redis) the entry count is the fleet's.
"""

from __future__ import annotations

import json as jsonlib

from django.core.management.base import BaseCommand, CommandError

from semroute.errors import SemrouteError
from semroute.integrations.django import get_router


class Command(BaseCommand):
    help = "Show the semroute cache size, counters and each tier's instances."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--json", action="store_true", dest="as_json", help="print one JSON object")

    def handle(self, *args, as_json: bool = False, **options) -> None:
        router = get_router()
        try:
            stats = {"entries": len(router.pipeline.cache), **router.stats()}
        except SemrouteError as exc:
            raise CommandError(f"{type(exc).__name__}: {exc}") from exc
        if as_json:
            self.stdout.write(_dumps(stats))
            return
        self.stdout.write(f"entries: {stats['entries']}")
        for name, value in sorted(stats["counters"].items()):
            self.stdout.write(f"{name}: {value:g}")
        for tier, instances in stats["instances"].items():
            for state in instances:
                self.stdout.write(f"tier {tier}: {_brief(state)}")


def _dumps(stats: dict) -> str:
    return jsonlib.dumps(stats, default=str, sort_keys=True)


def _brief(state: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in state.items())
