"""The language guard: a cached answer is served only to a question in the cached question's language.

Real py3langid throughout; the end-to-end tests use the real multilingual-e5 embedder, which
places a question and its translation close enough for a cosine gate to serve one for the other.
The pairs below were written for this test (not taken from any set the threshold was tuned on).
"""

from __future__ import annotations

import numpy as np
import pytest

from semroute import CacheSettings, ConfigError, JudgeSettings, Router, RouterSettings, ThresholdVerifier, Tier
from semroute.cache import FaissIndex, MemoryStore
from semroute.hits import SemanticCache
from semroute.hits.consensus import AnswerConsensus
from semroute.hits.judge import GreyZone
from semroute.hits.language import LANGUAGE_REFUSAL, LanguageGuard
from semroute.artifacts import load_artifact, model_dir
from semroute.types import CacheEntry, Candidate, Verdict
from semroute.testing import FakeOllama

TRANSLATIONS = [
    ("How do I renew my driving licence?", "Sürücü belgemi nasıl yenilerim?"),
    ("What is the fine for running a red light?", "Kırmızı ışıkta geçmenin cezası nedir?"),
    ("Do I need winter tyres in January?", "Ocak ayında kış lastiği takmam gerekir mi?"),
    ("Where can I pay my parking ticket?", "Park cezamı nereden ödeyebilirim?"),
    ("How many points does a speeding offence cost?", "Hız ihlali kaç ceza puanına mal olur?"),
    ("Can I cancel my gym membership online?", "Spor salonu üyeliğimi internetten iptal edebilir miyim?"),
]
SAME_LANGUAGE = [
    ("How do I renew my driving licence?", "What do I need to renew my licence?"),
    ("Sürücü belgemi nasıl yenilerim?", "Ehliyet yenileme için ne gerekir?"),
    ("Kırmızı ışıkta geçmenin cezası nedir?", "Kırmızıda geçersem ne kadar ceza öderim?"),
    ("Where can I pay my parking ticket?", "Is there a place to pay a parking fine?"),
]
# Too short to say anything about their language: never a reason to refuse.
UNINFORMATIVE = [("hiya!", "How do I renew my driving licence?"), ("ok?", "Sürücü belgemi nasıl yenilerim?")]


@pytest.fixture(scope="module")
def guard() -> LanguageGuard:
    return LanguageGuard()


@pytest.mark.parametrize(("english", "turkish"), TRANSLATIONS)
def test_a_question_and_its_translation_are_refused_both_ways(guard, english, turkish):
    why = guard.mismatch(english, turkish)
    assert why is not None and why.startswith(LANGUAGE_REFUSAL) and "query en" in why and "cached tr" in why
    assert guard.mismatch(turkish, english) is not None


@pytest.mark.parametrize(("query", "cached"), SAME_LANGUAGE + UNINFORMATIVE)
def test_same_language_and_uninformative_pairs_pass(guard, query, cached):
    assert guard.mismatch(query, cached) is None, guard.overlap(query, cached)


def test_each_text_is_ranked_once_while_it_is_remembered():
    calls: list[str] = []

    class Counting:
        def rank(self, text):
            calls.append(text)
            return [("en", 0.9), ("tr", 0.1)] if text.isascii() else [("tr", 0.9), ("en", 0.1)]

    guard = LanguageGuard(ranker=Counting, memo=2)
    for _ in range(3):
        assert guard.mismatch("speed limit?", "hız sınırı?") is not None
    assert calls == ["speed limit?", "hız sınırı?"]
    guard.mismatch("a", "b")  # two new texts push the first two out of a memo of two
    guard.mismatch("speed limit?", "speed limit?")
    assert calls.count("speed limit?") == 2


