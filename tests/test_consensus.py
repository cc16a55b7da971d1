"""Answer consensus: a supported answer is served below the floor, near misses still refused,
a verified hit the neighbourhood outvotes is vetoed, and unique answers change nothing."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from semroute.cache import FaissIndex, MemoryStore
from semroute.hits import SemanticCache
from semroute.hits.consensus import REASON, AnswerConsensus, group_key, neighbourhood
from semroute.errors import ConfigError, ModelMismatch
from semroute.artifacts import load_artifact, model_dir
from semroute.settings import CacheSettings
from semroute.types import CacheEntry, Candidate
from semroute.hits.verify import PLACEHOLDER_ANSWER, PairVerifier, ThresholdVerifier

FAQ = {
    "card": ["When will my new card arrive?", "How long does card delivery take?",
             "My card still hasn't come in the mail", "I'm still waiting for my card to be delivered",
             "Where is the card you sent me?"],
    "pin": ["How do I change my PIN?", "Can I reset my card PIN?", "I want a new PIN number"],
    "city": ["What is the speed limit in the city?", "How fast may I drive inside town?",
             "Speed limit within city limits?"],
    "refund": ["How do I get a refund?", "I want my money back for a purchase", "Can I return an item for a refund?"],
}


def _entry(i, question, answer, vector):
    return CacheEntry(id=str(i), key=str(i), scope="s", namespace="s", question=question, answer=answer,
                      vector=np.asarray(vector, dtype=np.float32), created_at=0.0)


def _cache(embedder, rows, consensus=True):
    verifier = PairVerifier.default(embedder=embedder.name, dim=embedder.dim)
    cons = AnswerConsensus.default(verifier.probability, embedder=embedder.name, dim=embedder.dim) if consensus else None
    cache = SemanticCache(MemoryStore(), FaissIndex(embedder.dim), verifier, top_k=4, clock=lambda: 0.0, consensus=cons)
    vectors = embedder.embed([q for q, _ in rows])
    cache.insert([_entry(i, q, a, vectors[i]) for i, (q, a) in enumerate(rows)])
    return cache


def _ask(cache, embedder, query):
    hit, _ = cache.semantic(query, embedder.embed([query])[0], "s")
    return hit


@pytest.fixture(scope="module")
def faq_cache(embedder):
    return _cache(embedder, [(q, f"answer about {k}") for k, qs in FAQ.items() for q in qs])


def test_a_supported_answer_is_served_below_the_pair_floor(faq_cache, embedder):
    hit = _ask(faq_cache, embedder, "has my card been shipped yet? it's been a week")
    assert hit is not None and hit.entry.answer == "answer about card"
    assert hit.similarity < 0.86  # the pair verifier's floor: it alone would miss
    assert hit.verdict.reason.startswith(REASON)


@pytest.mark.parametrize("query", ["What is the speed limit on the highway?", "How fast can I drive on the motorway?"])
def test_many_city_phrasings_never_answer_a_highway_question(faq_cache, embedder, query):
    assert _ask(faq_cache, embedder, query) is None


def test_unique_answers_decide_exactly_as_the_pair_verifier(embedder):
    rows = [(q, f"answer {n}") for n, q in enumerate(q for qs in FAQ.values() for q in qs)]
    with_c, without = _cache(embedder, rows), _cache(embedder, rows, consensus=False)
    for query in ["my card hasn't arrived", "speed limit in town", "What is the speed limit on the highway?",
                  "has my card been shipped yet? it's been a week", "give me a refund"]:
        a, b = _ask(with_c, embedder, query), _ask(without, embedder, query)
        assert (a and a.entry.id) == (b and b.entry.id)
    assert with_c.consensus_hits == 0 and with_c.consensus_vetoes == 0


def test_a_tentative_hit_is_served_alone_but_the_vote_decides_where_answers_repeat(embedder):
    # A reckless confident gate (any cosine, any pair probability) makes every candidate a tentative hit.
    reckless = PairVerifier.default(embedder=embedder.name, dim=embedder.dim).with_confident_gate((-1.0, 0.0))
    cons = AnswerConsensus.default(reckless.probability, embedder=embedder.name, dim=embedder.dim)

    def cache_of(rows):
        cache = SemanticCache(MemoryStore(), FaissIndex(embedder.dim), reckless, top_k=4, clock=lambda: 0.0, consensus=cons)
        vectors = embedder.embed([q for q, _ in rows])
        cache.insert([_entry(i, q, a, vectors[i]) for i, (q, a) in enumerate(rows)])
        return cache

    unique = cache_of([(q, f"answer {n}") for n, q in enumerate(q for qs in FAQ.values() for q in qs)])
    hit = _ask(unique, embedder, "What is the speed limit on the highway?")
    assert hit is not None and hit.verdict.tentative and "confident gate" in hit.verdict.reason
    repeated = cache_of([(q, f"answer about {k}") for k, qs in FAQ.items() for q in qs])
    assert _ask(repeated, embedder, "What is the speed limit on the highway?") is None


def _unit(*xs):
    v = np.zeros(8, dtype=np.float32)
    v[: len(xs)] = xs
    return v / np.linalg.norm(v)


def _synthetic(pair_probability, threshold=0.5):
    """Geometry by hand: query on axis 0; one 'B' entry nearest, three 'A' entries close behind."""
    card, arrays = load_artifact(model_dir("consensus"), "consensus model")
    arrays.pop("adapter")  # the adapter is 384-d; these vectors are 8-d
    cons = AnswerConsensus(arrays, {**card, "threshold": threshold}, lambda q, c, s: pair_probability)
    cache = SemanticCache(MemoryStore(), FaissIndex(8, kind="flat"), ThresholdVerifier(0.9), top_k=4,
                          clock=lambda: 0.0, consensus=cons)
    cache.insert([_entry(0, "b", "answer B", _unit(1, 0.3)), _entry(1, "a1", "answer A", _unit(1, 0.35, 0.1)),
                  _entry(2, "a2", "answer A", _unit(1, 0.36, 0, 0.1)), _entry(3, "a3", "answer A", _unit(1, 0.37, 0, 0, 0.1))])
    return cache


def test_a_verified_hit_the_neighbourhood_outvotes_is_vetoed():
    cache = _synthetic(pair_probability=0.9, threshold=1.0)  # consensus never serves, only vetoes
    hit, judged = cache.semantic("q", _unit(1), "s")
    assert hit is None and judged[0][1].accepted and judged[0][0].entry.answer == "answer B"
    assert cache.consensus_vetoes == 1


def test_the_pair_veto_overrides_any_vote():
    cache = _synthetic(pair_probability=0.0, threshold=0.0)
    hit, _ = cache.semantic("q", _unit(1), "s")
    # the consensus is vetoed; the nearest (B, cosine >= 0.9) is outvoted by A
    assert hit is None and cache.consensus_hits == 0


@pytest.mark.parametrize("pair_probability", [0.2, 0.6, 0.95])
def test_the_pair_model_is_asked_only_when_the_vote_could_reach_the_threshold(pair_probability):
    """``score`` skips the pair model when no pair probability could lift P to the threshold; its
    decision is the one the full computation gives, at every threshold."""
    from semroute.hits.consensus import features

    asked = []
    card, arrays = load_artifact(model_dir("consensus"), "consensus model")
    arrays.pop("adapter")
    cache = _synthetic(pair_probability)
    nearest = cache.replica.nearest(_unit(1), "s", 4, 0.0)
    assert len(nearest) == 4
    for threshold in np.linspace(0.0, 1.0, 21):
        cons = AnswerConsensus(arrays, {**card, "threshold": float(threshold)},
                               lambda q, c, s: asked.append(c) or pair_probability)
        near = cons.neighbours(_unit(1), nearest)
        group = cons.vote(near)
        full = cons.probability(features(near, group, cons.k, pair_probability, cons.space))
        asked.clear()
        p, serves = cons.score("q", near, group)
        assert serves == (pair_probability >= cons.min_pair_probability and full >= threshold)
        if serves:
            assert p == pytest.approx(full) and asked
        could = max(cons.probability(features(near, group, cons.k, x, cons.space)) for x in (0.0, 1.0))
        assert bool(asked) == (could >= threshold)


class _CountingStore(MemoryStore):
    """The real store, counting the entries a lookup reads (``entries_at``)."""

    read = 0

    def entries_at(self, labels, *, now):
        self.read += len(labels)
        return super().entries_at(labels, now=now)


@pytest.mark.parametrize(("answers", "reads"), [("all differ", 4), ("two share one", "k"), ("placeholders", 4)])
def test_a_lookup_reads_the_consensus_neighbourhood_only_when_an_answer_repeats(answers, reads):
    """The consensus speaks only when an answer repeats among its k nearest; the store says each
    candidate's answer with its cosine, so otherwise only the verifier's ``top_k`` are read."""
    card, arrays = load_artifact(model_dir("consensus"), "consensus model")
    arrays.pop("adapter")
    cons = AnswerConsensus(arrays, card, lambda q, c, s: 0.9)
    store = _CountingStore()
    cache = SemanticCache(store, FaissIndex(8, kind="flat"), ThresholdVerifier(0.99), top_k=4,
                          clock=lambda: 0.0, consensus=cons)
    texts = {"all differ": [f"answer {i}" for i in range(14)],
             "two share one": ["answer 0", "answer 0"] + [f"answer {i}" for i in range(2, 14)],
             "placeholders": [PLACEHOLDER_ANSWER] * 7 + [""] * 7}[answers]
    cache.insert([_entry(i, f"q{i}", text, _unit(1, 0.1 + 0.02 * i)) for i, text in enumerate(texts)])
    store.read = 0
    cache.semantic("q", _unit(1), "s")
    assert store.read == (cons.k if reads == "k" else reads)


def test_placeholder_and_blank_answers_never_vote_together():
    same = [Candidate(_entry(i, f"q{i}", PLACEHOLDER_ANSWER, _unit(1)), 0.9) for i in range(3)]
    assert len({group_key(c) for c in same}) == 3
    group = neighbourhood(same, power=10.0)
    assert group is not None and group.support == 1


def test_it_may_speak_only_when_an_answer_repeats_among_its_k_nearest():
    cons = AnswerConsensus.default(lambda q, c, s: 1.0)
    unique = [Candidate(_entry(i, f"q{i}", f"answer {i}", _unit(1)), 0.9) for i in range(cons.k)]
    assert not cons.may_speak(unique)
    assert not cons.may_speak([*unique, Candidate(_entry(99, "q", "answer 0", _unit(1)), 0.5)])  # beyond k
    assert cons.may_speak([*unique[:2], Candidate(_entry(99, "q", "answer 0", _unit(1)), 0.5)])
    assert not cons.may_speak([Candidate(_entry(i, f"q{i}", PLACEHOLDER_ANSWER, _unit(1)), 0.9) for i in range(3)])


def test_loading_checks_the_embedder_and_threshold():
    with pytest.raises(ModelMismatch):
        AnswerConsensus.default(lambda q, c, s: 1.0, embedder="another-model")
    with pytest.raises(ConfigError):
        AnswerConsensus.default(lambda q, c, s: 1.0, threshold=1.5)


def test_setting_must_be_a_bool():
    with pytest.raises(ConfigError):
        CacheSettings(consensus="yes")  # type: ignore[arg-type]


@pytest.mark.parametrize(("line", "on"), [("", True), ("consensus = false", False)])
def test_router_builds_the_consensus_unless_turned_off(tmp_path, embedder, line, on):
    from semroute import Router

    path = tmp_path / "semroute.toml"
    path.write_text(f"[cache]\n{line}\n[tiers.small]\nmodel = 'm'\nhost = 'http://127.0.0.1:1'\n", encoding="utf-8")
    router = Router.from_config(path, data_dir=tmp_path / "cache", embedder=embedder)
    assert (router.pipeline.cache.consensus is not None) is on


def _retrieval_files(tmp_path):
    import csv

    cache, queries = tmp_path / "cache.csv", tmp_path / "queries.csv"
    with cache.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "question", "answer"])
        for kind, qs in FAQ.items():
            for n, q in enumerate(qs):
                w.writerow([f"{kind}{n}", q, f"answer about {kind}"])
    with queries.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["query", "expected"])
        w.writerows([["has my card been shipped yet? it's been a week", "card0"], ["my card hasn't arrived", "card2"],
                     ["speed limit in town", "city0"], ["What is the speed limit on the highway?", ""],
                     ["How do I open a savings account?", ""]])
    return str(cache), str(queries)


def test_eval_retrieval_measures_the_consensus_as_the_router_uses_it(tmp_path, embedder):
    from click.testing import CliRunner

    from semroute.cli import main

    cache, queries = _retrieval_files(tmp_path)
    runs = {}
    for flags in ([], ["--no-consensus"]):
        res = CliRunner().invoke(main, ["eval", "--retrieval", cache, queries, "--json", *flags])
        assert res.exit_code == 0, res.output
        runs[bool(flags)] = json.loads(res.stdout)
    with_c, without = runs[False], runs[True]
    assert with_c["consensus"]["k"] == 12 and without["consensus"] is None
    assert with_c["recall"] > without["recall"] and with_c["false_hits"] == []
    assert with_c["by_path"]["consensus"]["hits"] >= 1 and "consensus" not in without["by_path"]
    for run in runs.values():
        assert sum(n["hits"] for n in run["by_path"].values()) == run["hits"]
        assert sum(n["correct"] for n in run["by_path"].values()) == run["correct"]


def test_calibrate_retrieval_picks_a_consensus_threshold(tmp_path, embedder):
    from click.testing import CliRunner

    from semroute.cli import main

    cache, queries = _retrieval_files(tmp_path)
    res = CliRunner().invoke(main, ["calibrate", "--retrieval", cache, queries, "--target-precision", "0.99", "--json",
                                    "--out", str(tmp_path / "op")])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["reached"] and out["precision"] >= 0.99 and 0.0 <= out["consensus_threshold"] <= 1.0
    assert len(out["curve"]) == 13 and (tmp_path / "op" / "operating_point.json").is_file()
    missing = CliRunner().invoke(main, ["calibrate", "--retrieval", cache, "--target-precision", "0.9"])
    assert missing.exit_code == 1 and "two files" in missing.output


def test_consensus_threshold_setting(tmp_path, embedder):
    from semroute import Router
    from semroute.settings import RouterSettings

    with pytest.raises(ConfigError):
        CacheSettings(consensus_threshold=1.5)
    router = Router(data_dir=tmp_path, embedder=embedder,
                    settings=RouterSettings(cache=CacheSettings(consensus_threshold=0.5)))
    assert router.pipeline.cache.consensus.threshold == 0.5


def test_space_equals_mapping_every_vector_through_the_adapter():
    from semroute.hits.consensus import Space

    rng = np.random.default_rng(0)
    w = (np.eye(16) + 0.3 * rng.standard_normal((16, 16))).astype(np.float32)
    vectors = rng.standard_normal((6, 16)).astype(np.float32)
    query = rng.standard_normal(16).astype(np.float32)
    cands = [Candidate(_entry(i, f"q{i}", "a", v), 0.0) for i, v in enumerate(vectors)]
    near = Space(w).rescore(query, cands)
    mapped = vectors @ w
    mapped /= np.linalg.norm(mapped, axis=1, keepdims=True)
    q = query @ w / np.linalg.norm(query @ w)
    direct = sorted(mapped @ q, reverse=True)
    assert np.allclose([c.similarity for c in near.ranked], direct, atol=1e-5)
    members = (0, 2, 3)
    ids = [int(near.ranked[i].entry.id) for i in members]
    centre = mapped[ids].mean(axis=0)
    centre /= np.linalg.norm(centre)
    centroid_cos, spread = Space(w).centroid(near, members)
    assert np.isclose(centroid_cos, q @ centre, atol=1e-5) and np.isclose(spread, (mapped[ids] @ centre).mean(), atol=1e-5)


def test_space_is_not_fooled_by_a_reused_id():
    from semroute.hits.consensus import Space

    w = np.diag(np.arange(1, 9)).astype(np.float32)
    space = Space(w)
    a, b = _unit(1), _unit(0, 1)
    assert np.isclose(space.norm("same-id", a), 1.0) and np.isclose(space.norm("same-id", b), 2.0)


def _with_model_written(embedder, rows, written):
    """A FAQ cache (``rows``) plus entries a model wrote (``written``: question, answer)."""
    cache = _cache(embedder, rows)
    vectors = embedder.embed([q for q, _ in written])
    cache.insert([dataclasses.replace(_entry(f"m{i}", q, a, vectors[i]), model="llama3.2:3b")
                  for i, (q, a) in enumerate(written)])
    return cache


def test_model_written_answers_never_vote(embedder):
    # A model repeating itself ("I can't help with that") is no evidence that two questions are one.
    refusal = [(q, "I can't help with that.") for q in FAQ["card"]]
    query = "has my card been shipped yet? it's been a week"
    assert _ask(_cache(embedder, refusal), embedder, query).verdict.reason.startswith(REASON)  # as known answers
    hit = _ask(_with_model_written(embedder, [], refusal), embedder, query)
    assert hit is None or not hit.verdict.reason.startswith(REASON)


def test_a_much_nearer_model_written_entry_keeps_the_vote_from_serving(embedder):
    rows = [(q, f"answer about {k}") for k, qs in FAQ.items() for q in qs]
    query = "has my card been shipped yet? it's been a week"
    near = [("has my card been shipped yet? it has been a week", "a model's answer")]
    assert _ask(_with_model_written(embedder, rows, [("What is a good pasta recipe?", "boil it")]), embedder,
                query).entry.answer == "answer about card"  # a far model-written entry changes nothing
    hit = _ask(_with_model_written(embedder, rows, near), embedder, query)
    assert hit is None or hit.entry.answer == "a model's answer"
