"""Warm-up at scale: files with namespace/ttl/metadata, bad rows, resume, exact and near duplicates.

FakeOllama's hashed bag-of-words embeddings over real HTTP (a counting wrapper tells how many
texts were embedded); the embedded store on disk.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from semroute import InvalidRequest, Router, Tier
from semroute.cache import MemoryStore
from semroute.cli import main
from semroute.warm_files import read_warm_file
from semroute.warming import WarmRow

SMALL, LARGE = "llama3.2:3b", "llama3.1:8b"


class CountingEmbedder:
    """The real embedder, counting the texts it was asked to embed."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.texts: list[str] = []
        self.name, self.dim = inner.name, inner.dim

    def embed(self, texts):
        self.texts += list(texts)
        return self.inner.embed(texts)


@pytest.fixture
def router(tmp_path, fake_ollama, cheap_router_options):
    options = dict(cheap_router_options)
    options["embedder"] = CountingEmbedder(options["embedder"])
    tiers = {"small": Tier(SMALL, (fake_ollama.url,)), "large": Tier(LARGE, (fake_ollama.url,))}
    with Router(tiers=tiers, data_dir=tmp_path / "cache", **options) as r:
        yield r


def test_jsonl_and_csv_rows_carry_namespace_ttl_and_metadata(router, tmp_path):
    jsonl = tmp_path / "faq.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in [
        {"question": "Is a child seat required?", "answer": "Yes.", "namespace": "cars", "ttl": 60,
         "metadata": {"topic": "seats", "rev": 3}},
        {"question": "Opening hours?", "answer": "Nine to five."},
    ]) + "\n", encoding="utf-8")
    csv = tmp_path / "faq.csv"
    csv.write_text('question,answer,namespace,ttl,metadata\n'
                   'Do I need winter tyres?,In winter.,cars,inf,"{""topic"": ""tyres""}"\n', encoding="utf-8")
    rows = read_warm_file(jsonl)[0] + read_warm_file(csv)[0]
    assert [r.where for r in rows] == [f"{jsonl}:1", f"{jsonl}:2", f"{csv}:2"]
    report = router.warm(rows, tags={"source": "faq"})
    assert (report.added, report.skipped) == (3, 0)
    entries = {e.question: e for e in router.pipeline.store.entries()}
    seat, hours, tyres = entries["Is a child seat required?"], entries["Opening hours?"], entries["Do I need winter tyres?"]
    assert (seat.namespace, hours.namespace, tyres.namespace) == ("cars", "default", "cars")
    assert seat.expires_at - seat.created_at == pytest.approx(60) and tyres.expires_at is None
    assert dict(seat.tags) == {"topic": "seats", "rev": "3", "source": "faq"}
    assert router.ask("Is a child seat required?", namespace="cars").source == "exact"
    assert router.invalidate(where={"topic": "seats"}, namespace="cars") == 1
    assert router.ask("Is a child seat required?", namespace="cars").source == "small"


def test_bad_rows_are_reported_with_file_and_line_and_skipped(router, tmp_path):
    faq = tmp_path / "faq.jsonl"
    faq.write_text("\n".join([
        json.dumps({"question": "Good one?", "answer": "Yes."}),
        "{not json",
        json.dumps({"question": "No answer?", "answer": "  "}),
        json.dumps({"question": "Bad ttl?", "answer": "a", "ttl": -5}),
        json.dumps({"question": "Bad metadata?", "answer": "a", "metadata": ["x"]}),
        json.dumps({"question": "Good two?", "answer": "Also yes."}),
    ]) + "\n", encoding="utf-8")
    rows, bad = read_warm_file(faq)
    assert [r.question for r in rows] == ["Good one?", "Good two?"]
    assert [b.where for b in bad] == [f"{faq}:{n}" for n in (2, 3, 4, 5)]
    assert "is not JSON" in bad[0].reason and "empty answer" in bad[1].reason and "ttl" in bad[2].reason
    with pytest.raises(InvalidRequest, match="pair 1: answer must be str"):  # raise: nothing stored
        router.warm([("fine", "a"), ("bad", 7)])
    assert len(router.pipeline.cache) == 0
    report = router.warm([*rows, ("bad", 7), WarmRow("", "a", where="x.csv:9")], on_bad="skip")
    assert report.added == 2 and [b.where for b in report.bad] == ["pair 2", "x.csv:9"]


