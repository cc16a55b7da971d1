"""Pictures of a router's traffic: latency per tier, hit rate over time, tier mix, savings, plus a Markdown summary.

Inputs are a metrics snapshot (``Router.stats()`` as JSON: counters, histograms, savings) and/or
the per-question events of a replay (``semroute replay --events``: arrival time, source,
latency, tokens). Events give exact latency distributions and the hit rate over time; a
snapshot alone gives the latency histograms, tier mix and savings (hit rate over time needs
events). Money comes from ``semroute.savings`` under the given ``CostModel``. matplotlib
(the ``plot`` extra) is imported only here, and only when a report is written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InvalidRequest
from .savings import CostModel, savings

__all__ = ["write_report", "snapshot_from_events"]

SOURCES = ("exact", "semantic", "small", "large")
_COLOURS = {"exact": "#2b8a3e", "semantic": "#74b816", "small": "#1c7ed6", "large": "#e8590c"}


def snapshot_from_events(events: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Counters a replay's events imply (answers per source, tier calls, tokens generated).

    Tokens avoided by hits are not in the events: take them from the replay's snapshot.
    """
    counters: dict[str, float] = {}
    for e in events:
        source = e.get("source")
        if source is None:
            continue
        counters[f"answers.{source}"] = counters.get(f"answers.{source}", 0) + 1
        if source in ("small", "large") and not e.get("model_call", True):
            counters["requests.coalesced"] = counters.get("requests.coalesced", 0) + 1
        elif source in ("small", "large"):
            counters[f"tier.{source}.answered"] = counters.get(f"tier.{source}.answered", 0) + 1
            for kind in ("prompt", "completion"):
                counters[f"tokens.{kind}"] = counters.get(f"tokens.{kind}", 0) + e.get(f"{kind}_tokens", 0)
    at = [e["at"] for e in events] or [0.0]
    return {"counters": counters, "started": 0.0, "taken": float(max(at))}


def write_report(out: Path, *, snapshot: Mapping[str, Any] | None = None,
                 events: Sequence[Mapping[str, Any]] | None = None, cost: CostModel | None = None) -> list[Path]:
    """Write the PNGs and ``summary.md`` into ``out``; the paths written."""
    import matplotlib

    matplotlib.use("Agg")  # files only: never a window, never a display needed
    if snapshot is None and not events:
        raise InvalidRequest("a report needs a snapshot or events")
    out.mkdir(parents=True, exist_ok=True)
    snap = dict(snapshot) if snapshot is not None else snapshot_from_events(events or ())
    money = savings(snap, cost)
    written = [_latency(out, snap, events), _tier_mix(out, snap), _savings_png(out, money)]
    if events:
        written.append(_hit_rate(out, events))
    written.append(_summary(out, snap, money, events, [p.name for p in written]))
    return written


def _figure(title: str):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.set_title(title)
    return fig, ax


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _latency(out: Path, snap: Mapping[str, Any], events: Sequence[Mapping[str, Any]] | None) -> Path:
    fig, ax = _figure("Latency per tier")
    if events:
        for source in SOURCES:
            values = np.sort([e["latency_ms"] for e in events if e.get("source") == source])
            if values.size:
                ax.step(values, np.arange(1, values.size + 1) / values.size, where="post",
                        label=f"{source} (n={values.size}, p50 {np.median(values):.1f} ms)", color=_COLOURS[source])
        ax.set_ylabel("share of answers at or below")
    else:
        hists = snap.get("histograms_ms", {})
        for source in SOURCES:
            hist = hists.get(f"latency.{source}")
            if hist and hist["count"]:
                bounds = list(hist["le_ms"])
                ax.step(bounds, np.array(hist["cumulative"]) / hist["count"], where="post",
                        label=f"{source} (n={hist['count']:g})", color=_COLOURS[source])
        ax.set_ylabel("share of answers at or below (histogram bounds)")
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms, log scale)")
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, out / "latency.png")


