"""The complexity classifier: training, calibration, the shipped artifact, the CLI and the router.

Fast tests use synthetic unit vectors; tests marked ``slow`` load the real MiniLM embedder
(once per module) and FakeOllama over HTTP.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from semroute.routing.classify import (
    FixedTier,
    LogisticComplexityClassifier,
    decide,
    default_model_dir,
    load_default_classifier,
)
from semroute.training.complexity import ThresholdRule, evaluate, labelled_set, parse_label
from semroute.cli import main as cli
from semroute.errors import ConfigError, DimensionMismatch, ModelError, ModelMismatch
from semroute.routing.features import FEATURE_NAMES, LENGTH_FREE, text_features

ROOT = Path(__file__).resolve().parent.parent
DIM = 16
SIMPLE_Q = "What is the capital of France?"
COMPLEX_Q = (
    "Compare the total cost of renting and buying a flat over 15 years with a 4.5% mortgage, "
    "a 20% down payment and 3% yearly rent increases, and show the calculation step by step."
)


# -- synthetic data ------------------------------------------------------------------------


def synthetic(n: int = 200, seed: int = 1):
    """Two clusters of unit vectors; complex texts are long and numeric, simple ones short."""
    rng = np.random.default_rng(seed)
    labels = np.array([i % 2 for i in range(n)], dtype=np.int64)
    centre = np.zeros(DIM)
    centre[0] = 1.0
    vectors = rng.normal(size=(n, DIM)) * 0.6 + np.where(labels[:, None] == 1, centre, -centre)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    texts = [
        f"Plan step {i}: compute 12*{i} + 7, then compare it with {i}%, and explain why." if y else f"Who is {i}?"
        for i, y in enumerate(labels)
    ]
    return vectors.astype(np.float32), texts, labels


def fitted(seed: int = 0) -> LogisticComplexityClassifier:
    vectors, texts, labels = synthetic()
    return LogisticComplexityClassifier(seed=seed).fit(vectors, texts, labels)


def small_card(name: str = "all-MiniLM-L6-v2", dim: int = DIM) -> dict:
    return {"embedder": {"name": name, "dim": dim}, "training": {"rows": 200}}


def test_constructor_stores_arguments_and_fit_returns_self_with_learned_underscore_state():
    clf = LogisticComplexityClassifier(C=0.5, threshold=0.3, seed=7)
    assert (clf.C, clf.threshold, clf.seed, clf.class_weight) == (0.5, 0.3, 7, "balanced")
    assert not hasattr(clf, "coef_")
    vectors, texts, labels = synthetic()
    assert clf.fit(vectors, texts, labels) is clf
    assert clf.coef_.shape == (DIM,) and clf.feature_coef_.shape == (len(FEATURE_NAMES),)
    assert clf.dim_ == DIM and clf.n_train_ == len(labels)


def test_training_is_deterministic_with_a_seed():
    a, b = fitted(seed=3), fitted(seed=3)
    np.testing.assert_array_equal(a.coef_, b.coef_)
    np.testing.assert_array_equal(a.feature_coef_, b.feature_coef_)
    assert a.intercept_ == b.intercept_


def test_numpy_prediction_equals_sklearn_on_the_same_features():
    from sklearn.linear_model import LogisticRegression

    vectors, texts, labels = synthetic()
    clf = LogisticComplexityClassifier(seed=0).fit(vectors, texts, labels)
    feats = (text_features(texts) - clf.feature_mean_) / clf.feature_scale_
    head = [i for i, name in enumerate(FEATURE_NAMES) if name not in LENGTH_FREE]  # raw length is not read
    x = np.hstack([vectors.astype(np.float64), feats[:, head]])
    ref = LogisticRegression(C=1.0, class_weight="balanced", random_state=0, max_iter=5000).fit(x, labels)
    np.testing.assert_allclose(clf.predict_proba(vectors, texts), ref.predict_proba(x)[:, 1], rtol=1e-9, atol=1e-12)
    assert all(clf.feature_coef_[FEATURE_NAMES.index(name)] == 0.0 for name in LENGTH_FREE)


def test_it_separates_the_classes_and_decide_picks_the_tiers():
    clf = fitted()
    vectors, texts, labels = synthetic(n=60, seed=9)
    assert (clf.predict(vectors, texts) == labels.astype(bool)).mean() > 0.95
    simple = decide(clf, vectors[0], texts[0])
    complex_ = decide(clf, vectors[1], texts[1])
    assert (simple.tier, complex_.tier) == ("small", "large")
    assert simple.probability < clf.threshold <= complex_.probability
    assert decide(FixedTier("large"), vectors[0], texts[0]).tier == "large"


def test_calibrate_to_a_large_tier_share_on_reference_traffic():
    clf = fitted()
    vectors, texts, _ = synthetic(n=400, seed=5)
    for share in (0.1, 0.25, 0.6):
        clf.calibrate_share(vectors, texts, share)
        assert clf.predict(vectors, texts).mean() == pytest.approx(share, abs=0.01)
    assert clf.calibrate_share(vectors, texts, 0.0).predict(vectors, texts).sum() == 0
    with pytest.raises(ConfigError):
        clf.calibrate_share(vectors, texts, 1.5)


def test_calibrate_to_a_recall_of_complex_takes_the_highest_such_threshold():
    clf = fitted()
    vectors, texts, labels = synthetic(n=400, seed=6)
    # Blur the classes so recall targets bite.
    noisy = vectors + np.random.default_rng(0).normal(size=vectors.shape).astype(np.float32)
    for target in (0.8, 0.95, 1.0):
        clf.calibrate_recall(noisy, texts, labels, target)
        pred = clf.predict(noisy, texts)
        assert pred[labels == 1].mean() >= target
        clf.threshold = np.nextafter(clf.threshold, 1.0)  # any higher threshold misses the target
        assert clf.predict(noisy, texts)[labels == 1].mean() < target
    with pytest.raises(ConfigError):
        clf.calibrate_recall(noisy, texts, labels, 0.0)


def test_bad_training_input_raises_typed_errors():
    vectors, texts, labels = synthetic(n=20)
    with pytest.raises(ConfigError):
        LogisticComplexityClassifier().fit(vectors, texts, np.zeros(20))  # one class only
    with pytest.raises(ConfigError):
        LogisticComplexityClassifier().fit(vectors, texts, labels[:10])
    with pytest.raises(DimensionMismatch):
        LogisticComplexityClassifier().fit(vectors, texts[:5], labels)
    with pytest.raises(ModelError):
        LogisticComplexityClassifier().predict_proba(vectors, texts)


# -- the artifact ----------------------------------------------------------------------------


def test_save_load_round_trip_is_plain_arrays_and_reproduces_probabilities(tmp_path):
    clf = fitted()
    clf.threshold = 0.42
    clf.save(tmp_path, small_card())
    with np.load(tmp_path / "model.npz", allow_pickle=False) as npz:  # no pickled objects inside
        assert sorted(npz.files) == ["coef", "feature_coef", "feature_mean", "feature_scale", "intercept"]
    card = json.loads((tmp_path / "card.json").read_text(encoding="utf-8"))
    assert card["threshold"] == 0.42 and card["dim"] == DIM and card["features"] == list(FEATURE_NAMES)
    back = LogisticComplexityClassifier.load(tmp_path, embedder_name="all-MiniLM-L6-v2", dim=DIM)
    vectors, texts, _ = synthetic(n=30, seed=4)
    np.testing.assert_array_equal(back.predict_proba(vectors, texts), clf.predict_proba(vectors, texts))
    assert back.threshold == 0.42 and back.card_["embedder"]["name"] == "all-MiniLM-L6-v2"


def test_loading_for_another_embedder_raises_model_mismatch(tmp_path):
    fitted().save(tmp_path, small_card())
    with pytest.raises(ModelMismatch, match="bge-m3"):
        LogisticComplexityClassifier.load(tmp_path, embedder_name="ollama:bge-m3")
    with pytest.raises(ModelMismatch, match="1024"):
        LogisticComplexityClassifier.load(tmp_path, dim=1024)
    clf = LogisticComplexityClassifier.load(tmp_path)
    with pytest.raises(DimensionMismatch):
        clf.predict_proba(np.ones((1, DIM + 1), dtype=np.float32), ["x"])


def test_damaged_artifacts_raise_model_errors(tmp_path):
    fitted().save(tmp_path, small_card())
    card_path = tmp_path / "card.json"
    card = json.loads(card_path.read_text(encoding="utf-8"))
    card_path.write_text(json.dumps({**card, "features": ["log_chars"]}), encoding="utf-8")
    with pytest.raises(ModelMismatch, match="features"):
        LogisticComplexityClassifier.load(tmp_path)
    card_path.write_text(json.dumps({**card, "dim": DIM + 1}), encoding="utf-8")
    with pytest.raises(ModelError, match="shapes"):
        LogisticComplexityClassifier.load(tmp_path)
    card_path.write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelError):
        LogisticComplexityClassifier.load(tmp_path)
    with pytest.raises(ModelError, match="card.json"):
        LogisticComplexityClassifier.load(tmp_path / "missing")


# -- the routing head --------------------------------------------------------------------------


def with_routing(clf: LogisticComplexityClassifier, **kw) -> LogisticComplexityClassifier:
    """A routing head on synthetic labels: 'needs large' where the second vector axis is positive."""
    vectors, texts, _ = synthetic(n=300, seed=11)
    return clf.fit_routing(vectors, texts, (vectors[:, 1] > 0).astype(int), **kw)


def test_routing_head_reorders_prompts_the_complexity_head_is_sure_about():
    clf = fitted()
    vectors, texts, labels = synthetic(n=200, seed=12)
    sure = clf.decision_function(vectors, texts)
    assert with_routing(clf, clip=2.0, weight=1.0, length_weight=0.0) is clf
    z = clf.decision_function(vectors, texts)
    route = z - np.clip(sure, -2.0, 2.0)  # what the routing head adds, per prompt
    assert np.corrcoef(route, vectors[:, 1])[0, 1] > 0.8  # it learned its own label
    complex_ = labels == 1
    # Among prompts the complexity head calls complex beyond the clip, only the routing head ranks.
    beyond = complex_ & (sure > 2.0)
    assert beyond.sum() > 20
    np.testing.assert_allclose(z[beyond], 2.0 + route[beyond])
    assert (clf.predict(vectors, texts) == labels.astype(bool)).mean() > 0.9  # the tiers still follow complexity


def test_routing_head_round_trips_in_format_3_and_refitting_drops_it(tmp_path):
    clf = with_routing(fitted(), clip=3.0, weight=0.5, length_weight=0.25)
    clf.save(tmp_path, small_card())
    with np.load(tmp_path / "model.npz", allow_pickle=False) as npz:
        assert {"route_coef", "route_feature_coef", "route_intercept"} <= set(npz.files)
    card = json.loads((tmp_path / "card.json").read_text(encoding="utf-8"))
    assert card["format"] == "semroute.complexity/3"
    assert {k: card["routing"][k] for k in ("clip", "weight", "length_weight")} == {"clip": 3.0, "weight": 0.5, "length_weight": 0.25}
    back = LogisticComplexityClassifier.load(tmp_path)
    vectors, texts, _ = synthetic(n=30, seed=4)
    np.testing.assert_array_equal(back.predict_proba(vectors, texts), clf.predict_proba(vectors, texts))
    clf.fit(*synthetic()[:2], synthetic()[2])
    assert not hasattr(clf, "routing_")
    clf.save(tmp_path / "plain", small_card())
    plain = json.loads((tmp_path / "plain" / "card.json").read_text(encoding="utf-8"))
    assert plain["format"] == "semroute.complexity/3" and "routing" not in plain


def test_bad_routing_input_and_damaged_routing_artifacts_raise(tmp_path):
    vectors, texts, labels = synthetic(n=40)
    with pytest.raises(ModelError):
        LogisticComplexityClassifier().fit_routing(vectors, texts, labels)  # complexity head first
    with pytest.raises(ConfigError):
        fitted().fit_routing(vectors, texts, np.zeros(40))
    with pytest.raises(ConfigError):
        fitted().fit_routing(vectors, texts, labels, clip=0.0)
    with_routing(fitted()).save(tmp_path, small_card())
    card_path = tmp_path / "card.json"
    card = json.loads(card_path.read_text(encoding="utf-8"))
    card_path.write_text(json.dumps({**card, "routing": {"clip": 3.0}}), encoding="utf-8")
    with pytest.raises(ModelError, match="routing"):
        LogisticComplexityClassifier.load(tmp_path)
    card_path.write_text(json.dumps({k: v for k, v in card.items() if k != "routing"}), encoding="utf-8")
    with pytest.raises(ModelError, match="routing"):  # routing arrays without their card entry
        LogisticComplexityClassifier.load(tmp_path)


@pytest.mark.parametrize("old", ["semroute.complexity/1", "semroute.complexity/2"])
def test_cards_of_the_old_length_features_are_refused_as_a_mismatch(tmp_path, old):
    fitted().save(tmp_path, small_card())
    card_path = tmp_path / "card.json"
    card = json.loads(card_path.read_text(encoding="utf-8"))
    old_features = ["log_chars", "log_words", "digit_share", "sentences", "clauses", "math", "code"]
    card_path.write_text(json.dumps({**card, "format": old, "features": old_features}), encoding="utf-8")
    with pytest.raises(ModelMismatch, match="retrain"):
        LogisticComplexityClassifier.load(tmp_path)


def test_the_shipped_artifact_measures_what_its_card_claims_on_its_heldout_file(embedder):
    """The card's held-out numbers are re-measured here from the file it names, not copied."""
    import hashlib

    where = default_model_dir()
    clf = load_default_classifier(embedder)
    card = clf.card_
    assert card["embedder"] == {"name": "all-MiniLM-L6-v2", "dim": 384} and clf.dim_ == 384
    heldout = Path(__file__).resolve().parents[1] / "data" / card["heldout"]["file"]
    assert hashlib.sha256(heldout.read_bytes()).hexdigest() == card["heldout"]["sha256"]  # the very file
    with heldout.open(encoding="utf-8", newline="") as f:
        data = labelled_set(list(csv.DictReader(f)), name=heldout.name)
    assert data.counts() == card["heldout"]["counts"]
    measured = evaluate(clf, embedder.embed(data.prompts), data)
    claimed = card["heldout"]["metrics"]
    assert measured.accuracy == pytest.approx(claimed["accuracy"], abs=0.01)
    assert measured.roc_auc == pytest.approx(claimed["roc_auc"], abs=0.01)
    assert measured.accuracy >= 0.9  # and what it claims is worth shipping
    assert (where / "model.npz").is_file()
    with pytest.raises(ModelMismatch):
        LogisticComplexityClassifier.load(embedder_name="all-mpnet-base-v2")


