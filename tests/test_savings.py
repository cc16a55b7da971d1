"""Savings metrics: a scripted run against FakeOllama must produce exactly the scripted numbers
(hits, misses, tier calls, tokens generated and avoided), in ``Router.stats()``, Prometheus
(both exports), ``semroute stats`` and ``semroute report``."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from prometheus_client import generate_latest

from semroute import Router, Tier
from semroute.cli import main
from semroute.errors import ConfigError
from semroute.prom import registry_for
from semroute.savings import MONTH_S, CostModel, savings

SMALL, LARGE = "llama3.2:3b", "llama3.1:8b"
FAQ_Q, FAQ_A = "When does the office open?", "The office opens at nine every weekday morning."


def fake_completion_tokens(model: str, question: str) -> int:
    """FakeOllama answers ``[model] answer to: <question>`` plus 8 words, one token per word."""
    return 3 + len(question.split()) + 8


@pytest.fixture
def scripted(tmp_path, fake_ollama, cheap_router_options):
    now = [1_000.0]
    tiers = {"small": Tier(SMALL, (fake_ollama.url,)), "large": Tier(LARGE, (fake_ollama.url,))}
    router = Router(tiers=tiers, data_dir=tmp_path / "cache", clock=lambda: now[0], **cheap_router_options)
    city, rules = "What is the speed limit in the city?", "Explain the priority rules at a roundabout."
    router.warm([(FAQ_Q, FAQ_A)])
    assert router.ask(FAQ_Q).source == "exact"  # 1 hit, its tokens estimated (a warmed answer)
    assert router.ask(city, tier="small").source == "small"  # miss 1
    assert router.ask(rules, tier="large").source == "large"  # miss 2
    assert router.ask(city).source == "exact"  # hit 2
    assert router.ask("  what is the SPEED limit in the city?").source == "exact"  # hit 3
    assert router.ask("the city: what is the speed limit in?").source == "semantic"  # hit 4 (same words)
    stream = "Do I need winter tyres in the mountains?"
    assert "".join(c.text for c in router.stream(stream, tier="small"))  # miss 3, streamed
    now[0] += 3600.0
    yield router, {"city": city, "rules": rules, "stream": stream}
    router.close()


def expected(q: dict[str, str]) -> dict[str, float]:
    city = fake_completion_tokens(SMALL, q["city"])
    completion = city + fake_completion_tokens(LARGE, q["rules"]) + fake_completion_tokens(SMALL, q["stream"])
    estimated = round(len(FAQ_A) / 4)  # no answer generated yet when the FAQ hit came: 4 characters per token
    prompt = sum(len(q[k].split()) for k in ("city", "rules", "stream"))
    return {"completion": completion, "prompt": prompt, "avoided": 3 * city + estimated, "estimated": estimated}


def test_scripted_run_metrics_match_the_script_exactly(scripted, fake_ollama):
    router, questions = scripted
    want = expected(questions)
    c = router.stats()["counters"]
    assert (c["answers.exact"], c["answers.semantic"], c["answers.small"], c["answers.large"]) == (3, 1, 2, 1)
    assert (c["tier.small.answered"], c["tier.large.answered"]) == (2, 1) == (
        fake_ollama.stats().count("chat", SMALL), fake_ollama.stats().count("chat", LARGE))
    assert c["tokens.completion"] == want["completion"] == fake_ollama.stats().tokens
    assert c["tokens.prompt"] == want["prompt"]
    assert c["tokens.avoided"] == want["avoided"] and c["tokens.avoided_estimated"] == want["estimated"]
    assert c["tokens.avoided.exact"] + c["tokens.avoided.semantic"] == want["avoided"]
    hists = router.stats()["histograms_ms"]
    assert sum(h["count"] for name, h in hists.items() if name.startswith("latency.")) == 7  # every answer timed
    assert hists["step.llm"]["count"] == 3


def test_savings_follow_the_cost_model(scripted):
    router, questions = scripted
    want = expected(questions)
    cost = CostModel(api_input_per_1m=1.0, api_output_per_1m=10.0, server_per_month=720.0, servers=2)
    money = router.stats(cost)["savings"]
    assert (money["questions"], money["hits"], money["misses"]) == (7, 4, 3)
    assert money["period_s"] == 3600.0  # the router's injected clock
    assert money["tier_calls"] == {"small": 2, "large": 1}
    prompt_avoided = 4 * want["prompt"] / 3
    assert money["api"]["saved"] == pytest.approx(want["avoided"] * 10 / 1e6 + prompt_avoided / 1e6)
    assert money["api"]["cost_of_misses"] == pytest.approx(want["completion"] * 10 / 1e6 + want["prompt"] / 1e6)
    assert money["own"]["cost"] == pytest.approx(2 * 720.0 * 3600 / MONTH_S)
    assert money["own"]["per_1000_questions"] == pytest.approx(money["own"]["cost"] / 7 * 1000)
    with pytest.raises(ConfigError):
        CostModel(servers=0)
    assert savings({"counters": {}})["hit_rate"] is None  # no traffic: no made-up rate


def test_prometheus_exports_come_from_the_same_metrics(scripted):
    router, questions = scripted
    want = expected(questions)
    text = generate_latest(registry_for(router.metrics)).decode()
    assert f'semroute_router_events_total{{event="tokens.avoided"}} {float(want["avoided"])}' in text
    assert 'semroute_router_events_total{event="tier.large.answered"} 1.0' in text
    assert 'semroute_router_step_seconds_count{step="step.llm"} 3.0' in text
    assert 'semroute_savings{currency="USD",quantity="api_saved"}' in text
    plain = router.metrics.prometheus()
    assert f"semroute_tokens_completion_total {want['completion']}" in plain
    assert 'semroute_step_llm_seconds_bucket{le="+Inf"} 3' in plain


def test_stats_and_report_commands_read_a_snapshot(scripted, tmp_path):
    router, questions = scripted
    snapshot = tmp_path / "stats.json"
    snapshot.write_text(json.dumps(router.stats(), default=str))
    result = CliRunner().invoke(main, ["stats", "--snapshot", str(snapshot), "--json", "--api-output-per-1m", "10"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["savings"]["tokens"]["completion_avoided"] == expected(questions)["avoided"]
    assert data["savings"]["cost_model"]["api_output_per_1m"] == 10
    text = CliRunner().invoke(main, ["stats", "--snapshot", str(snapshot)])
    assert "hit rate: 57.1%" in text.output and "tier calls: small 2  large 1" in text.output
    assert CliRunner().invoke(main, ["stats"]).exit_code == 1  # no source: a clear error, not empty numbers
    out = tmp_path / "report"
    made = CliRunner().invoke(main, ["report", "--out", str(out), "--snapshot", str(snapshot)])
    assert made.exit_code == 0, made.output
    assert {p.name for p in out.iterdir()} == {"latency.png", "tier_mix.png", "savings.png", "summary.md"}
    summary = (out / "summary.md").read_text()
    assert "7 questions" in summary and "hit rate 57.1%" in summary and "needs the events" in summary
    assert (out / "latency.png").read_bytes()[:4] == b"\x89PNG"


def test_histogram_buckets_are_cumulative_and_inclusive():
    from semroute import Metrics

    metrics = Metrics(clock=lambda: 5.0)
    for value in (0.5, 0.6, 3.0, 70_000.0):
        metrics.observe("latency.small", value)
    hist = metrics.snapshot()["histograms_ms"]["latency.small"]
    by_bound = dict(zip(hist["le_ms"], hist["cumulative"]))
    assert (by_bound[0.5], by_bound[1.0], by_bound[5.0], by_bound[60000.0]) == (1, 2, 3, 3)
    assert hist["count"] == 4 and hist["sum_ms"] == pytest.approx(70_004.1)
