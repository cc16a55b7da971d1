"""Savings: what the cache saved, in tokens and money, computed from a metrics snapshot.

Tokens generated are Ollama's own counts (``eval_count``, ``prompt_eval_count``) summed per
tier by the pipeline. Tokens avoided are counted on each cache hit: the completion tokens the
hit entry's answer cost when this process generated it (``AnswerTokens`` remembers them by
entry id), else an estimate from the answer's length (``tokens.avoided_estimated`` says how
many of the avoided tokens were estimated: warmed FAQ answers, entries written by another
process or before a restart). Prompt tokens a hit avoided are always an estimate: the mean
prompt of this run's model calls times the hits.

``CostModel`` prices tokens at a reference API and your own servers per month; ``savings``
turns a snapshot into money saved and cost per 1,000 questions. It is not a billing system:
prices are inputs, and the defaults are examples to override.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from .errors import ConfigError

__all__ = ["CostModel", "AnswerTokens", "savings"]

# English text is about 4 characters per token for GPT-style BPE tokenizers (OpenAI's published
# rule of thumb); replaced by the ratio measured on this process's own generated answers once it has any.
CHARS_PER_TOKEN = 4.0
MONTH_S = 30 * 24 * 3600.0


@dataclass(frozen=True, slots=True)
class CostModel:
    """Prices. ``api_*_per_1m``: a reference API's price per million input / output tokens (default:
    OpenAI gpt-4o-mini's list price, USD 0.15 / 0.60, July 2024). ``server_per_month``: one of your
    own servers per month (default: USD 200, about a rented single-GPU server such as an RTX
    4000-class card), ``servers`` of them, each running ``slots_per_server`` answers at once."""

    api_input_per_1m: float = 0.15
    api_output_per_1m: float = 0.60
    server_per_month: float = 200.0
    servers: int = 1
    slots_per_server: int = 1
    currency: str = "USD"

    def __post_init__(self) -> None:
        for name in ("api_input_per_1m", "api_output_per_1m", "server_per_month"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ConfigError(f"CostModel.{name} must be a finite number >= 0, got {value!r}")
        for name in ("servers", "slots_per_server"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"CostModel.{name} must be an int >= 1, got {value!r}")


class AnswerTokens:
    """Completion tokens of the answers this process generated, by entry id (the newest ``capacity``)."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._capacity = capacity
        self._lock = threading.Lock()
        self._tokens: OrderedDict[str, int] = OrderedDict()
        self._chars = 0
        self._counted = 0

    def remember(self, entry_id: str, text: str, tokens: int) -> None:
        if tokens <= 0:
            return
        with self._lock:
            self._tokens[entry_id] = tokens
            self._tokens.move_to_end(entry_id)
            if len(self._tokens) > self._capacity:
                self._tokens.popitem(last=False)
            self._chars += len(text)
            self._counted += tokens

    def of(self, entry_id: str, text: str) -> tuple[int, bool]:
        """(completion tokens, estimated?) of a cached answer."""
        with self._lock:
            known = self._tokens.get(entry_id)
            ratio = self._counted / self._chars if self._chars else 1 / CHARS_PER_TOKEN
        if known is not None:
            return known, False
        return max(1, round(len(text) * ratio)), True


def savings(snapshot: Mapping[str, Any], cost: CostModel | None = None, *, period_s: float | None = None) -> dict[str, Any]:
    """Tokens, money saved and cost per 1,000 questions from a ``Metrics.snapshot()``.

    ``period_s``: the time the snapshot covers (default: its ``period_s``, e.g. a replayed trace's
    span, else ``taken - started``); your servers cost ``server_per_month`` for that share of a
    30-day month whatever the traffic.
    """
    cost = cost or CostModel()
    c = snapshot.get("counters", {})
    hits = c.get("answers.exact", 0) + c.get("answers.semantic", 0)
    misses = c.get("answers.small", 0) + c.get("answers.large", 0)
    questions = hits + misses
    calls = sum(c.get(f"tier.{t}.answered", 0) for t in ("small", "large"))
    prompt, completion = c.get("tokens.prompt", 0), c.get("tokens.completion", 0)
    avoided = c.get("tokens.avoided", 0)
    prompt_avoided = hits * (prompt / calls) if calls else 0.0
    if period_s is None and snapshot.get("period_s") is not None:
        period_s = float(snapshot["period_s"])
    if period_s is None:
        period_s = max(0.0, float(snapshot.get("taken", 0.0)) - float(snapshot.get("started", 0.0)))
    own = cost.server_per_month * cost.servers * period_s / MONTH_S
    llm_ms = snapshot.get("histograms_ms", {}).get("step.llm", {})
    mean_llm_s = llm_ms["sum_ms"] / llm_ms["count"] / 1000 if llm_ms.get("count") else 0.0
    server_s_avoided = hits * mean_llm_s / cost.slots_per_server
    api_generated = prompt / 1e6 * cost.api_input_per_1m + completion / 1e6 * cost.api_output_per_1m
    api_avoided = prompt_avoided / 1e6 * cost.api_input_per_1m + avoided / 1e6 * cost.api_output_per_1m
    per_1000 = (lambda money: money / questions * 1000 if questions else None)
    return {
        "questions": questions, "hits": hits, "misses": misses,
        "coalesced": c.get("requests.coalesced", 0),  # misses that shared another request's model call
        "hit_rate": hits / questions if questions else None,
        "tier_calls": {t: c.get(f"tier.{t}.answered", 0) + c.get(f"tier.{t}.failed", 0) for t in ("small", "large")},
        "tokens": {"prompt": prompt, "completion": completion, "completion_avoided": avoided,
                   "completion_avoided_estimated": c.get("tokens.avoided_estimated", 0),
                   "prompt_avoided_estimated": prompt_avoided},
        "period_s": period_s,
        "api": {"cost_without_cache": api_generated + api_avoided, "cost_of_misses": api_generated,
                "saved": api_avoided, "per_1000_questions_without_cache": per_1000(api_generated + api_avoided),
                "per_1000_questions_with_cache": per_1000(api_generated)},
        "own": {"cost": own, "per_1000_questions": per_1000(own), "server_seconds_avoided": server_s_avoided,
                "saved": cost.server_per_month * server_s_avoided / MONTH_S},
        "cost_model": asdict(cost),
    }