class HashEmbedder:
    """A deterministic stand-in embedder: the synthetic cluster each text belongs to, plus noise."""

    name = "test-hash"
    dim = DIM

    def embed(self, texts):
        rng = np.random.default_rng(len(texts))
        centre = np.zeros(DIM)
        centre[0] = 1.0
        sign = np.array([[1.0] if t.startswith("Plan") else [-1.0] for t in texts])
        vectors = rng.normal(size=(len(texts), DIM)) * 0.6 + sign * centre
        return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def test_train_calibrates_to_a_share_and_cards_the_embedder(tmp_path):
    from semroute.training.complexity import train

    _, texts, labels = synthetic(n=200)
    rows = [{"prompt": t, "label": str(y), "source": "synthetic"} for t, y in zip(texts, labels)]
    data = labelled_set(rows, name="synthetic.csv")
    reference = ([t for t in texts[:100]], "reference.csv")
    messages: list[str] = []
    clf, card = train(data, embedder=HashEmbedder(), rule=ThresholdRule("share", 0.3), reference=reference,
                      heldout=data, progress=messages.append)
    ref_vectors = HashEmbedder().embed(reference[0])
    assert clf.predict(ref_vectors, reference[0]).mean() == pytest.approx(0.3, abs=0.011)
    assert card["threshold_rule"] == {"kind": "share", "target": 0.3, "on": "reference.csv"}
    assert card["embedder"] == {"name": "test-hash", "dim": DIM} and card["training"]["counts"] == {"simple": 100, "complex": 100}
    assert any("fitting" in m for m in messages)
    clf.save(tmp_path, card)
    with pytest.raises(ModelMismatch, match="test-hash"):
        LogisticComplexityClassifier.load(tmp_path, embedder_name="all-MiniLM-L6-v2")
    with pytest.raises(ConfigError):
        train(labelled_set(rows[:1], name="one.csv"), embedder=HashEmbedder())  # one class only


