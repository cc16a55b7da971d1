"""The capacity planner: queueing math, the model, claims, profiles and the ``plan`` command."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from semroute.cli import main
from semroute.errors import ConfigError
from semroute.planning import (
    PlanProfile,
    Prices,
    ServerProfile,
    Slo,
    TierTraffic,
    TokenDist,
    TrafficProfile,
    check_claims,
    max_users,
    plan,
    profile_from_mapping,
)
from semroute.planning.model import capacity, evaluate_tier
from semroute.planning.queueing import birth_death, erlang_b, erlang_c, mmc_mean_wait, mmc_wait_quantile

SEED = Path(__file__).resolve().parent.parent / "data" / "plans" / "seed.toml"


def erlang_c_by_sum(c: int, a: float) -> float:
    """Erlang C straight from its textbook definition (the sum), to check the recursion."""
    top = a**c / math.factorial(c) * c / (c - a)
    return top / (sum(a**k / math.factorial(k) for k in range(c)) + top)


# -- queueing formulas -------------------------------------------------------------------------


def test_erlang_b_and_c_match_textbook_values():
    assert erlang_b(2, 1.0) == pytest.approx(0.2)  # (1/2) / (1 + 1 + 1/2)
    assert erlang_c(1, 0.5) == pytest.approx(0.5)  # M/M/1: P(wait) = rho
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)  # M/M/2 at rho 0.5: 2 rho^2 / (1 + rho)
    assert erlang_b(10, 8.0) == pytest.approx(0.1217, abs=1e-4)  # the classic call-centre table row
    assert erlang_c(10, 8.0) == pytest.approx(0.4092, abs=1e-4)
    for c, a in ((3, 2.5), (20, 17.0), (50, 45.0)):
        assert erlang_c(c, a) == pytest.approx(erlang_c_by_sum(c, a), rel=1e-9)
    assert erlang_c(4, 4.0) == 1.0  # at or past capacity everyone waits


def test_mmc_wait_formulas():
    # M/M/1, lambda 0.5, mu 1: Wq = rho / (mu - lambda) = 1.0 s; P(W > t) = rho e^{-(mu - lambda) t}
    assert mmc_mean_wait(1, 0.5, 1.0) == pytest.approx(1.0)
    assert mmc_wait_quantile(1, 0.5, 1.0, 0.95) == pytest.approx(math.log(0.5 / 0.05) / 0.5)
    assert mmc_wait_quantile(10, 1.0, 1.0, 0.95) == 0.0  # almost nobody waits
    assert mmc_mean_wait(2, 2.0, 1.0) == math.inf


def test_birth_death_with_linear_rates_is_erlang_c():
    c, lam, mu = 6, 4.2, 1.0
    chain = birth_death(lam, [min(n, c) * mu for n in range(1, c + 1)])
    assert chain.wait_probability == pytest.approx(erlang_c(c, lam / mu), rel=1e-9)
    # Little: E[N] = lambda (Wq + 1/mu)
    assert chain.mean_in_system() == pytest.approx(lam * (mmc_mean_wait(c, lam, mu) + 1 / mu), rel=1e-9)
    with pytest.raises(ConfigError):
        birth_death(7.0, [min(n, c) * mu for n in range(1, c + 1)])


# -- the model ---------------------------------------------------------------------------------


def one_tier(curve=(), slots=4, answer=TokenDist(100.0, 1.0), tier="t", **traffic) -> PlanProfile:
    server = ServerProfile("llama3.2:3b", tokens_per_s=100.0, slots=slots, prompt_tokens_per_s=1e9, ttft_s=0.0,
                           throughput_curve=curve)
    tiers = {tier: TierTraffic(0.5, TokenDist(1.0), answer)}
    defaults = {"hit_rate": 0.5, "arrival_rate": 1.0, "hit_latency_s": 0.05}
    return PlanProfile(TrafficProfile(tiers, **{**defaults, **traffic}), {tier: server}, Slo({tier: 10.0}),
                       Prices({tier: 500.0}, 1.0, 2.0), {tier: 1})


def test_with_a_linear_curve_the_tier_is_m_m_c():
    profile = one_tier(curve=(1.0, 2.0, 3.0, 4.0))
    tt, server = profile.traffic.tiers["t"], profile.servers["t"]
    # Each request takes 1 s at any occupancy: 4 slots x 2 servers = M/M/8 service rate 1/s.
    assert capacity(server, tt, 2) == pytest.approx(8.0)
    result, _ = evaluate_tier("t", 6.0, server, tt, 2, 10.0)
    assert result.wait_probability == pytest.approx(erlang_c(8, 6.0), rel=1e-6)  # the 1-token prompt: 1 ns
    assert result.utilisation == pytest.approx(0.75)


def test_sharing_slots_slows_answers_and_more_servers_help():
    profile = one_tier()  # default curve: 1.43x total with 4 streams
    light = plan(replace(profile, traffic=profile.traffic.with_rate(0.2)))
    heavy = plan(replace(profile, traffic=profile.traffic.with_rate(4.0)))
    assert heavy.tiers["t"].p95_s > 1.5 * light.tiers["t"].p95_s
    bigger = plan(replace(profile, traffic=profile.traffic.with_rate(4.0)), fleet={"t": 3})
    assert bigger.tiers["t"].p95_s < heavy.tiers["t"].p95_s
    assert bigger.cost_per_month == 3 * 500.0


def test_sizing_picks_the_smallest_fleet_meeting_the_slo():
    profile = replace(one_tier(answer=TokenDist(100.0, 0.5)), slo=Slo({"t": 3.0}), fleet={})
    result = plan(replace(profile, traffic=profile.traffic.with_rate(10.0)))
    m = result.tiers["t"].servers
    assert result.tiers["t"].meets_slo and result.tiers["t"].p95_s <= 3.0
    fewer = plan(replace(profile, traffic=profile.traffic.with_rate(10.0)), fleet={"t": m - 1})
    assert fewer.tiers["t"].p95_s > 3.0


def test_users_and_money():
    profile = one_tier(arrival_rate=None, users=120, think_time_s=60.0)
    result = plan(profile)
    # users / (think + mean response): a little under 2 questions/s
    assert 120 / (60 + 5) < result.arrival_rate < 2.0
    assert result.questions_per_month == pytest.approx(result.arrival_rate * 3600 * 730)
    assert result.cost_per_user == pytest.approx(500.0 / 120)
    per_question = (1.0 * 1.0 + 100.0 * 2.0) / 1e6  # 1 prompt token at $1/M, 100 answer tokens at $2/M
    assert result.api_cost_per_month == pytest.approx(result.questions_per_month * per_question)
    assert result.api_cost_with_cache_per_month == pytest.approx(result.api_cost_per_month * 0.5)
    assert max_users(profile) > max_users(profile, target_p95_s=1.5)


def test_a_short_simulation_agrees_with_the_formula_at_low_load():
    from semroute.planning.simulate import poisson_requests, simulate

    profile = one_tier(answer=TokenDist(100.0, 0.5))
    rate = 0.3 * capacity(profile.servers["t"], profile.traffic.tiers["t"], 1) / 0.5
    profile = replace(profile, traffic=profile.traffic.with_rate(rate))
    planned = plan(profile)
    simulated = simulate(profile, poisson_requests(profile, rate, 4000 / rate, seed=7), {"t": 1})
    assert simulated.count["t"] > 1500
    assert planned.tiers["t"].p95_s == pytest.approx(simulated.p95_s["t"], rel=0.10)
    assert planned.tiers["t"].p50_s == pytest.approx(simulated.p50_s["t"], rel=0.15)


# -- profiles and claims -------------------------------------------------------------------------


def seed_mapping() -> dict:
    import tomllib

    return tomllib.loads(SEED.read_text(encoding="utf-8"))


def test_seed_claims_are_checked_and_the_gpu_arithmetic_is_flagged():
    profile = profile_from_mapping(seed_mapping())
    checks = {c.claim: c for c in check_claims(profile)}
    assert checks["cost_per_month"].consistent  # 4 x 633.33 + 2 x 633.33
    gpu = checks["gpu_cost_per_month"]
    assert gpu.consistent is False and gpu.claimed == 3072.0 and gpu.computed == pytest.approx(128 * 730)
    assert "one day" in gpu.note
    assert checks["latency_s.large"].consistent is False  # 2 large servers are ~80% busy at 500 users
    assert checks["users"].computed < 500


def test_a_profile_whose_claims_follow_from_it_has_no_inconsistencies():
    data = seed_mapping()
    data["claims"] = {"servers": {"small": 4, "large": 2}, "cost_per_month": 3800.0,
                      "gpu_hourly_usd": 128.0, "gpu_cost_per_month": 93440.0}
    checks = check_claims(profile_from_mapping(data))
    assert checks and all(c.consistent for c in checks)


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("traffic", "hit_rate"), 1.5, "hit_rate"),
        (("traffic", "tiers", "small", "share"), 0.5, "add up to 1"),
        (("servers", "small", "slots"), 0, "slots"),
        (("servers", "large", "tokens_per_s"), "fast", "tokens_per_s"),
        (("servers", "small", "throughput_curve"), [2.0, 2.5], "throughput_curve"),
        (("slo", "p95_s", "small"), -1, "p95_s.small"),
        (("prices", "server_per_month", "large"), -5, "server_per_month.large"),
        (("traffic", "tiers", "large", "answer_tokens"), {"mean": 0}, "mean"),
        (("traffic", "speed"), 3, "speed"),
    ],
)
def test_a_bad_profile_is_a_config_error_naming_the_field(path, value, field):
    data = seed_mapping()
    table = data
    for key in path[:-1]:
        table = table[key]
    table[path[-1]] = value
    with pytest.raises(ConfigError, match=field):
        profile_from_mapping(data)


# -- the command ---------------------------------------------------------------------------------


def test_plan_json_has_the_issue_keys_and_flags_the_seed():
    result = CliRunner().invoke(main, ["plan", "--profile", str(SEED), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    for key in ("servers", "p95_s", "cost_per_month", "cost_per_user", "api_cost_per_month", "inconsistencies"):
        assert key in out
    assert out["servers"] == {"small": 4, "large": 2}
    assert set(out["p95_s"]) == {"small", "large", "overall"}
    assert out["cost_per_user"] == pytest.approx(out["cost_per_month"] / 500, rel=1e-3)
    flagged = {i["claim"]: i for i in out["inconsistencies"]}
    assert flagged["gpu_cost_per_month"]["claimed"] == 3072.0
    assert flagged["gpu_cost_per_month"]["computed"] == pytest.approx(93440.0)
    assert "cost_per_month" not in flagged


def test_plan_table_shows_claims_side_by_side_and_users_changes_the_load(tmp_path):
    runner = CliRunner()
    table = runner.invoke(main, ["plan"])  # the shipped seed by default
    assert table.exit_code == 0, table.output
    assert "INCONSISTENT" in table.output and "gpu_cost_per_month" in table.output
    few = json.loads(runner.invoke(main, ["plan", "--profile", str(SEED), "--users", "100", "--json"]).output)
    many = json.loads(runner.invoke(main, ["plan", "--profile", str(SEED), "--users", "600", "--json"]).output)
    assert few["users"] == 100 and few["p95_s"]["large"] < many["p95_s"]["large"]


def test_plan_with_a_bad_file_is_a_one_line_config_error(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(SEED.read_text(encoding="utf-8").replace("slots = 4", "slots = 0", 1), encoding="utf-8")
    result = CliRunner().invoke(main, ["plan", "--profile", str(bad)])
    assert result.exit_code == 1
    assert "ConfigError" in result.output and "servers.small" in result.output and "slots" in result.output
    assert "Traceback" not in result.output


def test_plan_plot_writes_a_png(tmp_path):
    png = tmp_path / "plan.png"
    data = seed_mapping()
    data["traffic"]["users"] = 40  # a small grid keeps the test quick
    from semroute.planning.plot import plot_users

    plot_users(profile_from_mapping(data), png, users=[20, 40, 80])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_short_replay_through_the_router_answers_every_request_at_model_speed():
    from semroute.planning.replay import replay
    from semroute.planning.simulate import SimRequest

    profile = one_tier(answer=TokenDist(50.0), tier="small")  # 0.5 s per answer alone; 25 ms real at scale 20
    requests = [SimRequest(0.3 * i, None if i % 3 == 0 else "small", 1.0, 50.0) for i in range(30)]
    result, errors = replay(profile, requests, {"small": 1}, time_scale=20.0)
    errors.pop("wall_s")
    # Every hit came from the exact cache (counted under "hit" by the answer's source), every miss
    # from the fake fleet.
    assert errors == {} and result.count == {"hit": 10, "small": 20}
    # 50 tokens take 0.5 s alone at the fake's scaled speed; sharing slots and real overhead only
    # add. (No upper bounds: a busy machine's scheduling delays are real time too; speed is the
    # benchmark's business.)
    assert min(result.latencies["small"]) > 0.45


def test_a_traffic_profile_from_a_real_routers_metrics(tmp_path, fake_ollama):
    from semroute import Router, ThresholdVerifier
    from semroute.planning.from_metrics import traffic_from_metrics
    from semroute.planning.replay import HashEmbedder
    from semroute.settings import CacheSettings, RouterSettings, Tier

    tiers = {"small": Tier("llama3.2:3b", (fake_ollama.url,)), "large": Tier("llama3.1:8b", (fake_ollama.url,))}
    settings = RouterSettings(cache=CacheSettings(consensus=False, min_similarity=0.99))
    with Router(tiers=tiers, data_dir=tmp_path, embedder=HashEmbedder(), verifier=ThresholdVerifier(0.99),
                settings=settings) as router:
        router.warm([("cached one", "a"), ("cached two", "b")])
        for q in ("cached one", "cached two", "cached one"):
            assert router.ask(q).source == "exact"
        router.ask("first new question", tier="small")
        router.ask("second new question", tier="small")
        router.ask("third new question", tier="large")
        traffic = traffic_from_metrics(router.metrics.snapshot(), users=10, think_time_s=30.0)
    assert traffic.hit_rate == pytest.approx(0.5)
    assert traffic.tiers["small"].share == pytest.approx(2 / 6) and traffic.tiers["large"].share == pytest.approx(1 / 6)
    assert traffic.tiers["small"].answer_tokens.mean > 0 and traffic.tiers["small"].prompt_tokens.mean > 0
    with pytest.raises(ConfigError, match="counters"):
        traffic_from_metrics({}, users=1, think_time_s=1.0)