def _tier_mix(out: Path, snap: Mapping[str, Any]) -> Path:
    counters = snap.get("counters", {})
    counts = [counters.get(f"answers.{s}", 0) for s in SOURCES]
    fig, ax = _figure("Who answered")
    bars = ax.bar(SOURCES, counts, color=[_COLOURS[s] for s in SOURCES])
    total = sum(counts) or 1
    for bar, count in zip(bars, counts):
        ax.annotate(f"{count:g} ({100 * count / total:.0f}%)", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("answers")
    return _save(fig, out / "tier_mix.png")


def _hit_rate(out: Path, events: Sequence[Mapping[str, Any]], bins: int = 20) -> Path:
    answered = sorted((e for e in events if e.get("source")), key=lambda e: e["at"])
    at = np.array([e["at"] for e in answered], dtype=float)
    hit = np.array([e["source"] in ("exact", "semantic") for e in answered], dtype=float)
    fig, ax = _figure("Hit rate over time")
    if at.size:
        edges = np.linspace(at.min(), at.max() + 1e-9, min(bins, at.size) + 1)
        which = np.clip(np.digitize(at, edges) - 1, 0, len(edges) - 2)
        rates = [hit[which == b].mean() if np.any(which == b) else np.nan for b in range(len(edges) - 1)]
        centres = (edges[:-1] + edges[1:]) / 2
        ax.plot(centres, np.array(rates) * 100, marker="o", label="per interval")
        ax.plot(at, np.cumsum(hit) / np.arange(1, hit.size + 1) * 100, alpha=0.6, label="cumulative")
        ax.legend(fontsize=8)
    ax.set_xlabel("arrival time (s)")
    ax.set_ylabel("answered from the cache (%)")
    ax.set_ylim(0, 100)
    return _save(fig, out / "hit_rate.png")


def _savings_png(out: Path, money: Mapping[str, Any]) -> Path:
    import matplotlib.pyplot as plt

    currency = money["cost_model"]["currency"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 4), dpi=100)
    tokens = money["tokens"]
    left.bar(["generated", "avoided by hits"], [tokens["completion"], tokens["completion_avoided"]],
             color=["#1c7ed6", "#2b8a3e"])
    left.set_title("Completion tokens")
    api = money["api"]
    right.bar(["API, no cache", "API, misses only", "own servers"],
              [api["cost_without_cache"], api["cost_of_misses"], money["own"]["cost"]],
              color=["#868e96", "#1c7ed6", "#e8590c"])
    right.set_title(f"Cost of this traffic ({currency})")
    return _save(fig, out / "savings.png")


def _fmt(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}g}"


def _summary(out: Path, snap: Mapping[str, Any], money: Mapping[str, Any],
             events: Sequence[Mapping[str, Any]] | None, pictures: list[str]) -> Path:
    c = snap.get("counters", {})
    tokens, api, own, cm = money["tokens"], money["api"], money["own"], money["cost_model"]
    rate = money["hit_rate"]
    lines = [
        "# semroute traffic report", "",
        f"{money['questions']:g} questions over {money['period_s']:.0f} s; "
        f"hit rate {'n/a' if rate is None else f'{100 * rate:.1f}%'}.", "",
        "| answered by | count |", "|---|---|",
        *(f"| {s} | {c.get(f'answers.{s}', 0):g} |" for s in SOURCES), "",
        f"Completion tokens generated: {tokens['completion']:g}; avoided by hits: {tokens['completion_avoided']:g} "
        f"({tokens['completion_avoided_estimated']:g} of them estimated from answer length).", "",
        f"At {cm['api_output_per_1m']} {cm['currency']} per 1M output tokens and {cm['api_input_per_1m']} per 1M input "
        f"tokens, this traffic would cost {_fmt(api['cost_without_cache'])} on the reference API without the cache "
        f"and {_fmt(api['cost_of_misses'])} with it: {_fmt(api['saved'])} {cm['currency']} saved "
        f"({_fmt(api['per_1000_questions_without_cache'])} vs {_fmt(api['per_1000_questions_with_cache'])} per 1,000 "
        "questions).", "",
        f"{cm['servers']} own server(s) at {cm['server_per_month']} {cm['currency']}/month cost "
        f"{_fmt(own['cost'])} for this period ({_fmt(own['per_1000_questions'])} per 1,000 questions); hits "
        f"avoided {own['server_seconds_avoided']:.1f} server-seconds of generation.", "",
        *([] if events else ["Hit rate over time needs the events of a replay (`semroute replay --events FILE`).", ""]),
        *([] if "tokens.avoided" in c or not events else
          ["Tokens avoided by hits are not in the events: give the replay's snapshot too (`--snapshot`).", ""]),
        *(f"![{Path(p).stem}]({p})" for p in pictures),
    ]
    path = out / "summary.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
