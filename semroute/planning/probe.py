"""Measuring one Ollama server's profile with a short, bounded load (``semroute probe``).

For 1, 2, 4, ... up to ``max_parallel`` concurrent ``/api/generate`` requests (each asks for
``num_predict`` tokens), it reads Ollama's own timings from every answer: ``eval_count`` /
``eval_duration`` is one stream's decode speed at that parallelism, their sum over the requests
running together is the total throughput, ``prompt_eval_count`` / ``prompt_eval_duration`` the
prompt rate. One streamed request measures the time to the first token. The result is a
``ServerProfile`` whose throughput curve is interpolated between the measured levels.

Bounded: each level runs rounds until its share of ``duration_s`` is spent (at least one
round), and every request has a timeout. It talks HTTP with httpx (a core dependency); it does
not pull models, change server settings or retry.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ..errors import BackendError, ConfigError
from .profile import ServerProfile

__all__ = ["ProbeSettings", "ProbeLevel", "probe_server", "levels_for"]

_PROMPT = ("Explain in plain words, step by step, what a driver must do at an unmarked crossroads "
           "when another car arrives from the right at the same time.")


@dataclass(frozen=True, slots=True)
class ProbeSettings:
    """How hard and how long to probe: up to ``max_parallel`` streams, ``duration_s`` in all."""

    max_parallel: int = 8
    duration_s: float = 60.0
    num_predict: int = 128
    timeout_s: float = 120.0

    def __post_init__(self) -> None:
        if not isinstance(self.max_parallel, int) or not 1 <= self.max_parallel <= 64:
            raise ConfigError(f"ProbeSettings.max_parallel must be an int in [1, 64], got {self.max_parallel!r}")
        if not 0 < self.duration_s <= 3600:
            raise ConfigError(f"ProbeSettings.duration_s must be in (0, 3600], got {self.duration_s!r}")
        if not isinstance(self.num_predict, int) or self.num_predict < 2:
            raise ConfigError(f"ProbeSettings.num_predict must be an int >= 2, got {self.num_predict!r}")
        if not self.timeout_s > 0:
            raise ConfigError(f"ProbeSettings.timeout_s must be > 0, got {self.timeout_s!r}")


@dataclass(frozen=True, slots=True)
class ProbeLevel:
    """What ``parallel`` concurrent requests measured: per-stream and total tokens/s."""

    parallel: int
    stream_tokens_per_s: float
    total_tokens_per_s: float
    prompt_tokens_per_s: float
    requests: int


def levels_for(max_parallel: int) -> list[int]:
    """1, 2, 4, ... and ``max_parallel`` itself."""
    levels, k = [], 1
    while k < max_parallel:
        levels.append(k)
        k *= 2
    return [*levels, max_parallel]


def _generate(client: Any, url: str, model: str, num_predict: int) -> dict[str, Any]:
    import httpx

    body = {"model": model, "prompt": _PROMPT, "stream": False,
            "options": {"num_predict": num_predict, "temperature": 0}}
    try:
        response = client.post(f"{url}/api/generate", json=body)
    except httpx.HTTPError as exc:
        raise BackendError(f"probe request failed: {exc}", instance=url) from exc
    if response.status_code != 200:
        raise BackendError(f"probe got HTTP {response.status_code}: {response.text[:200]}", instance=url)
    data = response.json()
    if not data.get("eval_count") or not data.get("eval_duration"):
        raise BackendError("the answer has no eval_count/eval_duration (is this Ollama?)", instance=url)
    return data


def _level(client: Any, url: str, model: str, k: int, settings: ProbeSettings, budget_s: float) -> ProbeLevel:
    answers: list[dict[str, Any]] = []
    totals: list[float] = []
    deadline = time.monotonic() + budget_s
    with ThreadPoolExecutor(max_workers=k) as pool:
        while True:
            batch = list(pool.map(lambda _: _generate(client, url, model, settings.num_predict), range(k)))
            answers += batch
            totals.append(sum(a["eval_count"] / (a["eval_duration"] / 1e9) for a in batch))
            if time.monotonic() >= deadline:
                break
    per_stream = [a["eval_count"] / (a["eval_duration"] / 1e9) for a in answers]
    prompts = [a["prompt_eval_count"] / (a["prompt_eval_duration"] / 1e9) for a in answers
               if a.get("prompt_eval_count") and a.get("prompt_eval_duration")]
    return ProbeLevel(k, sum(per_stream) / len(per_stream), sum(totals) / len(totals),
                      sum(prompts) / len(prompts) if prompts else 0.0, len(answers))


def _first_token_s(client: Any, url: str, model: str) -> tuple[float, float]:
    """(seconds to the first streamed token, of which prompt processing) for one request."""
    body = {"model": model, "prompt": _PROMPT, "stream": True, "options": {"num_predict": 8, "temperature": 0}}
    started = time.perf_counter()
    first = None
    prompt_s = 0.0
    with client.stream("POST", f"{url}/api/generate", json=body) as response:
        if response.status_code != 200:
            raise BackendError(f"probe got HTTP {response.status_code}", instance=url)
        for line in response.iter_lines():
            if first is None:
                first = time.perf_counter() - started
            if line.strip():
                last = json.loads(line)
                if last.get("done"):
                    prompt_s = (last.get("prompt_eval_duration") or 0) / 1e9
    return (first or 0.0), prompt_s


def _curve(levels: list[ProbeLevel], slots: int) -> tuple[float, ...]:
    """Total throughput at 1..slots as a multiple of one stream's, linear between measured levels."""
    base = levels[0].total_tokens_per_s
    points = [(lv.parallel, lv.total_tokens_per_s / base) for lv in levels]
    out = []
    for k in range(1, slots + 1):
        below = max((p for p in points if p[0] <= k), key=lambda p: p[0])
        above = min((p for p in points if p[0] >= k), key=lambda p: p[0], default=below)
        if above[0] == below[0]:
            out.append(below[1])
        else:
            out.append(below[1] + (above[1] - below[1]) * (k - below[0]) / (above[0] - below[0]))
    out[0] = 1.0
    return tuple(round(v, 4) for v in out)


