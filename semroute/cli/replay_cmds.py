"""``semroute replay FILE``: drive a Router with a recorded or synthetic question stream.

FILE is either a recorded stream (CSV/JSONL with ``question`` and optional ``at`` seconds and
``tier``; without ``at`` questions arrive ``--rate`` per second) or a textless arrival trace
(the Azure LLM inference trace 2023 in ``../shared/data``): its arrival times, with
questions drawn from a pool (``--questions``, default the shipped demo questions and FAQ)
by a Zipf popularity law, so popular questions repeat as in real traffic. The schedule is
run by the planner's ``semroute.planning.replay.drive`` (``aask`` at each arrival divided by
``--speed``). ``--fake`` answers misses with an in-process FakeOllama (no Ollama needed).
Outputs: per-question events (``--events``), the final stats (``--snapshot``), a report.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from . import main
from .cache_cmds import common_options, router_kwargs
from .files import read_rows
from .report_cmds import cost_options

__all__ = ["replay", "read_stream"]


def _pool(questions: Path | None) -> list[str]:
    from ..artifacts import shipped

    if questions is not None:
        return [r["question"] for r in read_rows(questions, ("question",))]
    demo = read_rows(shipped("data", "demo_queries.csv"), ("question",))
    faq = read_rows(shipped("data", "traffic_faq.csv"), ("question",))
    return list(dict.fromkeys([r["question"] for r in faq] + [r["question"] for r in demo]))


def read_stream(path: Path, *, questions: Path | None, limit: int | None, rate: float, zipf: float,
                seed: int) -> list[tuple[float, str, str | None]]:
    """(arrival seconds, question, tier or None) in arrival order."""
    import numpy as np

    from ..errors import ConfigError
    from ..planning.trace import is_azure_trace, read_azure_trace

    header = path.read_text(encoding="utf-8-sig").split("\n", 1)[0].split(",") if path.exists() else []
    if path.suffix.lower() == ".csv" and is_azure_trace([h.strip() for h in header]):
        arrivals = read_azure_trace(path)[0][:limit]
        pool = _pool(questions)
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(pool))  # which questions are popular: seeded, not file order
        weights = 1.0 / np.arange(1, len(pool) + 1) ** zipf
        picks = rng.choice(len(pool), size=len(arrivals), p=weights / weights.sum())
        return [(float(a), pool[order[k]], None) for a, k in zip(arrivals, picks)]
    rows = read_rows(path, ("question",))[:limit]
    stream = []
    for i, row in enumerate(rows):
        try:
            at = float(row["at"]) if str(row.get("at") or "").strip() else i / rate
        except ValueError:
            raise ConfigError(f"{path}: row {i + 1}: at must be seconds, got {row['at']!r}") from None
        stream.append((at, row["question"], (row.get("tier") or "").strip() or None))
    return sorted(stream, key=lambda item: item[0])


def _event(at: float, question: str, answer: Any, error: Exception | None) -> dict[str, Any]:
    if answer is None:
        return {"at": at, "question": question, "source": None, "error": type(error).__name__}
    # A miss that joined an identical one in flight carries the leader's tokens but made no model call.
    called = answer.source in ("small", "large") and "llm" in (answer.timings_ms or {})
    return {"at": at, "question": question, "source": answer.source, "latency_ms": answer.latency_ms,
            "model_call": called, "prompt_tokens": answer.prompt_tokens if called else 0,
            "completion_tokens": answer.completion_tokens if called else 0, "similarity": answer.similarity}


@main.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--questions", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Question pool for a trace without text (default: the shipped FAQ and demo questions).")
@click.option("--limit", type=click.IntRange(1, None), default=None, help="Replay only the first N requests.")
@click.option("--speed", type=click.FloatRange(0, None, min_open=True), default=1.0, show_default=True,
              help="Arrival times are divided by this (60: an hour of trace in a minute).")
@click.option("--rate", type=click.FloatRange(0, None, min_open=True), default=10.0, show_default=True,
              help="Questions per second for a stream without `at` times.")
@click.option("--zipf", type=click.FloatRange(0, None), default=1.1, show_default=True,
              help="Popularity skew when drawing questions for a textless trace (0: uniform).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--fake", is_flag=True, help="Answer misses with an in-process FakeOllama (no Ollama needed).")
@click.option("--warm", "warm_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Warm the cache from this FAQ (CSV/JSONL) before replaying.")
@click.option("--events", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write one JSON line per question (arrival, source, latency, tokens).")
@click.option("--snapshot", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the router's final stats as JSON (for `semroute stats --snapshot`, `semroute report`).")
@click.option("--report", "report_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also write the PNG report and summary.md into this directory.")
@cost_options
@common_options
def replay(file: Path, questions: Path | None, limit: int | None, speed: float, rate: float, zipf: float, seed: int,
           fake: bool, warm_file: Path | None, events: Path | None, snapshot: Path | None, report_dir: Path | None,
           config: Path | None, data_dir: Path | None, namespace: str | None, ollama_url: str | None,
           redis_url: str | None, **cost: Any) -> None:
    """Drive a Router with the question stream in FILE and record what happened."""
    from ..planning.replay import drive
    from ..router import Router
    from ..savings import savings

    stream = read_stream(file, questions=questions, limit=limit, rate=rate, zipf=zipf, seed=seed)
    kwargs = router_kwargs(config, data_dir, namespace, ollama_url, redis_url)
    recorded: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        if fake:
            _use_fake(stack, kwargs, keep_data=data_dir is not None or config is not None)
        router = stack.enter_context(Router(**kwargs))  # type: ignore[arg-type]
        if warm_file is not None:
            from ..warm_files import read_warm_file

            router.warm(read_warm_file(warm_file)[0], on_bad="skip")
        started = time.perf_counter()
        _, errors = asyncio.run(drive(router, stream, speed, warm_up=False,
                                      on_answer=lambda *outcome: recorded.append(_event(*outcome))))
        wall = time.perf_counter() - started
        stats = router.stats()
    if stream:  # the period the own servers are paid for is the stream's, not the sped-up wall time
        stats["period_s"] = stream[-1][0] - stream[0][0]
        from .report_cmds import _cost

        stats["savings"] = savings(stats, _cost(dict(cost)))
    _write(recorded, stats, events=events, snapshot=snapshot, report_dir=report_dir, cost=cost)
    mix = {s: sum(1 for e in recorded if e["source"] == s) for s in ("exact", "semantic", "small", "large")}
    click.echo(f"replayed {len(recorded)} questions in {wall:.1f} s: "
               + ", ".join(f"{s} {n}" for s, n in mix.items()) + (f"; errors {errors}" if errors else ""))


def _use_fake(stack: contextlib.ExitStack, kwargs: dict[str, object], *, keep_data: bool) -> None:
    """Point every tier at one in-process FakeOllama; without a data directory, a temporary cache."""
    from ..testing import FakeOllama

    tiers = kwargs["tiers"]
    assert isinstance(tiers, dict)
    fake = stack.enter_context(FakeOllama(sorted({t.model for t in tiers.values()})))
    kwargs["tiers"] = {name: replace(t, hosts=(fake.url,)) for name, t in tiers.items()}
    if not keep_data:  # never fill the user's real cache with a fake model's answers
        kwargs["data_dir"] = stack.enter_context(tempfile.TemporaryDirectory())


def _write(recorded: list[dict[str, Any]], stats: dict[str, Any], *, events: Path | None, snapshot: Path | None,
           report_dir: Path | None, cost: dict[str, Any]) -> None:
    from .report_cmds import _cost

    recorded.sort(key=lambda e: e["at"])
    if events is not None:
        events.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in recorded), encoding="utf-8")
    if snapshot is not None:
        snapshot.write_text(json.dumps(stats, default=str, indent=1) + "\n", encoding="utf-8")
    if report_dir is not None:
        from ..reporting import write_report

        write_report(report_dir, snapshot=stats, events=recorded, cost=_cost(cost))