def test_the_shipped_ranker_reads_py3langids_scores_as_rank_gives_them():
    """``probabilities`` (py3langid's scores before ``rank`` sorts them) equals ``rank`` on texts of
    many languages and lengths, aliases merged; the guard takes that path."""
    from semroute.hits.language import ArrayRanker, _py3langid

    ranker = _py3langid()
    assert isinstance(ranker, ArrayRanker) and ranker._decide is not None
    assert len(set(ranker.codes)) == len(ranker.codes)
    texts = [t for pair in TRANSLATIONS + SAME_LANGUAGE + UNINFORMATIVE for t in pair] + [
        "", "12345", "Где находится вокзал?", "Wo ist der Bahnhof?", "Gdje je kolodvor?", "Где је станица?", "駅はどこですか"]
    for text in texts:
        ranked = dict(ranker.rank(text))
        fast = ranker.probabilities(text)
        assert set(ranked) == set(ranker.codes), text
        np.testing.assert_allclose(fast, [ranked[c] for c in ranker.codes], atol=1e-6, err_msg=text)


def test_a_py3langid_whose_private_scores_disagree_is_read_through_rank():
    """``_decide`` is py3langid's private method: if a version changes it, the adapter notices at
    load and ranks every text through the public ``rank``; the guard decides as before."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    from semroute.hits.language import _Py3Langid

    class Changed:
        """py3langid's public ``rank`` and classes, with a ``_decide`` that now means something else."""

        def __init__(self, inner):
            self.nb_classes, self.rank = inner.nb_classes, inner.rank

        def _decide(self, text):
            return np.full(len(self.nb_classes), 1.0 / len(self.nb_classes), dtype=np.float32)

    changed = _Py3Langid(Changed(LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)))
    assert changed._decide is None
    guard = LanguageGuard(ranker=lambda: changed)
    for english, turkish in TRANSLATIONS:
        assert guard.mismatch(english, turkish) is not None
    for query, cached in SAME_LANGUAGE:
        assert guard.mismatch(query, cached) is None


@pytest.mark.parametrize("bad", [0, -0.1, 1.5, True, "0.5", None])
def test_bad_thresholds_are_refused(bad):
    with pytest.raises(ConfigError, match="max_overlap"):
        LanguageGuard(bad)
    with pytest.raises(ConfigError, match="min_confidence"):
        LanguageGuard(min_confidence=bad)


@pytest.mark.parametrize("bad", ["yes", 1, None])
def test_cross_language_must_be_a_bool(bad):
    with pytest.raises(ConfigError, match="cross_language"):
        CacheSettings(cross_language=bad)


@pytest.fixture(scope="module")
def e5():
    from semroute.embed import make_embedder

    embedder = make_embedder("multilingual-e5-small")
    embedder.embed(["ısınma"])
    return embedder


def _entry(i: int, question: str, answer: str, vector: np.ndarray) -> CacheEntry:
    return CacheEntry(id=str(i), key=str(i), scope="s", namespace="s", question=question, answer=answer,
                      vector=np.asarray(vector, dtype=np.float32), created_at=0.0)


def test_the_cache_refuses_an_accepted_candidate_in_another_language_and_serves_one_in_the_query_language(e5, guard):
    english, turkish = TRANSLATIONS[0]
    rows = [(turkish, "TR answer"), ("What do I need to renew my licence?", "EN answer")]
    vectors = e5.embed([q for q, _ in rows])
    judge_all = ThresholdVerifier(0.8)
    judge_all.nearest_accepted_wins = False  # judge both candidates, whichever is nearer
    cache = SemanticCache(MemoryStore(), FaissIndex(e5.dim), judge_all, top_k=4, clock=lambda: 0.0, language=guard)
    cache.insert([_entry(i, q, a, vectors[i]) for i, (q, a) in enumerate(rows)])
    query = e5.embed([english])[0]
    hit, judged = cache.semantic(english, query, "s")
    assert hit is not None and hit.entry.answer == "EN answer"
    assert [c.entry.question for c, v in judged if v.reason.startswith(LANGUAGE_REFUSAL)] == [turkish]
    assert all(c.similarity >= 0.8 for c, _ in judged)  # both cleared the gate: the guard alone refused one
    # Without the English entry nothing is served; without the guard the Turkish answer is.
    alone = SemanticCache(MemoryStore(), FaissIndex(e5.dim), ThresholdVerifier(0.8), top_k=4, clock=lambda: 0.0,
                          language=guard)
    alone.insert([_entry(0, turkish, "TR answer", vectors[0])])
    hit, judged = alone.semantic(english, query, "s")
    assert hit is None and judged[0][1].reason.startswith(LANGUAGE_REFUSAL)
    unguarded = SemanticCache(MemoryStore(), FaissIndex(e5.dim), ThresholdVerifier(0.8), top_k=4, clock=lambda: 0.0)
    unguarded.insert([_entry(0, turkish, "TR answer", vectors[0])])
    hit, _ = unguarded.semantic(english, query, "s")
    assert hit is not None and hit.entry.answer == "TR answer"  # the failure the guard exists for


