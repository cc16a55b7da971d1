"""``semroute replay`` with an in-process FakeOllama: a recorded stream and the Azure trace's
arrivals drive a real Router; events, snapshot and report agree with each other."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from semroute.cli import main
from semroute.planning.trace import read_azure_trace

TRACE = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "azure_llm_inference_trace_2023" / \
    "AzureLLMInferenceTrace_conv.csv"


def replay(tmp_path: Path, *args: str):
    events, snapshot = tmp_path / "events.jsonl", tmp_path / "stats.json"
    result = CliRunner().invoke(main, ["replay", *args, "--fake", "--events", str(events), "--snapshot",
                                       str(snapshot), "--report", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    return ([json.loads(line) for line in events.read_text().splitlines()],
            json.loads(snapshot.read_text()), result.output)


def test_a_recorded_stream_is_replayed_and_recorded(tmp_path):
    stream = tmp_path / "stream.csv"
    stream.write_text("question,at,tier\n"
                      "What is the speed limit in the city?,0,small\n"
                      "Explain the priority rules at a roundabout.,0.5,large\n"
                      "Do I need winter tyres?,1.0,\n"
                      "Do I need winter tyres?,30,\n", encoding="utf-8")
    events, snap, output = replay(tmp_path, str(stream), "--speed", "20")
    assert [e["at"] for e in events] == [0, 0.5, 1.0, 30]
    assert events[0]["source"] == "small" and events[1]["source"] == "large"
    assert events[3]["source"] == "exact"  # asked again 1.45 s (trace time / 20) later: stored by then
    counters = snap["counters"]
    for source in ("exact", "semantic", "small", "large"):
        assert counters.get(f"answers.{source}", 0) == sum(e["source"] == source for e in events)
    assert counters["tokens.completion"] == sum(e.get("completion_tokens", 0) for e in events)
    assert snap["period_s"] == 30 and snap["savings"]["period_s"] == 30  # trace time, not sped-up wall time
    assert "replayed 4 questions" in output
    assert {p.name for p in (tmp_path / "report").iterdir()} >= {"hit_rate.png", "latency.png", "summary.md"}


@pytest.mark.skipif(not TRACE.exists(), reason="needs ../shared/data (the Azure trace)")
def test_the_azure_trace_arrivals_drive_a_synthetic_question_stream(tmp_path):
    events, snap, _ = replay(tmp_path, str(TRACE), "--limit", "40", "--speed", "5", "--seed", "3")
    arrivals = read_azure_trace(TRACE)[0][:40]
    assert [e["at"] for e in events] == pytest.approx(sorted(arrivals.tolist()))
    assert snap["period_s"] == pytest.approx(arrivals[-1] - arrivals[0])
    hits = sum(e["source"] in ("exact", "semantic") for e in events)
    assert hits >= 1 and hits == snap["savings"]["hits"]  # Zipf-popular questions repeat, ~65 ms apart
    assert len({e["question"] for e in events}) < 40
    counters = snap["counters"]  # a miss that joined one in flight made no model call: its tokens are not counted twice
    assert counters["tokens.completion"] == sum(e.get("completion_tokens", 0) for e in events)
    assert sum(e.get("model_call", False) for e in events) == counters.get("tier.small.answered", 0) + \
        counters.get("tier.large.answered", 0)