def test_an_interrupted_warm_resumes_without_embedding_stored_rows(router):
    rows = [(f"Question number {i} about parking?", f"answer {i}") for i in range(5)]

    def stop_after_first_batch(n: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        router.warm(rows, batch_size=2, progress=stop_after_first_batch)
    assert len(router.pipeline.cache) == 2  # the first batch, whole
    embedder = router.pipeline.embedder
    embedder.texts.clear()
    rows[1] = (rows[1][0], "a changed answer")
    report = router.warm(rows, batch_size=2)
    assert (report.already_stored, report.updated, report.added) == (1, 1, 3)
    assert sorted(embedder.texts) == sorted(q for q, _ in rows[1:])  # the stored row was not embedded again
    assert router.ask(rows[1][0]).text == "a changed answer" and len(router.pipeline.cache) == 5


def test_exact_repeats_and_near_duplicates_are_skipped_and_conflicts_reported(router):
    city = "What is the speed limit in the city?"
    report = router.warm([(city, "50 km/h."), (" what is THE speed limit in the city?", "50 km/h."),
                          ("What is the speed limit in the city?", "30 km/h.")])
    assert (report.added, report.duplicates, len(report.conflicts)) == (1, 1, 1)
    assert report.conflicts[0].where == "pair 2" and report.conflicts[0].other == "pair 0"
    near = [("What is the speed limit in the city please?", "50 km/h."),  # near the stored one, same answer
            ("What is the speed limit in the city today?", "It varies."),  # near it, another answer
            ("Where can I park my car overnight?", "In the garage.")]
    report = router.warm(near, near_duplicates=0.9)
    assert (report.added, report.near_duplicates, len(report.conflicts)) == (1, 1, 1)
    conflict = report.conflicts[0]
    assert conflict.where == "pair 1" and conflict.other.startswith("stored entry ")
    assert conflict.other_question == city and 0.9 <= conflict.similarity < 1
    within = router.warm([("How long may I park on the street?", "Two hours."),
                          ("How long may I park on the street here?", "Three hours.")], near_duplicates=0.9)
    assert within.added == 1 and within.conflicts[0].other == "pair 0"
    assert router.warm(near).added == 2  # without near_duplicates both are stored


def test_progress_counts_every_row_and_options_are_checked(router):
    done: list[int] = []
    router.warm([("a question", "x"), ("a question", "x"), ("another question", "y")], batch_size=1,
                progress=done.append)
    assert sum(done) == 3
    for bad in ({"near_duplicates": 1.5}, {"on_bad": "ignore"}, {"batch_size": 0}, {"ttl_s": 0}):
        with pytest.raises(InvalidRequest):
            router.warm([("q", "a")], **bad)


def test_cli_warms_several_files_skips_bad_rows_and_reports_json(tmp_path, fake_ollama):
    one, two = tmp_path / "one.csv", tmp_path / "two.jsonl"
    one.write_text("question,answer\nIs a child seat required?,Yes.\nEmpty?,\n", encoding="utf-8")
    two.write_text(json.dumps({"question": "Opening hours?", "answer": "Nine to five."}) + "\n{oops\n",
                   encoding="utf-8")
    common = ["--data-dir", str(tmp_path / "cache"), "--ollama-url", fake_ollama.url]
    refused = CliRunner().invoke(main, ["warm", str(one), str(two), *common])
    assert refused.exit_code == 1 and f"{one}: row 3 has an empty answer" in refused.output
    assert "and 1 more bad row(s)" in refused.output
    report_file = tmp_path / "report.json"
    result = CliRunner().invoke(main, ["warm", str(one), str(two), "--skip-bad", "--json", "--report",
                                       str(report_file), *common])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["added"] == report["stored"] == 2 and report["skipped"] == 2
    assert [b["where"] for b in report["bad"]] == [f"{one}:3", f"{two}:2"]
    assert json.loads(report_file.read_text())["added"] == 2
    again = CliRunner().invoke(main, ["warm", str(one), str(two), "--skip-bad", *common])
    assert again.exit_code == 0 and "stored 0 entries" in again.stdout
    assert "already stored 2" in again.stderr
    with MemoryStore(tmp_path / "cache") as store:
        assert sorted(e.question for e in store.entries()) == ["Is a child seat required?", "Opening hours?"]


def test_the_report_still_reads_as_the_stored_count(router):
    """Scripts written when ``warm`` returned an int keep working."""
    report = router.warm([("How long may I park on the street?", "Two hours."),
                          ("Is a helmet required on a moped?", "Yes.")])
    assert report == 2 and int(report) == 2 and f"{int(report)}" == "2" and len(range(report)) == 2
    assert report != 3 and report.stored == 2
