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
    config: Path | None = None,
    redis_url: str | None = None,
) -> dict[str, object]:
    from ..config import load_config
    from ..router import Router

    faq_rows = read_rows(faq or shipped("data", "traffic_faq.csv"), ("question", "answer"))
    query_rows = read_rows(queries or shipped("data", "demo_queries.csv"), ("question",))
    extra = {k: v for k, v in (load_config(config) if config is not None else {}).items() if k != "tiers"}
    with contextlib.ExitStack() as stack:
        tiers, simulated = stack.enter_context(_tiers(ollama_url))
        if data_dir is None:
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="semroute-demo-")))
        notice = _notice(tiers, simulated)
        if not as_json:
            echo(notice)
        extra.update(tiers=tiers, data_dir=data_dir, namespace=namespace)
        if redis_url is not None:  # the option overrides the file's [redis] url
            extra["redis_url"] = redis_url
        router = stack.enter_context(Router(**extra))  # type: ignore[arg-type]
        if not as_json:
            echo(_embedder_line(router.pipeline.embedder.name))
        t0 = time.perf_counter()
        stored = router.warm([(r["question"], r["answer"]) for r in faq_rows]).stored
        warm_s = time.perf_counter() - t0
        if not as_json:
            echo(f"Warmed the cache with {stored} FAQ entries in {warm_s:.1f} s (includes loading the embedder).")
            echo("Each question, then its answer; 'nearest' is the cosine of the nearest cached question.")
            echo(f"{'#':>3}  {'decision':<9} {'expected':<9} {'nearest':>7} {'ms':>8}  question")
        results = [_replay(router, i, row, as_json, echo) for i, row in enumerate(query_rows, start=1)]
        summary = _summary(router, results, simulated)
    if as_json:
        echo(json.dumps({"simulated": simulated, "results": results, "summary": summary}, ensure_ascii=False))
    else:
        _print_summary(summary, notice, echo)
    return summary


def _notice(tiers: dict[str, Tier], simulated: bool) -> str:
    if simulated:
        return ("NOTE: no Ollama answered, so two fake Ollama servers answer: model answers and model "
                "latencies are SIMULATED (a fixed 60 ms small / 180 ms large plus a few ms per token); "
                "cache decisions, similarities and cache latencies are real.")
    return f"Ollama answered at {redact_url(tiers['small'].hosts[0])}: model answers and latencies are that server's."


def _short(text: str, width: int = 90) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


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
    refused = answer.verdict if answer.verdict is not None and not answer.verdict.accepted else None
    result = {
        "question": row["question"],
        "expected": expected,
        "decision": answer.source,
        "answer": answer.text,
        "similarity": answer.similarity,
        "nearest_similarity": answer.nearest_similarity,
        "latency_ms": answer.latency_ms,
        "probability": answer.probability,
        "cached_question": answer.cached_question,
        "refused_because": None if refused is None else refused.reason,
    }
    if not as_json:
        near = "" if answer.nearest_similarity is None else f"{answer.nearest_similarity:.3f}"
        echo(f"{number:>3}  {answer.source:<9} {expected:<9} {near:>7} {answer.latency_ms:>8.1f}  "
             f"{_short(row['question'], 70)}")
        if answer.cached:
            echo(f"{'':>5}cached answer to {_short(answer.cached_question or '', 60)!r}: {_short(answer.text, 70)}")
        else:
            echo(f"{'':>5}{answer.model}: {_short(answer.text, 80)}")
            if refused is not None:
                echo(f"{'':>5}nearest refused: {_short(refused.reason, 100)}")
    return result


def _agrees_cache(expected: str, decision: str) -> bool:
    """Did the cache decide as expected? (``miss``: not served from the cache, whichever tier.)"""
    if expected == "miss":
        return decision in ("small", "large")
    return expected == decision


def _summary(router, results: list[dict[str, object]], simulated: bool) -> dict[str, object]:
    counts = Counter(str(r["decision"]) for r in results)
    latency = {src: router.metrics.percentiles(f"latency.{src}") for src in ("exact", "semantic", "small", "large")}
    cache_rows = [r for r in results if r["expected"] in ("exact", "semantic", "miss")]
    tier_rows = [r for r in results if r["expected"] in ("small", "large")]
    return {
        "simulated": simulated,
        "embedder": router.pipeline.embedder.name,
        "questions": len(results),
        "decisions": dict(counts),
        "hit_rate": router.metrics.hit_rate() if results else 0.0,  # the replay is all this router answered
        "latency_ms": {src: stats for src, stats in latency.items() if stats},
        # Two separate questions: did the cache hit or miss as expected, and did a new question go
        # to the expected tier (a near miss answered by either tier is a correct miss, not a tier match).
        "cache_matching_expected": _share(_agrees_cache(str(r["expected"]), str(r["decision"])) for r in cache_rows),
        "cache_rows": len(cache_rows),
        "tier_matching_expected": _share(r["expected"] == r["decision"] for r in tier_rows),
        "tier_rows": len(tier_rows),
        # both together (the key older reports had); each row judged by its own question
        "agreement_with_expected": _share(
            [_agrees_cache(str(r["expected"]), str(r["decision"])) for r in cache_rows]
            + [r["expected"] == r["decision"] for r in tier_rows]),
    }


def _share(flags) -> float | None:
    values = list(flags)
    return sum(values) / len(values) if values else None


def _print_summary(summary: dict[str, object], notice: str, echo: Callable[[str], None]) -> None:
    echo("")
    echo("Summary")
    echo(f"  questions: {summary['questions']}   cache hit rate: {summary['hit_rate']:.0%}")
    decisions = summary["decisions"]
    echo("  decisions: " + ", ".join(f"{k} {v}" for k, v in sorted(decisions.items())))  # type: ignore[union-attr]
    for source, stats in summary["latency_ms"].items():  # type: ignore[union-attr]
        echo(f"  {source:<9} n={stats['count']:<4.0f} p50 {stats['p50']:8.2f} ms   p95 {stats['p95']:8.2f} ms")
    if summary["cache_matching_expected"] is not None:
        echo(f"  cache hit/miss as expected: {summary['cache_matching_expected']:.0%} of {summary['cache_rows']} "
             "rows expected exact, semantic or miss")
    if summary["tier_matching_expected"] is not None:
        echo(f"  tier as expected: {summary['tier_matching_expected']:.0%} of {summary['tier_rows']} "
             "new questions expected small or large")
    echo("  " + notice)
