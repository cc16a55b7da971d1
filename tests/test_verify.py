"""The pair verifier (shipped default), calibration, and the ``eval``/``calibrate`` commands."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from click.testing import CliRunner

from semroute.cli import main
from semroute.errors import ConfigError, ModelError, ModelMismatch
from semroute.training.verifier import threshold_for_precision
from semroute.types import CacheEntry, Candidate
from semroute.hits.verify import (
    PLACEHOLDER_ANSWER,
    PairVerifier,
    ThresholdVerifier,
    Verifier,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def embedder():
    from semroute.embed import SentenceTransformerEmbedder

    e = SentenceTransformerEmbedder()
    e.embed(["warm up"])
    return e


@pytest.fixture(scope="module")
def verifier(embedder):
    return PairVerifier.default(embedder=embedder.name, dim=embedder.dim)


def _candidate(embedder, query: str, cached: str, answer: str = PLACEHOLDER_ANSWER) -> Candidate:
    vq, vc = embedder.embed([query, cached])
    entry = CacheEntry(id="e", key="k", scope="s", namespace="n", question=cached, answer=answer,
                       vector=vc, created_at=0.0)
    return Candidate(entry=entry, similarity=float(vq @ vc))


NEAR_MISSES = [
    ("place", "What is the speed limit on the highway?", "What is the speed limit in the city?"),
    ("place", "otoyol hız limiti nedir", "şehir içi hız limiti nedir"),
    ("entity", "Ankara'da hava nasıl?", "İstanbul'da hava nasıl?"),
    ("entity", "How much does it cost to ship a package to Canada?", "How much does it cost to ship a package to Mexico?"),
    ("number", "Set a timer for 10 minutes", "Set a timer for 15 minutes"),
    ("number", "1000 lira havale ücreti ne kadar?", "500 lira havale ücreti ne kadar?"),
    ("action", "How do I disable two-factor authentication?", "How do I enable two-factor authentication?"),
    ("action", "Işıkları kapat", "Işıkları aç"),
    ("action", "How do I disable two-factor authentication?", "How can I turn on two-factor authentication?"),
    ("negation", "Why can't I log in to my account?", "Why can I log in to my account?"),
    ("negation", "Kartım neden çalışmıyor?", "Kartım neden çalışıyor?"),
    ("scope", "What documents do I need to open a business account?", "What documents do I need to open a personal account?"),
    ("scope", "What is the speed limit for professional drivers?", "What is the speed limit for drivers?"),
    ("scope", "Is it safe to eat eggs during pregnancy?", "Is it safe to eat raw eggs during pregnancy?"),
    ("scope", "Profesyonel sürücüler için hız limiti nedir?", "Sürücüler için hız limiti nedir?"),
    ("scope", "Uluslararası transfer ücreti var mı?", "Yurtiçi transfer ücreti var mı?"),
]

PARAPHRASES = [
    ("What time does the museum open on Sundays?", "Is the museum open on Sunday and from what time?"),
    ("How do I stop my Netflix subscription?", "How do I cancel my Netflix subscription?"),
    ("Start a 10 minute timer", "Set a timer for 10 minutes"),
    ("What does a plane ticket from London to Paris cost?", "How much is a flight from London to Paris?"),
    ("Pazar günü müze açık mı?", "Müze pazar günü açık mı?"),
    ("Şifremi nasıl değiştirebilirim?", "Şifremi nasıl değiştiririm?"),
]


@pytest.mark.parametrize(("kind", "query", "cached"), NEAR_MISSES)
def test_default_rejects_each_near_miss_kind(embedder, verifier, kind, query, cached):
    candidate = _candidate(embedder, query, cached)
    verdict = verifier.accept(query, candidate)
    assert not verdict.accepted, f"{kind}: {verdict.reason}"
    assert verdict.score == 0.0
    # The pair model vetoes it on its own, not only the cosine floor.
    assert verifier.probability(query, cached, candidate.similarity) < verifier.threshold, kind


@pytest.mark.parametrize(("query", "cached"), PARAPHRASES)
def test_default_accepts_paraphrases(embedder, verifier, query, cached):
    candidate = _candidate(embedder, query, cached)
    verdict = verifier.accept(query, candidate)
    assert verdict.accepted and not verdict.tentative, verdict.reason
    assert verdict.score == pytest.approx(candidate.similarity)  # the nearest accepted candidate wins


def test_cosine_alone_cannot_separate_the_speed_limit_pairs(embedder, verifier):
    near = _candidate(embedder, "What is the speed limit on the highway?", "What is the speed limit in the city?")
    para = _candidate(embedder, "How fast can I drive inside the city?", "What is the speed limit in the city?")
    assert near.similarity > para.similarity  # the problem the pair model exists for
    # The precision-first default floor (0.87) does not serve the paraphrase; a lower floor does,
    # and the pair model still refuses the near miss there.
    assert not verifier.accept("How fast can I drive inside the city?", para).accepted
    looser = verifier.with_operating_point(threshold=0.5, min_similarity=0.75)
    assert looser.accept("How fast can I drive inside the city?", para).accepted
    assert not looser.accept("What is the speed limit on the highway?", near).accepted


def test_confident_gate_serves_a_sure_pair_below_the_floor_and_nothing_unsure(embedder, verifier):
    query, cached = "How much alcohol may I have in my blood when driving my own car?", "What is the blood alcohol limit for private car drivers?"
    sure = _candidate(embedder, query, cached)
    p = verifier.probability(query, cached, sure.similarity)
    plain = verifier.with_operating_point(threshold=0.5, min_similarity=sure.similarity + 0.01).with_confident_gate(None)
    assert plain.confident is None and not plain.accept(query, sure).accepted
    gated = plain.with_confident_gate((sure.similarity - 0.01, p - 0.01))
    verdict = gated.accept(query, sure)
    assert verdict.accepted and verdict.tentative and "confident gate" in verdict.reason
    assert verdict.score == pytest.approx(sure.similarity)
    assert not plain.with_confident_gate((sure.similarity - 0.01, p + 0.01)).accept(query, sure).accepted
    assert not plain.with_confident_gate((sure.similarity + 0.005, 0.0)).accept(query, sure).accepted
    with pytest.raises(ConfigError, match="confident gate"):
        plain.with_confident_gate((0.8, 1.5))
    with pytest.raises(ConfigError, match="confident gate"):
        PairVerifier({}, threshold=0.5, card={"confident": {"min_similarity": "high"}})


def test_reason_names_the_difference(embedder, verifier):
    verdict = verifier.accept("How do I disable 2FA?", _candidate(embedder, "How do I disable 2FA?", "How do I enable 2FA?"))
    assert "opposite action" in verdict.reason and "pair model" in verdict.reason


def test_is_a_verifier_and_card_is_checked(tmp_path):
    v = PairVerifier.default()
    assert isinstance(v, Verifier) and isinstance(ThresholdVerifier(), Verifier)
    assert v.card["embedder"] == "all-MiniLM-L6-v2" and v.card["dim"] == 384
    with pytest.raises(ModelMismatch, match="embedder"):
        PairVerifier.default(embedder="bge-m3")
    with pytest.raises(ModelMismatch, match="dimension"):
        PairVerifier.default(dim=1024)
    with pytest.raises(ModelError):
        PairVerifier.load(tmp_path)


def test_artifact_is_plain_arrays():
    from semroute.artifacts import model_dir

    with np.load(model_dir("verifier") / "model.npz", allow_pickle=False) as data:
        assert {"mean", "scale", "w0", "b0", "idf_words"} <= set(data.files)
        assert all(data[k].dtype != object for k in data.files)


def test_threshold_for_precision_hits_target_on_synthetic_scores():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 4000)
    scores = np.clip(rng.normal(0.35 + 0.3 * labels, 0.15), 0, 1)
    for target in (0.8, 0.9, 0.97):
        t, p, r = threshold_for_precision(scores, labels, target)
        accepted = scores >= t
        assert p >= target and abs((labels[accepted] == 1).mean() - p) < 1e-9
        # The lowest such threshold: one step lower falls below the target (or accepts the same set).
        lower = scores[scores < t].max()
        assert (labels[scores >= lower] == 1).mean() < target
        assert r == pytest.approx((labels[accepted] == 1).sum() / labels.sum())
    assert threshold_for_precision(np.array([0.9, 0.8]), np.array([0, 0]), 0.9)[0] == float("inf")


PAIRS_CSV = """query,cached,label
What is the speed limit on the highway?,What is the speed limit in the city?,0
How fast can I drive inside the city?,What is the speed limit in the city?,1
What time does the museum open on Sundays?,Is the museum open on Sunday and from what time?,1
How do I disable two-factor authentication?,How do I enable two-factor authentication?,0
How do I stop my Netflix subscription?,How do I cancel my Netflix subscription?,1
Işıkları kapat,Işıkları aç,0
Pazar günü müze açık mı?,Müze pazar günü açık mı?,1
What is the speed limit for professional drivers?,What is the speed limit for drivers?,0
"""

EXPECTED_EVAL = """pairs 8 (must hit 4, must miss 4)
hits 3: correct 3, false 0; missed 1; correct misses 4
precision 1.000  recall 0.750  F1 0.857
cosine only at the same precision: recall 0.500 (min_similarity 0.957)
cosine only curve (min_similarity precision recall):
  0.00 0.500 1.000
  0.10 0.500 1.000
  0.20 0.500 1.000
  0.30 0.500 1.000
  0.40 0.500 1.000
  0.50 0.500 1.000
  0.60 0.500 1.000
  0.70 0.500 1.000
  0.80 0.429 0.750
  0.90 0.667 0.500
  1.00 1.000 0.000