def test_train_with_a_routing_set_cards_it_and_calibrates_recall_with_the_head():
    from semroute.training.complexity import train

    _, texts, labels = synthetic(n=200)
    data = labelled_set([{"prompt": t, "label": str(y)} for t, y in zip(texts, labels)], name="synthetic.csv")
    # Routing labels: among complex prompts, the longer ones need the large model.
    routing_rows = [{"prompt": t, "label": str(int(y == 1 and len(t) > 70)), "source": "bench"}
                    for t, y in zip(texts, labels)]
    routing = labelled_set(routing_rows, name="routing.csv")
    clf, card = train(data, embedder=HashEmbedder(), rule=ThresholdRule("recall", 0.95), routing=routing)
    assert hasattr(clf, "routing_") and card["routing"]["file"] == "routing.csv"
    assert card["routing"]["counts"] == routing.counts() and "weak model" in card["routing"]["label_definition"]
    vectors = HashEmbedder().embed(list(texts))
    assert clf.predict(vectors, texts)[labels == 1].mean() >= 0.95


# -- labels and the CLI (no embedder needed for bad files) ----------------------------------


def test_labels_accept_words_and_digits_and_refuse_others():
    assert [parse_label(v) for v in ("simple", "COMPLEX", "0", " 1 ")] == [0, 1, 0, 1]
    with pytest.raises(ConfigError, match="unknown label"):
        parse_label("hard")
    rows = [{"prompt": "a", "label": "simple"}, {"prompt": "b", "label": "maybe"}]
    with pytest.raises(ConfigError, match="row 3"):
        labelled_set(rows, name="x.csv")


