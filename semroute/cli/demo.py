"""The main job behind ``semroute demo`` / ``make demo``: warm, replay, report.

Warms a cache from an FAQ, replays paraphrased, near-miss and new questions and prints each
decision (exact / semantic / small / large) with similarity and latency, then a summary.
It talks to a real Ollama when one answers at the URL; otherwise it starts two fake Ollama
servers (a fast one for the small tier, a slower one for the large tier) and says plainly
that the answers are simulated.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

from .files import read_rows
from ..artifacts import shipped
from ..redact import redact_url
from ..settings import Tier, default_tiers

__all__ = ["run_demo", "ollama_answers"]

SMALL, LARGE = "llama3.2:3b", "llama3.1:8b"


def ollama_answers(url: str, timeout_s: float = 1.0) -> bool:
    """True when an Ollama server answers ``/api/version`` at ``url``."""
    import httpx

    try:
        return httpx.get(f"{url.rstrip('/')}/api/version", timeout=timeout_s).status_code == 200
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def _tiers(ollama_url: str | None) -> Iterator[tuple[dict[str, Tier], bool]]:
    """Real tiers when Ollama answers, else two fake servers; yields (tiers, simulated)."""
    tiers = default_tiers(ollama_url)
    if ollama_answers(tiers["small"].hosts[0]):
        yield tiers, False
        return
    from ..testing import FakeOllama, Timing

    small = FakeOllama(models=(SMALL,), timing=Timing(latency_ms=60, token_delay_ms=2))
    large = FakeOllama(models=(LARGE,), timing=Timing(latency_ms=180, token_delay_ms=5))
    with small, large:
        yield {"small": Tier(SMALL, (small.url,)), "large": Tier(LARGE, (large.url,))}, True


def run_demo(
    *,
    faq: Path | None,
    queries: Path | None,
    data_dir: Path | None,
    namespace: str,
    ollama_url: str | None,
    as_json: bool,
    echo: Callable[[str], None] = print,
    redis_url: str | None = None,
) -> dict[str, object]:
    from ..router import Router

    faq_rows = read_rows(faq or shipped("data", "traffic_faq.csv"), ("question", "answer"))
    query_rows = read_rows(queries or shipped("data", "demo_queries.csv"), ("question",))
    with contextlib.ExitStack() as stack:
        tiers, simulated = stack.enter_context(_tiers(ollama_url))
        if data_dir is None:
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="semroute-demo-")))
        notice = (
            "NOTE: no Ollama answered, so two fake Ollama servers answer: model answers are SIMULATED."
            if simulated
            else f"Using the real Ollama at {redact_url(tiers['small'].hosts[0])}."
        )
        if not as_json:
            echo(notice)
        router = stack.enter_context(Router(tiers=tiers, data_dir=data_dir, namespace=namespace,
                                            redis_url=redis_url))
        if not as_json:
            echo(_embedder_line(router.pipeline.embedder.name))
        t0 = time.perf_counter()
        stored = router.warm([(r["question"], r["answer"]) for r in faq_rows])
        warm_s = time.perf_counter() - t0
        if not as_json:
            echo(f"Warmed the cache with {stored} FAQ entries in {warm_s:.1f} s (includes loading the embedder).")
            echo(f"{'#':>3}  {'decision':<9} {'expected':<9} {'sim':>5} {'ms':>8}  question")
        results = [_replay(router, i, row, as_json, echo) for i, row in enumerate(query_rows, start=1)]
        summary = _summary(router, results, simulated)
    if as_json:
        echo(json.dumps({"simulated": simulated, "results": results, "summary": summary}, ensure_ascii=False))
    else:
        _print_summary(summary, notice, echo)
    return summary


def _embedder_line(name: str) -> str:
    """Which embedder answers, and why when it is not the chosen default (its models are missing)."""
    from ..embed import DEFAULT_EMBEDDER

    if name == DEFAULT_EMBEDDER:
        return f"Embedder: {name} (multilingual: English and Turkish questions share one cache)."
    return (f"Embedder: {name}. NOTE: this build ships no trained models for {DEFAULT_EMBEDDER}, "
            "the multilingual default, so the router uses the next embedder that has them.")


def _replay(router, number: int, row: dict[str, str], as_json: bool, echo: Callable[[str], None]) -> dict[str, object]:
    answer = router.ask(row["question"])
    expected = row.get("expect", "")
    result = {
        "question": row["question"],
        "expected": expected,
        "decision": answer.source,
        "similarity": answer.similarity,
        "latency_ms": answer.latency_ms,
        "probability": answer.probability,
        "cached_question": answer.cached_question,
    }
    if not as_json:
        sim = "" if answer.similarity is None else f"{answer.similarity:.3f}"
        question = row["question"] if len(row["question"]) <= 70 else row["question"][:67] + "..."
        echo(f"{number:>3}  {answer.source:<9} {expected:<9} {sim:>5} {answer.latency_ms:>8.1f}  {question}")
    return result


def _agrees(expected: str, decision: str) -> bool:
    if expected == "miss":
        return decision in ("small", "large")
    return expected == decision


def _summary(router, results: list[dict[str, object]], simulated: bool) -> dict[str, object]:
    counts = Counter(str(r["decision"]) for r in results)
    labelled = [r for r in results if r["expected"]]
    latency = {src: router.metrics.percentiles(f"latency.{src}") for src in ("exact", "semantic", "small", "large")}
    return {
        "simulated": simulated,
        "embedder": router.pipeline.embedder.name,
        "questions": len(results),
        "decisions": dict(counts),
        "hit_rate": router.metrics.hit_rate() if results else 0.0,  # the replay is all this router answered
        "latency_ms": {src: stats for src, stats in latency.items() if stats},
        "agreement_with_expected": (
            sum(_agrees(str(r["expected"]), str(r["decision"])) for r in labelled) / len(labelled) if labelled else None
        ),
    }


def _print_summary(summary: dict[str, object], notice: str, echo: Callable[[str], None]) -> None:
    echo("")
    echo("Summary")
    echo(f"  questions: {summary['questions']}   cache hit rate: {summary['hit_rate']:.0%}")
    decisions = summary["decisions"]
    echo("  decisions: " + ", ".join(f"{k} {v}" for k, v in sorted(decisions.items())))  # type: ignore[union-attr]
    for source, stats in summary["latency_ms"].items():  # type: ignore[union-attr]
        echo(f"  {source:<9} n={stats['count']:<4.0f} p50 {stats['p50']:8.2f} ms   p95 {stats['p95']:8.2f} ms")
    if summary["agreement_with_expected"] is not None:
        echo(f"  decisions matching the expected column: {summary['agreement_with_expected']:.0%}")
    echo("  " + notice)
