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


# Near misses written for this test and never trained on (the families in bench/minimal_pairs.py
# and the public sets are the training data; NEAR_MISSES above share their frames). Written before
# the verifier saw them and kept whatever it said: the four it accepted were known gaps, marked
# strict so an improved model turns them into failures that ask for the mark to go. Lexicon v4
# closed three (ordinals, start vs cancel, retirees as a scope); since these cases prompted it, they
# are regression tests now, not unseen evidence. Negation without a negation word stays open.
_GAP = "known gap: the shipped verifier accepts this unseen near miss"
UNSEEN_NEAR_MISSES = [
    ("place", "Where can I park my car near the airport?", "Where can I park my car near the train station?"),
    ("place", "Havalimanında otopark ücreti ne kadar?", "Hastanede otopark ücreti ne kadar?"),
    ("entity", "How long is the flight from Istanbul to Berlin?", "How long is the flight from Istanbul to Madrid?"),
    ("entity", "Samsung telefonumun ekranı nasıl değiştirilir?", "iPhone telefonumun ekranı nasıl değiştirilir?"),
    ("number", "Is the late fee 20 dollars for the second month?", "Is the late fee 20 dollars for the fifth month?"),
    ("number", "3 gecelik konaklama kaç lira?", "7 gecelik konaklama kaç lira?"),
    ("number", "Can I carry 2 bags on the plane?", "Can I carry 5 bags on the plane?"),
    ("action", "How do I upload a photo to my profile?", "How do I delete a photo from my profile?"),
    ("action", "Aboneliğimi nasıl başlatırım?", "Aboneliğimi nasıl iptal ederim?"),
    pytest.param("negation", "Why is my order not shipped yet?", "Why is my order shipped already?",
                 marks=pytest.mark.xfail(strict=True, reason=_GAP)),
    ("negation", "Siparişim neden teslim edilmedi?", "Siparişim neden teslim edildi?"),
    ("scope", "What is the baggage allowance for business class passengers?", "What is the baggage allowance for passengers?"),
    ("scope", "Do students pay tuition for summer courses?", "Do international students pay tuition for summer courses?"),
    ("scope", "Emekliler için toplu taşıma ücretsiz mi?", "Toplu taşıma ücretsiz mi?"),
    ("time", "Is the pharmacy open on Christmas Day?", "Is the pharmacy open on New Year's Day?"),
    ("time", "Banka cumartesi açık mı?", "Banka pazar açık mı?"),
]


@pytest.mark.parametrize(("kind", "query", "cached"), UNSEEN_NEAR_MISSES)
def test_default_rejects_unseen_near_misses_of_each_kind(embedder, verifier, kind, query, cached):
    candidate = _candidate(embedder, query, cached)
    verdict = verifier.accept(query, candidate)
    assert not verdict.accepted, f"{kind}: {verdict.reason}"
    assert verdict.score == 0.0


def test_the_unseen_near_misses_are_not_in_the_training_families():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    try:
        from minimal_pairs import FAMILIES
    finally:
        sys.path.pop(0)
    trained = {v.format(x=x).casefold() for _, _, variants, fillers, _, _ in FAMILIES for v in variants for x in fillers}
    texts = [t for p in UNSEEN_NEAR_MISSES for t in (p.values if hasattr(p, "values") else p)[1:]]
    assert len(texts) == 32 and not [t for t in texts if t.casefold() in trained]


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