def _unit(*xs: float) -> np.ndarray:
    v = np.zeros(8, dtype=np.float32)
    v[: len(xs)] = xs
    return v / np.linalg.norm(v)


def _bilingual_neighbourhood(consensus_threshold: float, language):
    """Geometry by hand: one English entry nearest, three Turkish entries sharing an answer close behind."""
    card, arrays = load_artifact(model_dir("consensus"), "consensus model")
    arrays.pop("adapter")  # the adapter is 384-d; these vectors are 8-d
    consensus = AnswerConsensus(arrays, {**card, "threshold": consensus_threshold}, lambda q, c, s: 0.9)
    turkish = ["Ehliyetimi nasıl yenilerim?", "Sürücü belgesi yenileme nasıl yapılır?",
               "Ehliyet yenilemek için nereye gitmeliyim?"]
    rows = [("Where do I renew my licence?", "EN answer", _unit(1, 0.3))] + [
        (q, "TR answer", _unit(1, 0.35 + i / 100, *([0] * i), 0.1)) for i, q in enumerate(turkish)]
    cache = SemanticCache(MemoryStore(), FaissIndex(8, kind="flat"), ThresholdVerifier(0.9), top_k=4,
                          clock=lambda: 0.0, consensus=consensus, language=language)
    cache.insert([_entry(i, q, a, v) for i, (q, a, v) in enumerate(rows)])
    hit, judged = cache.semantic("How do I renew my driving licence?", _unit(1), "s")
    return cache, None if hit is None else hit.entry.answer, judged


def test_the_consensus_does_not_serve_an_answer_from_another_language(guard):
    cache, served, judged = _bilingual_neighbourhood(0.0, guard)  # a vote that would serve anything
    assert served == "EN answer" and cache.consensus_hits == 0
    assert any(v.reason.startswith(LANGUAGE_REFUSAL) and c.entry.answer == "TR answer" for c, v in judged)
    assert _bilingual_neighbourhood(0.0, None)[1] == "TR answer"  # the failure the guard exists for


def test_an_answer_in_another_language_does_not_veto_a_verified_hit(guard):
    cache, served, _ = _bilingual_neighbourhood(1.0, guard)  # a vote that never serves, only vetoes
    assert served == "EN answer" and cache.consensus_vetoes == 0
    unguarded, served, _ = _bilingual_neighbourhood(1.0, None)
    assert served is None and unguarded.consensus_vetoes == 1


def test_the_grey_zone_never_asks_about_a_question_in_another_language(guard):
    english, turkish = TRANSLATIONS[1]
    entry = _entry(0, turkish, "TR answer", _unit(1))
    judged = [(Candidate(entry, 0.95), Verdict(False, 0.95, "cosine below the floor"))]
    settings = JudgeSettings()

    def zone(language):
        return GreyZone(settings, model="m", pool=lambda: None, verifier=lambda: ThresholdVerifier(0.99),
                        language=language)

    assert zone(None).pick(english, judged) is not None
    assert zone(lambda: guard).pick(english, judged) is None
    assert zone(lambda: guard).pick(turkish + " Lütfen.", judged) is not None


@pytest.mark.parametrize("cross_language", [False, True])
def test_the_router_keeps_answers_in_the_askers_language_unless_told_otherwise(tmp_path, e5, cross_language):
    english, turkish = TRANSLATIONS[3]
    tiers = None
    with FakeOllama(["llama3.2:3b", "llama3.1:8b"]) as fake:
        tiers = {"small": Tier("llama3.2:3b", (fake.url,)), "large": Tier("llama3.1:8b", (fake.url,))}
        settings = RouterSettings(cache=CacheSettings(cross_language=cross_language, consensus=False))
        router = Router(tiers=tiers, data_dir=tmp_path, embedder=e5, verifier=ThresholdVerifier(0.8),
                        settings=settings)
        try:
            router.warm([(turkish, "Park cezaları e-Devlet'ten ödenir.")])
            answer = router.ask(english, tier="small")
            counters = router.stats()["counters"]
        finally:
            router.close()
    if cross_language:
        assert answer.source == "semantic" and answer.text.startswith("Park")
        assert counters.get("verifier.language_refused", 0) == 0
    else:
        assert answer.source == "small"
        assert counters["verifier.language_refused"] == 1


