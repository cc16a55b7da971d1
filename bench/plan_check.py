"""The capacity planner against a SimPy simulation and a replay through the real router.

One validation system (two tiers: 2 "small" servers at 200 tokens/s and 2 "large" at 100
tokens/s, 4 slots each, total throughput 1.43x one stream's with 4 streams; half the questions
are cache hits; answer lengths from the Azure 2023 conversation trace, clipped at 1,000 tokens)
at three loads: 50%, 80% and 95% of each tier's capacity. Three ways to its p95:

* planner: ``semroute.planning.plan`` (birth-death chain + Erlang wait, no simulation);
* simulation (Poisson): the SimPy model with Poisson arrivals, ``--sim-requests`` long;
* simulation (trace) and replay: the same request list - arrival times of a window of the
  Azure trace scaled to the load, its answer lengths - through the SimPy model and through the
  real ``Router``/``Pool`` against ``FakeFleet`` servers in scaled time (``--time-scale``).

Targets: planner within 10% of the Poisson simulation; trace simulation within 15% of the replay.

    PYTHONPATH=. nice -n 10 .venv/bin/python bench/plan_check.py          # about 2-3 minutes
    PYTHONPATH=. .venv/bin/python bench/plan_check.py --sim-requests 20000 --replay-s 6   # quick

Writes ``bench/results/plan_check.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from semroute.planning import PlanProfile, Prices, ServerProfile, Slo, TierTraffic, TokenDist, TrafficProfile, plan
from semroute.planning.model import capacity
from semroute.planning.profile import saturating_curve
from semroute.planning.replay import replay
from semroute.planning.simulate import SimRequest, poisson_requests, simulate

TRACE = Path(__file__).resolve().parent.parent / ".." / "shared" / "data" / "azure_llm_inference_trace_2023" / "AzureLLMInferenceTrace_conv.csv"
RESULTS = Path(__file__).resolve().parent / "results" / "plan_check.json"
FLEET = {"small": 2, "large": 2}
HIT_RATE = 0.5
MAX_TOKENS = 1000


def read_trace() -> tuple[np.ndarray, np.ndarray]:
    """(arrival seconds from the first request, generated tokens clipped) of the conv trace."""
    from semroute.planning.trace import read_azure_trace

    t, _, generated = read_azure_trace(TRACE)
    tokens = np.maximum(np.minimum(generated.astype(float), MAX_TOKENS), 1.0)
    return t, tokens


def validation_profile(tokens: np.ndarray) -> PlanProfile:
    answer = TokenDist(float(tokens.mean()), float(tokens.std() / tokens.mean()))
    prompt = TokenDist(500.0)
    curve = saturating_curve(4)
    servers = {
        "small": ServerProfile("llama3.2:3b", 200.0, 4, 5000.0, 0.1, curve, "validation"),
        "large": ServerProfile("llama3.1:8b", 100.0, 4, 5000.0, 0.1, curve, "validation"),
    }
    caps = {t: capacity(servers[t], TierTraffic(0.1, prompt, answer), FLEET[t]) for t in FLEET}
    total = sum(caps.values())
    tiers = {t: TierTraffic((1 - HIT_RATE) * caps[t] / total, prompt, answer) for t in FLEET}
    traffic = TrafficProfile(tiers, HIT_RATE, hit_latency_s=0.01, arrival_rate=1.0)
    return PlanProfile(traffic, servers, Slo({"small": 60.0, "large": 60.0}), Prices({"small": 0, "large": 0}),
                       dict(FLEET), name="validation")


def full_rate(profile: PlanProfile) -> float:
    """Questions/s at which every tier is at 100% of its capacity."""
    t = profile.traffic
    return sum(capacity(profile.servers[n], tt, FLEET[n]) for n, tt in t.tiers.items()) / (1 - t.hit_rate)


def trace_requests(profile: PlanProfile, times: np.ndarray, tokens: np.ndarray, rate: float, n: int,
                   offset: int, seed: int) -> list[SimRequest]:
    """``n`` trace rows from ``offset``, times rescaled so the mean rate is ``rate``; tiers drawn."""
    t = times[offset:offset + n] - times[offset]
    t = t * (len(t) / t[-1]) / rate
    rng = np.random.default_rng(seed)
    names = [None, *profile.traffic.tiers]
    probs = [profile.traffic.hit_rate, *(x.share for x in profile.traffic.tiers.values())]
    picks = rng.choice(len(names), size=n, p=np.array(probs) / sum(probs))
    return [SimRequest(float(a), names[k], 500.0, float(w)) for a, k, w in zip(t, picks, tokens[offset:offset + n])]


def pct(a: float, b: float) -> float:
    return round(100.0 * (a - b) / b, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--loads", type=float, nargs="+", default=[0.5, 0.8, 0.95])
    ap.add_argument("--sim-requests", type=int, default=150_000, help="Poisson simulation length (requests)")
    ap.add_argument("--time-scale", type=float, default=4.0, help="model seconds per real second in the replay")
    ap.add_argument("--replay-s", type=float, default=15.0, help="real seconds of replay per load")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    times, tokens = read_trace()
    profile = validation_profile(tokens)
    print(f"answer tokens (trace, clipped at {MAX_TOKENS}): mean {tokens.mean():.1f}, cv {tokens.std() / tokens.mean():.2f}; "
          f"tier shares {({t: round(x.share, 3) for t, x in profile.traffic.tiers.items()})}; fleet {FLEET}")
    rows = []
    for i, load in enumerate(args.loads):
        rate = load * full_rate(profile)
        p = replace(profile, traffic=profile.traffic.with_rate(rate))
        t0 = time.perf_counter()
        planned = plan(p)
        t_plan = time.perf_counter() - t0
        t0 = time.perf_counter()
        poisson = simulate(p, poisson_requests(p, rate, args.sim_requests / rate, seed=i), FLEET,
                           warmup_s=0.05 * args.sim_requests / rate)
        t_sim = time.perf_counter() - t0
        n = int(args.replay_s * args.time_scale * rate)
        reqs = trace_requests(p, times, tokens, rate, n, offset=2000 * i, seed=i)
        warm = 0.1 * reqs[-1].arrival_s
        traced = simulate(p, reqs, FLEET, warmup_s=warm)
        replayed, errors = replay(p, reqs, FLEET, time_scale=args.time_scale, warmup_s=warm)
        for tier in [*FLEET, "overall"]:
            row = {
                "load": load, "tier": tier, "rate": round(rate, 3),
                "planner_p95_s": round(planned.tiers[tier].p95_s if tier in FLEET else planned.p95_s, 3),
                "sim_poisson_p95_s": round(poisson.p95_s[tier], 3),
                "sim_trace_p95_s": round(traced.p95_s.get(tier, float("nan")), 3),
                "replay_p95_s": round(replayed.p95_s.get(tier, float("nan")), 3),
                "trace_requests": traced.count.get(tier) if tier != "overall" else sum(traced.count.values()),
            }
            row["planner_vs_sim_pct"] = pct(row["planner_p95_s"], row["sim_poisson_p95_s"])
            row["sim_vs_replay_pct"] = pct(row["sim_trace_p95_s"], row["replay_p95_s"])
            rows.append(row)
            print(f"load {load:.2f} {tier:<8} planner {row['planner_p95_s']:7.2f}  sim(Poisson) {row['sim_poisson_p95_s']:7.2f} "
                  f"({row['planner_vs_sim_pct']:+.1f}%)  | sim(trace) {row['sim_trace_p95_s']:7.2f}  replay {row['replay_p95_s']:7.2f} "
                  f"({row['sim_vs_replay_pct']:+.1f}%)  n={row['trace_requests']}")
        print(f"  planner {t_plan:.2f} s, simulation {t_sim:.1f} s, replay {n} requests in {errors.pop('wall_s')} s, errors {errors}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    summary = {
        "max_abs_planner_vs_sim_pct": max(abs(r["planner_vs_sim_pct"]) for r in rows if r["tier"] != "overall"),
        "max_abs_sim_vs_replay_pct": max(abs(r["sim_vs_replay_pct"]) for r in rows if r["tier"] != "overall"),
    }
    args.out.write_text(json.dumps({"fleet": FLEET, "hit_rate": HIT_RATE, "time_scale": args.time_scale,
                                    "sim_requests": args.sim_requests, "rows": rows, "summary": summary}, indent=1))
    print(f"summary (per tier): {summary}; wrote {args.out}")


if __name__ == "__main__":
    main()