def write_csv(path: Path, rows: list[list[str]], header=("prompt", "label")) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.mark.parametrize(
    "content, message",
    [
        (b"question,label\nhi,simple\n", "missing column"),
        (b"", "no data rows"),
        (b"prompt,label\n", "no data rows"),
        (b"prompt,label\nhello,simple\nhow,hard\n", "unknown label"),
        (b"prompt,label\n\xff\xfe bad,simple\n", "UTF-8"),
        (b"prompt,label\n,simple\n", "empty prompt"),
    ],
)
def test_bad_label_files_fail_clearly_and_write_nothing(tmp_path, content, message):
    labels = tmp_path / "labels.csv"
    labels.write_bytes(content)
    out = tmp_path / "model"
    result = CliRunner().invoke(cli, ["train-router", str(labels), "--out", str(out)])
    assert result.exit_code != 0 and message in result.output
    assert not out.exists()
    result = CliRunner().invoke(cli, ["eval-router", str(labels)])
    assert result.exit_code != 0 and message in result.output


def test_missing_label_file_and_conflicting_options_fail(tmp_path):
    result = CliRunner().invoke(cli, ["train-router", str(tmp_path / "none.csv"), "--out", str(tmp_path / "m")])
    assert result.exit_code != 0 and "no such file" in result.output
    labels = write_csv(tmp_path / "l.csv", [["a", "simple"], ["b", "complex"]])
    result = CliRunner().invoke(
        cli, ["train-router", str(labels), "--out", str(tmp_path / "m"), "--target-share", "0.2", "--target-recall", "0.9"]
    )
    assert result.exit_code != 0 and "choose one" in result.output


