"""Recovery under load: one of three instances breaks for a while, then heals; how soon does it
carry its share again? Real clock, default pool settings and strategy, closed-loop async clients."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from pathlib import Path

from semroute.backends.ollama import OllamaBackend
from semroute.backends.pool import Instance, Pool
from semroute.errors import SemrouteError
from semroute.settings import Timeout
from semroute.testing import FakeFleet, Timing
from semroute.types import Message

MODEL = "llama3.2:3b"
ASK = [Message("user", "What is the speed limit in a city?")]
WINDOW_S = 0.5
WARM_S = 3.0
# 20 ms per answer, 4 parallel per instance: 600 answers/s for the fleet, well within 2 cores.
TIMING = Timing(latency_ms=20.0)
TIMEOUT = Timeout(connect=1.0, read=2.0)  # a hung request fails over after 2 s


def _break(fleet: FakeFleet, kind: str):
    fake = fleet[1]
    if kind == "restart":
        fake.stop()
        return fake.start
    options = {"error": {"status": 500}, "drop": {"after_chunks": 0}}.get(kind, {})
    fake.set_fault(kind, **options)
    return fake.clear_fault


async def _client(pool: Pool, stop: float, log: list[tuple[float, str]], errors: Counter) -> None:
    while time.monotonic() < stop:
        try:
            completion = await pool.achat(MODEL, ASK)
            log.append((time.monotonic(), completion.instance))
        except SemrouteError as exc:
            errors[type(exc).__name__] += 1
            await asyncio.sleep(0.01)


async def scenario(kind: str, args: argparse.Namespace) -> dict[str, object]:
    """One incident: warm, break instance 1 for ``fault_s``, heal, observe ``after_s``."""
    health = kind.endswith("+health")
    fault = kind.removesuffix("+health")
    with FakeFleet(3, models=(MODEL,), timing=TIMING) as fleet:
        names = [OllamaBackend(u).name for u in fleet.urls]
        pool = Pool([Instance(OllamaBackend(u, timeout=TIMEOUT), limit=4) for u in fleet.urls])
        async with pool:
            if health:
                await pool.astart_health_checks()
            log: list[tuple[float, str]] = []
            errors: Counter[str] = Counter()
            t0 = time.monotonic()
            total = WARM_S + args.fault_s + args.after_s
            clients = [asyncio.create_task(_client(pool, t0 + total, log, errors)) for _ in range(args.clients)]
            await asyncio.sleep(WARM_S)
            heal = await asyncio.to_thread(_break, fleet, fault) if fault != "none" else (lambda: None)
            fault_start = time.monotonic() - t0
            await asyncio.sleep(args.fault_s)
            await asyncio.to_thread(heal)
            fault_end = time.monotonic() - t0
            await asyncio.gather(*clients)
            states = pool.states(MODEL)
    return _summary(kind, log, names, t0, fault_start, fault_end, errors, states[1].breaker)


def _summary(kind, log, names, t0, fault_start, fault_end, errors, breaker) -> dict[str, object]:
    n_windows = int(max(t for t, _ in log) - t0) * 2 + 2
    windows = [[0, 0, 0] for _ in range(n_windows)]
    for t, name in log:
        windows[int((t - t0) / WINDOW_S)][names.index(name)] += 1

    def share(a: float, b: float) -> float:
        rows = windows[int(a / WINDOW_S):int(b / WINDOW_S)]
        total = sum(sum(r) for r in rows)
        return sum(r[1] for r in rows) / total if total else 0.0

    before = share(1.0, fault_start)
    recovered_at = next((i * WINDOW_S - fault_end for i in range(int(fault_end / WINDOW_S) + 1, n_windows - 2)
                         if share(i * WINDOW_S, i * WINDOW_S + 1.0) >= 0.8 / 3), None)
    after_10 = share(fault_end, fault_end + 10.0)
    last_2 = share(fault_end + 8.0, fault_end + 10.0)
    return {
        "kind": kind, "answers": len(log), "errors": dict(errors), "breaker_at_end": breaker,
        "share_before": round(before, 3), "share_10s_after": round(after_10, 3),
        "share_8_to_10s_after": round(last_2, 3), "fair_share": round(1 / 3, 3),
        "ratio_to_before": round(last_2 / before, 3) if before else None,
        "recovered_after_s": None if recovered_at is None else round(recovered_at, 2),
        "target_met": recovered_at is not None and recovered_at <= 10.0,
        "fault_s": [round(fault_start, 2), round(fault_end, 2)], "window_s": WINDOW_S, "windows": windows,
    }


async def run(args: argparse.Namespace) -> dict[str, object]:
    results = {}
    for kind in [k.strip() for k in args.kinds.split(",") if k.strip()]:
        results[kind] = await scenario(kind, args)
        r = results[kind]
        print(f"{kind:>14}: share before {r['share_before']:.3f}, 8-10 s after {r['share_8_to_10s_after']:.3f}, "
              f"back to 80% of fair after {r['recovered_after_s']} s, errors {r['errors']}", flush=True)
    met = all(r["target_met"] for r in results.values())
    return {"scenarios": results, "all_recovered_within_10s": met,
            "worst_recovery_s": max((r["recovered_after_s"] or float("inf")) for r in results.values())}


def plot(report: dict[str, object], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = report["scenarios"]  # type: ignore[index]
    kind = "refuse" if "refuse" in scenarios else next(iter(scenarios))
    r = scenarios[kind]
    xs = [i * r["window_s"] for i in range(len(r["windows"]))]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    for i in range(3):
        ax.plot(xs, [w[i] / r["window_s"] for w in r["windows"]], label=f"instance {i}" + (" (broken)" if i == 1 else ""))
    ax.axvspan(*r["fault_s"], color="red", alpha=0.15, label=f"fault: {kind}")
    ax.set_xlabel("seconds")
    ax.set_ylabel("answers per second")
    ax.set_title(f"Per-instance traffic through a {kind} incident (back to 80% of fair after {r['recovered_after_s']} s)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