false hits (0):
"""


@pytest.fixture
def pairs_file(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text(PAIRS_CSV, encoding="utf-8")
    return path


def test_eval_output_on_a_fixed_file(embedder, pairs_file):
    # The expected numbers are MiniLM's; the CLI's default embedder is whatever Router() prefers.
    result = CliRunner().invoke(main, ["eval", str(pairs_file), "--embedder", embedder.name])
    assert result.exit_code == 0, result.output
    assert result.stdout == EXPECTED_EVAL


def test_eval_json_and_plot(embedder, pairs_file, tmp_path):
    plot = tmp_path / "curve.png"
    result = CliRunner().invoke(main, ["eval", str(pairs_file), "--json", "--plot", str(plot), "--embedder", embedder.name])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["tp"], report["fp"], report["fn"], report["tn"]) == (3, 0, 1, 4)
    assert report["false_hits"] == [] and report["precision"] == 1.0
    assert len(report["baseline"]["curve"]) == 41 and report["baseline"]["recall_at_same_precision"] == 0.5
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    cosine = CliRunner().invoke(main, ["eval", str(pairs_file), "--json", "--verifier", "cosine", "--min-similarity", "0.9",
                                       "--embedder", embedder.name])
    false_hits = json.loads(cosine.stdout)["false_hits"]
    assert [(f["query"], f["cached"]) for f in false_hits] == [
        ("What is the speed limit for professional drivers?", "What is the speed limit for drivers?")
    ]
    assert false_hits[0]["reason"].startswith("cosine 0.945 >= min_similarity 0.900")


def test_calibrate_reaches_its_target_and_eval_confirms_it(embedder, tmp_path):
    # A labelled set of its own: near misses, paraphrases and the fixed pairs above.
    rows = [(q, c, 0) for _, q, c in NEAR_MISSES] + [(q, c, 1) for q, c in PARAPHRASES]
    rows += [tuple(line.rsplit(",", 1)[0].split(",", 1)) + (int(line[-1]),) for line in PAIRS_CSV.splitlines()[1:]]
    rows += [(c, q, 1) for q, c in PARAPHRASES]  # the same paraphrases asked the other way round
    path = tmp_path / "labelled.csv"
    path.write_text("query,cached,label\n" + "".join(f'"{q}","{c}",{y}\n' for q, c, y in rows), encoding="utf-8")
    out = tmp_path / "calibrated"
    result = CliRunner().invoke(main, ["calibrate", str(path), "--target-precision", "0.9", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    fitted = json.loads(result.stdout)
    assert fitted["reached"] and fitted["precision"] >= 0.9 and fitted["recall"] > 0.5
    card = json.loads((out / "card.json").read_text(encoding="utf-8"))
    assert card["min_similarity"] == pytest.approx(fitted["min_similarity"], abs=1e-5)
    assert card["calibration"]["pairs_file"] == "labelled.csv"
    assert card["confident"] == fitted["confident"]  # chosen too (or none), and eval below measures it
    check = CliRunner().invoke(main, ["eval", str(path), "--model", str(out), "--json"])
    measured = json.loads(check.stdout)
    assert measured["precision"] >= 0.9
    assert measured["recall"] == pytest.approx(fitted["recall"], abs=1e-9)
    cosine = CliRunner().invoke(main, ["calibrate", str(path), "--target-precision", "0.9", "--verifier", "cosine", "--json"])
    assert json.loads(cosine.stdout)["recall"] < fitted["recall"]  # the pair model earns its keep here
    negatives = tmp_path / "negatives.csv"
    negatives.write_text("query,cached,label\n" + "".join(f'"{q}","{c}",0\n' for _, q, c in NEAR_MISSES[:3]), encoding="utf-8")
    unreachable = CliRunner().invoke(main, ["calibrate", str(negatives), "--target-precision", "0.9"])
    assert unreachable.exit_code == 0 and "out of reach" in unreachable.stdout


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        ("", "no data rows"),
        ("query,cached\nhi,hello\n", "missing column(s) label"),
        ("query,cached,label\nhi,hello,yes\n", "label must be 0 or 1"),
        ("query,cached,label\nhi,,1\n", "empty cached"),
        (b"query,cached,label\n\xff\xfe,x,1\n", "not UTF-8"),
    ],
)
@pytest.mark.parametrize("command", [["eval"], ["calibrate", "--target-precision", "0.9"]])
def test_bad_pairs_files_give_clear_errors(tmp_path, content, message, command):
    path = tmp_path / "pairs.csv"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content, encoding="utf-8")
    result = CliRunner().invoke(main, [*command, str(path)])
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output


def test_retrieval_needs_two_files_with_known_ids(tmp_path):
    cache = tmp_path / "cache.csv"
    cache.write_text("id,question\na,What is the speed limit in the city?\n", encoding="utf-8")
    queries = tmp_path / "queries.csv"
    queries.write_text("query,expected\nHow fast in town?,b\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["eval", "--retrieval", str(cache)])
    assert result.exit_code != 0 and "needs two files" in result.output
    result = CliRunner().invoke(main, ["eval", "--retrieval", str(cache), str(queries)])
    assert result.exit_code != 0 and "expected id 'b' is not in" in result.output
    result = CliRunner().invoke(main, ["eval", str(cache), str(queries)])
    assert result.exit_code != 0 and "only taken with --retrieval" in result.output


def test_eval_retrieval_on_a_whole_cache(embedder, tmp_path):
    cache = tmp_path / "cache.csv"
    cache.write_text(
        "id,question,answer\n"
        "city,What is the speed limit in the city?,50 km/h unless signs say otherwise.\n"
        "museum,Is the museum open on Sunday and from what time?,\"Yes, from 10:00.\"\n"
        "netflix,How do I cancel my Netflix subscription?,Account > Membership > Cancel.\n",
        encoding="utf-8",
    )
    queries = tmp_path / "queries.csv"
    queries.write_text(
        "query,expected\n"
        "What time does the museum open on Sundays?,museum\n"
        "How do I stop my Netflix subscription?,netflix\n"
        "What is the speed limit on the highway?,\n"
        "How do I cancel my Spotify subscription?,\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(main, ["eval", "--retrieval", str(cache), str(queries), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["hits"], report["correct"], report["false_hits"]) == (2, 2, [])
    loose = CliRunner().invoke(
        main, ["eval", "--retrieval", str(cache), str(queries), "--json", "--verifier", "cosine", "--min-similarity", "0.7"]
    )
    served = {(f["query"], f["served"]) for f in json.loads(loose.stdout)["false_hits"]}
    assert served == {("What is the speed limit on the highway?", "city"),
                      ("How do I cancel my Spotify subscription?", "netflix")}


def _operating_point(tmp_path, name, min_similarity):
    """A calibrated verifier directory, as ``semroute calibrate --out`` writes one."""
    import shutil

    from semroute.artifacts import model_dir

    out = tmp_path / name
    out.mkdir()
    shutil.copyfile(model_dir("verifier") / "model.npz", out / "model.npz")
    card = json.loads((model_dir("verifier") / "card.json").read_text(encoding="utf-8"))
    (out / "card.json").write_text(json.dumps({**card, "min_similarity": min_similarity}), encoding="utf-8")
    return out


def test_each_namespace_gets_its_own_operating_point():
    from semroute.hits.verify import ByNamespace, ThresholdVerifier

    verifier = ByNamespace({"strict": ThresholdVerifier(0.99), "loose": ThresholdVerifier(0.5)},
                           default=ThresholdVerifier(0.8))
    entry = CacheEntry(id="1", key="k", scope="s", namespace="strict", question="q", answer="a",
                       vector=np.zeros(3), created_at=0.0)
    verdicts = {ns: verifier.accept("q", Candidate(dataclasses.replace(entry, namespace=ns), 0.9)).accepted
                for ns in ("strict", "loose", "other")}
    assert verdicts == {"strict": False, "loose": True, "other": True}
    assert verifier.nearest_accepted_wins


def test_toml_verifiers_table_loads_calibrated_directories(tmp_path, embedder):
    from semroute import Router
    from semroute.errors import ConfigError
    from semroute.hits.verify import ByNamespace

    _operating_point(tmp_path, "traffic-op", 0.95)
    path = tmp_path / "semroute.toml"
    path.write_text('[verifiers]\ntraffic = "traffic-op"\n', encoding="utf-8")
    router = Router.from_config(path, data_dir=tmp_path / "cache", embedder=embedder)
    verifier = router.pipeline.cache.verifier.inner
    assert isinstance(verifier, ByNamespace) and verifier.verifiers["traffic"].min_similarity == 0.95
    assert verifier.default.min_similarity == 0.86
    path.write_text('[verifiers]\ntraffic = "missing-dir"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="traffic"):
        Router.from_config(path, data_dir=tmp_path / "cache")