def _shown(url: str) -> str:
    """``url`` without userinfo or query (secrets never leave; the profile is a shareable file)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def probe_server(url: str, model: str, settings: ProbeSettings = ProbeSettings(), *,
                 progress: Callable[[str], None] = lambda _: None) -> tuple[ServerProfile, list[ProbeLevel]]:
    """Measure ``model`` on the Ollama at ``url``; (profile, what each level measured)."""
    import httpx

    url = url.rstrip("/")
    levels = levels_for(settings.max_parallel)
    budget = settings.duration_s / (len(levels) + 1)
    limits = httpx.Limits(max_connections=settings.max_parallel + 1)
    with httpx.Client(timeout=settings.timeout_s, limits=limits) as client:
        _generate(client, url, model, 2)  # load the model: a cold load is not the steady state
        ttft, prompt_s = _first_token_s(client, url, model)
        measured = []
        for k in levels:
            level = _level(client, url, model, k, settings, budget)
            progress(f"{k} parallel: {level.stream_tokens_per_s:.1f} tokens/s per stream, "
                     f"{level.total_tokens_per_s:.1f} in total ({level.requests} requests)")
            measured.append(level)
    single = measured[0]
    prompt_rate = single.prompt_tokens_per_s or 1e6
    profile = ServerProfile(
        model=model, tokens_per_s=round(single.stream_tokens_per_s, 2), slots=settings.max_parallel,
        prompt_tokens_per_s=round(prompt_rate, 1), ttft_s=round(max(0.0, ttft - prompt_s), 4),
        throughput_curve=_curve(measured, settings.max_parallel),
        source=f"semroute probe {_shown(url)} model {model}, {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, "
        f"levels {levels}, {sum(lv.requests for lv in measured)} requests",
    )
    return profile, measured
