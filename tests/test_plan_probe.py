"""``semroute probe`` against a real FakeOllama (HTTP), and the fake's parallel speed curve."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from click.testing import CliRunner

from semroute.cli import main
from semroute.errors import ConfigError
from semroute.planning.probe import ProbeSettings, probe_server
from semroute.planning.profile import saturating_curve
from semroute.testing import Capacity, FakeOllama, Timing

MODEL = "llama3.2:3b"
TOKEN_MS = 2.0  # 500 tokens/s for one stream


def eval_speeds(url: str, parallel: int, tokens: int = 40) -> list[float]:
    body = {"model": MODEL, "prompt": "how fast", "stream": False, "options": {"num_predict": tokens}}

    def one(_: int) -> float:
        data = httpx.post(f"{url}/api/generate", json=body, timeout=30).json()
        return data["eval_count"] / (data["eval_duration"] / 1e9)

    with ThreadPoolExecutor(parallel) as pool:
        return list(pool.map(one, range(parallel)))


def test_timing_rejects_a_bad_speed_curve():
    with pytest.raises(ConfigError, match="parallel_speedup"):
        Timing(parallel_speedup=(1.0, 0.0))
    assert Timing(token_delay_ms=2, parallel_speedup=(1.0, 1.5)).scaled(2).parallel_speedup == (1.0, 1.5)
    assert Timing(parallel_speedup=(1.0, 1.5)).slowdown(4) == pytest.approx(4 / 1.5)
    assert Timing().slowdown(8) == 1.0  # no curve: streams do not share anything


def test_fake_streams_slow_down_as_slots_fill():
    # A flat curve: one GPU's total throughput whatever the parallelism, so 4 streams run ~4x slower.
    timing = Timing(token_delay_ms=TOKEN_MS, parallel_speedup=(1.0, 1.0, 1.0, 1.0))
    with FakeOllama([MODEL], timing=timing, capacity=Capacity(max_parallel=4), extra_words=60) as fake:
        alone = max(eval_speeds(fake.url, 1)[0] for _ in range(3))  # a busy machine only slows a run
        shared = eval_speeds(fake.url, 4)
    assert alone <= 1000 / TOKEN_MS * 1.1  # never faster than the token delay allows
    # ~4x slower each; the first to start runs alone briefly, and a busy machine slows "alone" too
    assert sorted(shared)[1] < alone / 1.8


def test_probe_measures_the_fake_and_plan_reads_the_profile(tmp_path):
    timing = Timing(ttft_ms=20.0, token_delay_ms=TOKEN_MS, parallel_speedup=saturating_curve(4))
    with FakeOllama([MODEL], timing=timing, capacity=Capacity(max_parallel=4), extra_words=80) as fake:
        server, levels = probe_server(fake.url, MODEL, ProbeSettings(max_parallel=4, duration_s=1.0, num_predict=32))
        out = tmp_path / "probe.toml"
        cli = CliRunner().invoke(main, ["probe", fake.url, "--model", MODEL, "--out", str(out), "--max-parallel", "2",
                                        "--duration-s", "0.5", "--num-predict", "16"])
    assert [lv.parallel for lv in levels] == [1, 2, 4]
    assert 300 < server.tokens_per_s < 1000 / TOKEN_MS * 1.1  # eval_duration spans n - 1 token gaps
    assert server.slots == 4 and len(server.throughput_curve) == 4 and server.throughput_curve[0] == 1.0
    assert 1.1 < server.throughput_curve[-1] < 1.9  # the fake's curve says 1.43 at 4 streams
    assert levels[-1].stream_tokens_per_s < 0.6 * levels[0].stream_tokens_per_s
    assert server.prompt_tokens_per_s > 0 and server.ttft_s < 0.1
    assert fake.url in server.source
    assert cli.exit_code == 0, cli.output
    planned = CliRunner().invoke(main, ["plan", "--profile", str(out), "--users", "50", "--json"])
    assert planned.exit_code == 0, planned.output
    result = json.loads(planned.output)
    assert result["servers"] == {"small": 1} and result["p95_s"]["small"] > 0
    assert "servers.small" in out.read_text() and "semroute probe" in out.read_text()


def test_plan_takes_a_tier_server_from_a_probe_file(tmp_path):
    probe = tmp_path / "large.toml"
    probe.write_text('[servers.large]\nmodel = "llama3.1:8b"\ntokens_per_s = 80.0\nslots = 4\n', encoding="utf-8")
    runner = CliRunner()
    base = json.loads(runner.invoke(main, ["plan", "--json", "--users", "200"]).output)
    slow = json.loads(runner.invoke(main, ["plan", "--json", "--users", "200", "--server", f"large={probe}"]).output)
    assert slow["p95_s"]["large"] > base["p95_s"]["large"]
    bad = runner.invoke(main, ["plan", "--server", "large"])
    assert bad.exit_code == 1 and "TIER=FILE" in bad.output


def test_probe_of_something_that_is_not_ollama_is_a_typed_error():
    with FakeOllama([MODEL]) as fake:
        result = CliRunner().invoke(main, ["probe", fake.url, "--model", "no-such-model", "--duration-s", "0.2"])
    assert result.exit_code == 1 and "BackendError" in result.output and "404" in result.output
