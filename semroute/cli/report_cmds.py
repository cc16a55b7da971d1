"""CLI commands for the money and the pictures: ``stats``, ``replay`` and ``report``.

``semroute stats`` shows counters, latency and savings of a running gateway (``--url``, its
``/stats``) or of a saved snapshot (``--snapshot``, what ``replay --snapshot`` writes or
``json.dump(router.stats())``). ``semroute replay FILE`` drives a Router with a recorded
stream (CSV/JSONL: question, optional at, tier, namespace) or a textless arrival trace (the
Azure 2023 trace: questions drawn from a pool by popularity); ``semroute report`` turns a
snapshot and/or replay events into PNGs and a Markdown summary.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from . import main, typed_errors
from .cache_cmds import common_options

__all__ = ["stats", "report", "cost_options"]


def cost_options(fn: Callable[..., None]) -> Callable[..., None]:
    """The ``CostModel`` as options (defaults: ``semroute.savings.CostModel``)."""
    for option in (
        click.option("--currency", default="USD", show_default=True),
        click.option("--slots-per-server", default=1, show_default=True, type=click.IntRange(1, None),
                     help="Answers one own server generates at once (OLLAMA_NUM_PARALLEL)."),
        click.option("--servers", default=1, show_default=True, type=click.IntRange(1, None),
                     help="Own servers running the model tiers."),
        click.option("--server-per-month", default=200.0, show_default=True, type=click.FloatRange(0, None),
                     help="Cost of one own server per month."),
        click.option("--api-output-per-1m", default=0.60, show_default=True, type=click.FloatRange(0, None),
                     help="Reference API price per 1M output tokens (default: gpt-4o-mini, July 2024)."),
        click.option("--api-input-per-1m", default=0.15, show_default=True, type=click.FloatRange(0, None),
                     help="Reference API price per 1M input tokens."),
    ):
        fn = option(fn)
    return fn


def _cost(kwargs: dict[str, Any]):
    from ..savings import CostModel

    names = ("api_input_per_1m", "api_output_per_1m", "server_per_month", "servers", "slots_per_server", "currency")
    return CostModel(**{n: kwargs.pop(n) for n in names})


def load_json(path: Path) -> Any:
    from ..errors import ConfigError

    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such file") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not a JSON snapshot: {exc}") from exc


def load_events(path: Path) -> list[dict[str, Any]]:
    from ..errors import ConfigError

    try:
        lines = path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such file") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not replay events (JSON lines): {exc}") from exc


def _fetch(url: str) -> Any:
    import httpx

    from ..errors import BackendError
    from ..redact import redact_url

    try:
        response = httpx.get(url.rstrip("/") + "/stats", timeout=10.0)
        response.raise_for_status()
        return response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise BackendError(f"cannot read {redact_url(url)}/stats: {exc}", instance=redact_url(url)) from exc


@main.command()
@click.option("--url", default=None, help="A running `semroute serve` gateway (its /stats).")
@click.option("--snapshot", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A saved snapshot: `semroute replay --snapshot`, or json.dump(router.stats()).")
@click.option("--json", "as_json", is_flag=True, help="Print counters, latency and savings as one JSON object.")
@cost_options
@typed_errors
def stats(url: str | None, snapshot: Path | None, as_json: bool, **kwargs: Any) -> None:
    """Hit rate, tier mix, tokens, latency and money saved, from a gateway or a snapshot."""
    from ..errors import InvalidRequest
    from ..savings import savings

    if (url is None) == (snapshot is None):
        raise InvalidRequest("say where the numbers are: --url of a running gateway or --snapshot FILE "
                             "(a new process has served nothing)")
    snap = _fetch(url) if url is not None else load_json(snapshot)  # type: ignore[arg-type]
    if not isinstance(snap, dict) or not isinstance(snap.get("counters"), dict):
        raise InvalidRequest("not a semroute stats snapshot (no counters)")
    snap["savings"] = money = savings(snap, _cost(kwargs))
    if as_json:
        click.echo(json.dumps(snap, default=str, sort_keys=True))
        return
    for line in _lines(snap, money):
        click.echo(line)


def _lines(snap: dict[str, Any], money: dict[str, Any]) -> list[str]:
    c, tokens, api, own = snap["counters"], money["tokens"], money["api"], money["own"]
    currency = money["cost_model"]["currency"]
    rate = money["hit_rate"]
    lines = [f"questions: {money['questions']:g}  hit rate: {'n/a' if rate is None else f'{100 * rate:.1f}%'}",
             "answers: " + "  ".join(f"{s} {c.get(f'answers.{s}', 0):g}" for s in ("exact", "semantic", "small", "large")),
             "tier calls: " + "  ".join(f"{t} {n:g}" for t, n in money["tier_calls"].items()),
             f"tokens: prompt {tokens['prompt']:g}  completion {tokens['completion']:g}  avoided "
             f"{tokens['completion_avoided']:g} ({tokens['completion_avoided_estimated']:g} estimated)"]
    for name, stats in sorted(snap.get("latency_ms", {}).items()):
        if name.startswith("latency.") and stats:
            lines.append(f"{name}: p50 {stats['p50']:.1f} ms  p95 {stats['p95']:.1f} ms  n={stats['count']:g}")
    fmt = lambda v: "n/a" if v is None else f"{v:.4g}"  # noqa: E731
    lines += [f"API ({currency}): without cache {fmt(api['cost_without_cache'])}  with cache {fmt(api['cost_of_misses'])}  "
              f"saved {fmt(api['saved'])}  per 1,000 questions {fmt(api['per_1000_questions_with_cache'])}",
              f"own servers ({currency}): {fmt(own['cost'])} over {money['period_s']:.0f} s  per 1,000 questions "
              f"{fmt(own['per_1000_questions'])}  server-seconds avoided {own['server_seconds_avoided']:.1f}"]
    return lines


@main.command()
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory for the PNGs and summary.md.")
@click.option("--snapshot", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A stats snapshot (JSON): latency histograms, tier mix, savings.")
@click.option("--events", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Replay events (JSON lines from `semroute replay --events`): latency per tier, hit rate over time.")
@cost_options
@typed_errors
def report(out: Path, snapshot: Path | None, events: Path | None, **kwargs: Any) -> None:
    """Write PNGs (latency per tier, hit rate over time, tier mix, savings) and a Markdown summary."""
    from ..errors import InvalidRequest
    from ..reporting import write_report

    if snapshot is None and events is None:
        raise InvalidRequest("give --snapshot FILE and/or --events FILE (semroute replay writes both)")
    written = write_report(out, snapshot=None if snapshot is None else load_json(snapshot),
                           events=None if events is None else load_events(events), cost=_cost(kwargs))
    for path in written:
        click.echo(str(path))
