"""``semroute ask``, ``warm`` and ``demo`` through click's runner, against FakeOllama over HTTP."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

from semroute.cache.memory import MemoryStore
from semroute.cli import main


@pytest.fixture
def run(tmp_path, fake_ollama):
    runner = CliRunner()

    def invoke(*args: str):
        common = ["--data-dir", str(tmp_path / "cache"), "--ollama-url", fake_ollama.url]
        return runner.invoke(main, [*args, *common], catch_exceptions=False)

    return invoke


def test_warm_then_ask_json(run, tmp_path, fake_ollama):
    faq = tmp_path / "faq.csv"
    faq.write_text('question,answer\n"What is the speed limit in the city?","50 km/h, unless signs say otherwise."\n'
                   "Is a seat belt required in the back?,Yes.\n", encoding="utf-8")
    warmed = run("warm", str(faq))
    assert warmed.exit_code == 0, warmed.output
    assert "stored 2 entries" in warmed.output
    asked = run("ask", "what is the speed limit in the city", "--json")
    assert asked.exit_code == 0, asked.output
    data = json.loads(asked.stdout)
    assert {"text", "source", "similarity", "tier", "model", "instance", "latency_ms"} <= set(data)
    assert (data["source"], data["text"], data["similarity"]) == ("exact", "50 km/h, unless signs say otherwise.", 1.0)
    miss = json.loads(run("ask", "How do I renew a passport?", "--json", "--tier", "small").stdout)
    assert miss["source"] == "small" and miss["model"] == "llama3.2:3b" and miss["instance"]
    assert fake_ollama.stats().count("chat") == 1


def test_warm_jsonl(run, tmp_path):
    faq = tmp_path / "faq.jsonl"
    faq.write_text(json.dumps({"question": "Şehir içi hız limiti nedir?", "answer": "50 km/s."}, ensure_ascii=False)
                   + "\n\n", encoding="utf-8")
    result = run("warm", str(faq))
    assert result.exit_code == 0 and "stored 1 entries" in result.output


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"question,reply\nq,a\n", "missing column(s) answer"),
        (b"", "no data rows"),
        (b"question,answer\n", "no data rows"),
        (b"question,answer\nq,\n", "row 2 has an empty answer"),
        ("question,answer\nşehir,a\n".encode("latin-1", errors="replace").replace(b"?", b"\xfe"), "not UTF-8"),
    ],
)
def test_warm_rejects_bad_files_and_stores_nothing(run, tmp_path, content, message):
    bad = tmp_path / "bad.csv"
    bad.write_bytes(content)
    result = CliRunner().invoke(main, ["warm", str(bad), "--data-dir", str(tmp_path / "cache")])
    assert result.exit_code == 1 and message in result.output
    asked = run("ask", "q", "--json", "--tier", "small")
    assert json.loads(asked.stdout)["source"] == "small"


def test_ask_rejects_bad_input_cleanly(run):
    result = CliRunner().invoke(main, ["ask", "   "])
    assert result.exit_code == 1 and "InvalidRequest" in result.output


def test_demo_runs_to_its_summary_with_simulated_answers(tmp_path):
    result = CliRunner().invoke(main, ["demo", "--json", "--ollama-url", "http://127.0.0.1:9"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["simulated"] is True and report["summary"]["simulated"] is True
    from semroute.embed import default_embedder

    assert report["summary"]["embedder"] == default_embedder().name  # the chosen one once its models ship
    decisions = report["summary"]["decisions"]
    assert decisions.get("exact", 0) >= 5 and decisions.get("small", 0) >= 1 and decisions.get("large", 0) >= 1
    assert report["summary"]["questions"] == len(report["results"]) >= 30
    wrong_hits = [r for r in report["results"] if r["expected"] == "miss" and r["decision"] in ("exact", "semantic")]
    assert wrong_hits == []


def test_warm_honours_system_prompt_and_ttl(run, tmp_path, fake_ollama):
    faq = tmp_path / "faq.csv"
    faq.write_text("question,answer\nIs a child seat required?,Yes.\n", encoding="utf-8")
    assert run("warm", str(faq), "--system", "Answer briefly.", "--ttl", "3600").exit_code == 0
    same = json.loads(run("ask", "Is a child seat required?", "--json", "--system", "Answer briefly.").stdout)
    assert (same["source"], same["text"]) == ("exact", "Yes.")
    other = json.loads(run("ask", "Is a child seat required?", "--json", "--tier", "small").stdout)
    assert other["source"] == "small"  # without the system prompt: another scope
    with MemoryStore(tmp_path / "cache") as store:  # the warmed entry lives exactly --ttl seconds
        warmed = [e for e in store.entries() if e.answer == "Yes."]
        assert len(warmed) == 1 and warmed[0].expires_at - warmed[0].created_at == pytest.approx(3600)
        generated = [e for e in store.entries() if e.answer != "Yes."]
        assert len(generated) == 1 and generated[0].expires_at is None  # the default: no TTL
    assert CliRunner().invoke(main, ["warm", str(faq), "--ttl", "0"]).exit_code == 2


def test_warm_computes_on_the_threads_asked_for(run, tmp_path, monkeypatch):
    """A warm-up is a batch job: the packaged embedders' one-thread default gives way to every
    core or ``--threads``; the rows are stored the same either way."""
    from semroute.cli import cache_cmds
    from semroute.embed import E5Embedder, USEEmbedder

    assert cache_cmds.warm_embedder(E5Embedder(threads=1), 3).threads == 3
    assert cache_cmds.warm_embedder(USEEmbedder(), 2).threads == 2
    built = []
    real = cache_cmds.warm_embedder
    monkeypatch.setattr(cache_cmds, "warm_embedder", lambda embedder, threads: built.append(threads) or real(embedder, threads))
    faq = tmp_path / "faq.csv"
    faq.write_text("question,answer\nIs a child seat required?,Yes.\nCan I turn right on red?,No.\n", encoding="utf-8")
    result = run("warm", str(faq), "--threads", "2")
    assert result.exit_code == 0 and "stored 2 entries" in result.output, result.output
    assert run("warm", str(faq)).exit_code == 0  # already stored: skipped, not embedded again
    assert built == [2, os.cpu_count() or 1]
    assert CliRunner().invoke(main, ["warm", str(faq), "--threads", "0"]).exit_code == 2