@pytest.fixture
def pairs_file(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text(PAIRS_CSV, encoding="utf-8")
    return path


def _pairs() -> list[tuple[str, str, int]]:
    import csv
    import io

    return [(r["query"], r["cached"], int(r["label"])) for r in csv.DictReader(io.StringIO(PAIRS_CSV))]


def _expected(embedder, verifier) -> dict:
    """What eval must report, computed here from the verifier's own verdicts and the cosines."""
    rows = _pairs()
    candidates = [_candidate(embedder, q, c) for q, c, _ in rows]
    hits = [verifier.accept(q, cand).accepted for (q, _, _), cand in zip(rows, candidates)]
    labels = [y for _, _, y in rows]
    tp = sum(h and y for h, y in zip(hits, labels))
    fp = sum(h and not y for h, y in zip(hits, labels))
    fn = sum(y and not h for h, y in zip(hits, labels))
    sims = [cand.similarity for cand in candidates]
    precision = tp / (tp + fp)
    # the cosine baseline: the best recall of any cosine threshold at the verifier's precision
    reach = [sum(s >= t and y for s, y in zip(sims, labels)) for t in sims
             if sum(s >= t for s in sims) and sum(s >= t and y for s, y in zip(sims, labels)) / sum(s >= t for s in sims) >= precision]
    return {"rows": rows, "sims": sims, "tp": tp, "fp": fp, "fn": fn, "tn": len(rows) - tp - fp - fn,
            "positives": sum(labels), "precision": precision, "recall": tp / (tp + fn),
            "baseline_recall": max(reach, default=0) / sum(labels),
            "false_hits": [(q, c) for (q, c, y), h in zip(rows, hits) if h and not y]}


def test_eval_reports_what_the_verifier_decides(embedder, verifier, pairs_file):
    want = _expected(embedder, verifier)
    # The CLI's default embedder is whatever Router() prefers: evaluate with the fixture's.
    result = CliRunner().invoke(main, ["eval", str(pairs_file), "--embedder", embedder.name])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    n, pos = len(want["rows"]), want["positives"]
    assert lines[0] == f"pairs {n} (must hit {pos}, must miss {n - pos})"
    assert lines[1] == (f"hits {want['tp'] + want['fp']}: correct {want['tp']}, false {want['fp']}; "
                        f"missed {want['fn']}; correct misses {want['tn']}")
    assert lines[2].startswith(f"precision {want['precision']:.3f}  recall {want['recall']:.3f}")
    assert lines[3].startswith(f"cosine only at the same precision: recall {want['baseline_recall']:.3f}")
    assert lines[-1 - len(want["false_hits"])] == f"false hits ({len(want['false_hits'])}):"


def test_eval_json_and_plot(embedder, verifier, pairs_file, tmp_path):
    want = _expected(embedder, verifier)
    plot = tmp_path / "curve.png"
    result = CliRunner().invoke(main, ["eval", str(pairs_file), "--json", "--plot", str(plot), "--embedder", embedder.name])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["tp"], report["fp"], report["fn"], report["tn"]) == (want["tp"], want["fp"], want["fn"], want["tn"])
    assert [(f["query"], f["cached"]) for f in report["false_hits"]] == want["false_hits"]
    assert report["precision"] == pytest.approx(want["precision"], abs=1e-4)
    assert report["baseline"]["recall_at_same_precision"] == pytest.approx(want["baseline_recall"], abs=1e-4)
    curve = report["baseline"]["curve"]
    assert len(curve) == 41 and [c["min_similarity"] for c in curve[::10]] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    cosine = CliRunner().invoke(main, ["eval", str(pairs_file), "--json", "--verifier", "cosine", "--min-similarity", "0.9",
                                       "--embedder", embedder.name])
    false_hits = json.loads(cosine.stdout)["false_hits"]
    expected = [((q, c), s) for (q, c, y), s in zip(want["rows"], want["sims"]) if s >= 0.9 and not y]
    assert [(f["query"], f["cached"]) for f in false_hits] == [pair for pair, _ in expected]
    for f, (_, sim) in zip(false_hits, expected):
        assert f["reason"].startswith(f"cosine {sim:.3f} >= min_similarity 0.900")


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


def test_calibrate_never_counts_a_vetoed_pair_as_served(tmp_path, embedder):
    """Every pair labelled a paraphrase, one of them a near miss the pair model vetoes at every
    gate: no cosine floor serves it, so recall cannot reach 1 (a floor below the veto's score did)."""
    import csv
    import json

    from click.testing import CliRunner

    from semroute.cli import main

    pairs = tmp_path / "pairs.csv"
    rows = [("How do I renew my driving licence?", "What do I need to renew my licence?", 1),
            ("Where can I pay my parking ticket?", "Is there a place to pay a parking fine?", 1),
            ("Can I drive with a foreign licence?", "Is a foreign driving licence valid here?", 1)] + [
        ("What is the speed limit in the city?", "What is the speed limit on the motorway?", 1)]
    with open(pairs, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["query", "cached", "label"])
        writer.writerows(rows)
    result = CliRunner().invoke(main, ["calibrate", str(pairs), "--target-precision", "0.9", "--embedder", embedder.name,
                                       "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["recall"] <= (len(rows) - 1) / len(rows) and out["min_similarity"] > -1.0