# -- with the real embedder ------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm():
    from semroute.embed import SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder()
    embedder.embed(["warm up"])
    return embedder


def read_labelled(path: Path):
    with path.open(encoding="utf-8", newline="") as f:
        return labelled_set(list(csv.DictReader(f)), name=path.name)


@pytest.mark.slow
def test_shipped_artifact_reproduces_its_cards_heldout_metrics(minilm):
    clf = load_default_classifier(minilm)
    card = clf.card_["heldout"]
    heldout = read_labelled(ROOT / "data" / card["file"])
    assert len(heldout.prompts) == card["rows"]
    result = evaluate(clf, minilm.embed(list(heldout.prompts)), heldout).as_dict()
    # Embeddings can differ in the last bits across CPUs; allow one prompt of difference.
    assert result["accuracy"] == pytest.approx(card["metrics"]["accuracy"], abs=1.5 / card["rows"])
    assert result["roc_auc"] == pytest.approx(card["metrics"]["roc_auc"], abs=2e-3)
    assert result["large_share"] == pytest.approx(card["metrics"]["large_share"], abs=1.5 / card["rows"])


@pytest.mark.slow
def test_cli_round_trip_train_then_eval(tmp_path, minilm):
    train = read_labelled(ROOT / "data" / "complexity_train.csv")
    # A small balanced file: 30 written prompts of each class, English and Turkish.
    source = train.groups["source"]
    rows, counts = [], {0: 0, 1: 0}
    for prompt, label, src in zip(train.prompts, train.labels.tolist(), source):
        if src == "written" and counts[label] < 30:
            rows.append([prompt, "complex" if label else "simple"])
            counts[label] += 1
    labels = write_csv(tmp_path / "labels.csv", rows)
    heldout = write_csv(tmp_path / "heldout.csv", [[SIMPLE_Q, "0"], [COMPLEX_Q, "1"]])
    routing = write_csv(tmp_path / "routing.csv", [[r[0], str(int(i % 3 == 0))] for i, r in enumerate(rows)])
    out = tmp_path / "model"
    runner = CliRunner()
    result = runner.invoke(cli, ["train-router", str(labels), "--out", str(out), "--heldout", str(heldout),
                                 "--routing", str(routing), "--target-recall", "0.9"])
    assert result.exit_code == 0, result.output
    card = json.loads((out / "card.json").read_text(encoding="utf-8"))
    assert card["training"]["counts"] == {"simple": 30, "complex": 30}
    assert card["format"] == "semroute.complexity/3" and card["routing"]["counts"] == {"simple": 40, "complex": 20}
    assert card["threshold_rule"]["kind"] == "recall" and card["heldout"]["rows"] == 2
    result = runner.invoke(cli, ["eval-router", str(heldout), "--model", str(out), "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["n"] == 2 and metrics["accuracy"] == card["heldout"]["metrics"]["accuracy"]
    text = runner.invoke(cli, ["eval-router", str(heldout), "--model", str(out)]).output
    assert "ROC AUC" in text and "routed to large" in text


@pytest.mark.slow
def test_router_sends_simple_and_complex_questions_to_different_tiers(tmp_path, minilm):
    from semroute import Router, Tier
    from semroute.testing import FakeOllama

    small, large = "llama3.2:3b", "llama3.1:8b"
    with FakeOllama((small, large)) as fake:
        tiers = {"small": Tier(small, (fake.url,)), "large": Tier(large, (fake.url,))}
        clf = load_default_classifier(minilm)
        router = Router(tiers=tiers, data_dir=tmp_path, embedder=minilm, classifier=clf)
        try:
            simple = router.ask(SIMPLE_Q)
            complex_ = router.ask(COMPLEX_Q)
        finally:
            router.close()
    assert (simple.source, simple.model) == ("small", small)
    assert (complex_.source, complex_.model) == ("large", large)
    assert simple.probability < clf.threshold <= complex_.probability


@pytest.mark.slow
def test_the_demo_replays_small_and_large_rows_go_to_their_tiers(minilm):
    with (ROOT / "data" / "demo_queries.csv").open(encoding="utf-8", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["expect"] in ("small", "large")]
    assert len(rows) >= 10 and {r["lang"] for r in rows} == {"en", "tr"}
    clf = load_default_classifier(minilm)
    questions = [r["question"] for r in rows]
    tiers = ["large" if large else "small" for large in clf.predict(minilm.embed(questions), questions)]
    assert tiers == [r["expect"] for r in rows]