@pytest.mark.parametrize(("line", "expected"), [("cross_language = true", True), ("", False)])
def test_the_config_file_sets_cross_language(tmp_path, line, expected):
    from semroute.config import load_config

    path = tmp_path / "semroute.toml"
    path.write_text(f"[cache]\n{line}\n", encoding="utf-8")
    assert load_config(path)["settings"].cache.cross_language is expected
    path.write_text('[cache]\ncross_language = "no"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="cross_language"):
        load_config(path)


@pytest.mark.parametrize("cross_language", [False, True])
def test_a_bilingual_faq_keeps_both_languages_when_near_duplicates_are_dropped(tmp_path, e5, cross_language):
    english, turkish = TRANSLATIONS[3]
    rows = [(turkish, "Park cezaları e-Devlet'ten ödenir."), (english, "Parking fines are paid on e-Devlet."),
            ("Where do I pay a parking ticket?", "Parking fines are paid on e-Devlet.")]
    settings = RouterSettings(cache=CacheSettings(cross_language=cross_language, consensus=False))
    router = Router(tiers={"small": Tier("llama3.2:3b", ("http://127.0.0.1:9",))}, data_dir=tmp_path, embedder=e5,
                    verifier=ThresholdVerifier(0.8), settings=settings)
    try:
        report = router.warm(rows, near_duplicates=0.85)
    finally:
        router.close()
    if cross_language:  # the translation counts as a neighbour with another answer: reported, not stored
        assert report.added == 1 and report.conflicts[0].question == english
        assert report.conflicts[0].other_question == turkish
    else:  # both languages stored; the English rewording is a near duplicate of the English row
        assert report.added == 2 and report.conflicts == [] and report.near_duplicates == 1


def _recall_with_and_without_the_guard(tmp_path, rows, *command: str) -> dict[bool, float]:
    """{cross_language: recall} of ``semroute <command> PAIRS --json`` on labelled ``rows``."""
    import csv
    import json

    from click.testing import CliRunner

    from semroute.cli import main

    pairs = tmp_path / "pairs.csv"
    with open(pairs, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["query", "cached", "label"])
        writer.writerows(rows)
    recall = {}
    for flag in ([], ["--cross-language"]):
        result = CliRunner().invoke(main, [command[0], str(pairs), *command[1:], "--json", *flag])
        assert result.exit_code == 0, result.output
        recall[bool(flag)] = json.loads(result.stdout)["recall"]
    return recall


def test_eval_looks_up_through_the_guard_unless_told_otherwise(tmp_path, e5):
    rows = [(en, tr, 1) for en, tr in TRANSLATIONS]
    recall = _recall_with_and_without_the_guard(tmp_path, rows, "eval", "--verifier", "cosine", "--min-similarity",
                                                "0.8", "--embedder", e5.name)
    assert recall[False] == 0.0 and recall[True] > 0.5  # every pair is a translation: served only without it


def test_a_missing_py3langid_is_a_clear_error_naming_the_way_out(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "py3langid", None)  # what an install without it looks like to import
    monkeypatch.setitem(sys.modules, "py3langid.langid", None)
    with pytest.raises(ConfigError, match="cross_language"):
        LanguageGuard().load()


def test_calibrate_counts_a_pair_the_guard_refuses_as_never_served(tmp_path, e5):
    rows = [(en, tr, 1) for en, tr in TRANSLATIONS] + [(q, c, 1) for q, c in SAME_LANGUAGE]
    recall = _recall_with_and_without_the_guard(tmp_path, rows, "calibrate", "--target-precision", "0.9",
                                                "--verifier", "cosine", "--embedder", e5.name)
    assert recall[False] == pytest.approx(len(SAME_LANGUAGE) / len(rows))
    assert recall[True] == 1.0
