"""The Router end to end: real MiniLM, the embedded store on disk, FakeOllama over HTTP."""

from __future__ import annotations

import asyncio
import math
import socket
import threading
import time

import pytest

from semroute import (
    BackendError,
    CacheSettings,
    InvalidRequest,
    NoInstanceAvailable,
    Router,
    RouterSettings,
    ThresholdVerifier,
    Tier,
)
from semroute.testing import FakeOllama, Timing

SMALL, LARGE = "llama3.2:3b", "llama3.1:8b"
CITY = "What is the speed limit in the city?"
CITY_ANSWER = "50 km/h inside settlements unless signs say otherwise."


def tiers_at(url: str) -> dict[str, Tier]:
    return {"small": Tier(SMALL, (url,)), "large": Tier(LARGE, (url,))}


def chats(fake: FakeOllama) -> int:
    return fake.stats().count("chat")


@pytest.fixture
def make_router(tmp_path, fake_ollama, embedder):
    routers: list[Router] = []

    def make(**kwargs) -> Router:
        kwargs.setdefault("tiers", tiers_at(fake_ollama.url))
        kwargs.setdefault("data_dir", tmp_path / "cache")
        kwargs.setdefault("embedder", embedder)
        router = Router(**kwargs)
        routers.append(router)
        return router

    yield make
    for router in routers:
        router.close()


def test_miss_reaches_fake_ollama_and_the_answer_is_cached(make_router, fake_ollama):
    router = make_router()
    first = router.ask(CITY, tier="small")
    assert first.source == "small" and first.model == SMALL
    assert first.instance == f"http://127.0.0.1:{fake_ollama.port}"  # the backend's name: its normalised URL
    assert first.text and first.completion_tokens > 0
    steps = first.timings_ms
    assert first.as_dict()["timings_ms"] == {k: round(v, 3) for k, v in steps.items()}  # JSON shows the mapping
    assert {"embed", "semantic", "llm", "store"} <= set(steps) and sum(steps.values()) <= first.latency_ms
    assert chats(fake_ollama) == 1
    again = router.ask("  what is the SPEED limit in the city ")
    assert again.source == "exact" and again.text == first.text and again.similarity == 1.0
    assert chats(fake_ollama) == 1


def test_a_question_asked_again_without_its_capital_is_an_exact_hit(make_router, fake_ollama):
    router = make_router()
    first = router.ask("Is it legal to park on the pavement?", tier="small")
    for again in ("is it legal to park on the pavement", "  Is it legal to park on the pavement?"):
        answer = router.ask(again)
        assert answer.source == "exact" and answer.text == first.text
    assert chats(fake_ollama) == 1


def test_paraphrase_is_a_semantic_hit_with_real_minilm(make_router, fake_ollama):
    router = make_router(verifier=ThresholdVerifier(0.8))
    router.warm([(CITY, CITY_ANSWER)])
    answer = router.ask("What's the speed limit in a city?")
    assert answer.source == "semantic"
    assert answer.text == CITY_ANSWER and answer.cached_question == CITY
    assert 0.8 <= answer.similarity < 1.0
    assert chats(fake_ollama) == 0


def test_a_confident_gate_hit_is_tentative_and_counted(make_router, fake_ollama):
    from semroute import PairVerifier

    # The main floor out of reach, a confident gate that admits any candidate the cache shows.
    gated = PairVerifier.default().with_operating_point(threshold=0.5, min_similarity=0.999).with_confident_gate((0.0, 0.0))
    router = make_router(verifier=gated)
    router.warm([(CITY, CITY_ANSWER)])
    answer = router.ask("What's the speed limit in a city?")
    assert answer.source == "semantic" and answer.verdict is not None and answer.verdict.tentative
    assert answer.as_dict()["verdict"]["tentative"] is True
    assert router.stats()["counters"]["verifier.confident_hits"] == 1 and chats(fake_ollama) == 0


def test_unrelated_question_misses(make_router, fake_ollama):
    router = make_router(verifier=ThresholdVerifier(0.8))
    router.warm([(CITY, CITY_ANSWER)])
    answer = router.ask("How do I renew my passport?", tier="small")
    assert answer.source == "small" and chats(fake_ollama) == 1


def test_streaming_miss_then_hit(make_router, fake_ollama):
    router = make_router()
    chunks = list(router.stream("Explain the licence points system", tier="large"))
    assert len(chunks) > 2 and chunks[-1].done and not any(c.done for c in chunks[:-1])
    assert {c.source for c in chunks} == {"large"}
    text = "".join(c.text for c in chunks)
    hit = list(router.stream("explain the licence points system"))
    assert [(c.source, c.text, c.done) for c in hit] == [("exact", text, True)]


def test_stream_is_stored_even_if_the_caller_stops_at_the_last_chunk(make_router, fake_ollama):
    router = make_router()
    for chunk in router.stream("Explain overtaking rules", tier="small"):
        if chunk.done:
            break
    assert router.ask("explain overtaking rules").source == "exact"


def test_async_ask_and_stream(make_router, fake_ollama):
    router = make_router()

    async def main():
        first = await router.aask("When must I use winter tyres?", tier="small")
        second = await router.aask("when must i use winter tyres")
        streamed = [c async for c in router.astream("Can I use my phone while driving?", tier="small")]
        return first, second, streamed

    first, second, streamed = asyncio.run(main())
    assert first.source == "small" and second.source == "exact" and second.text == first.text
    assert streamed[-1].done and "".join(c.text for c in streamed)
    assert router.ask("Can I use my phone while driving?").source == "exact"


def test_persistence_across_a_new_router(make_router, fake_ollama):
    first = make_router()
    answer = first.ask(CITY, tier="small")
    first.warm([("Is a child seat required?", "Yes, for small children.")])
    first.close()
    second = make_router()
    assert second.ask(CITY).text == answer.text
    assert second.ask("Is a child seat required?").source == "exact"
    assert chats(fake_ollama) == 1


def test_ttl_expiry_with_injected_clock(make_router, fake_ollama):
    now = [1_000.0]
    router = make_router(settings=RouterSettings(cache=CacheSettings(ttl_s=60)), clock=lambda: now[0])
    router.ask(CITY, tier="small")
    now[0] += 59
    assert router.ask(CITY, tier="small").source == "exact"
    now[0] += 2
    assert router.ask(CITY, tier="small").source == "small"
    assert chats(fake_ollama) == 2


def test_warm_can_set_its_own_ttl(make_router, fake_ollama):
    now = [1_000.0]
    router = make_router(settings=RouterSettings(cache=CacheSettings(ttl_s=60)), clock=lambda: now[0])
    router.warm([("Is a child seat required?", "Yes, for small children.")], ttl_s=math.inf)
    router.warm([("Do I need winter tyres?", "In winter months, for some vehicles.")], ttl_s=10)
    router.ask(CITY, tier="small")  # the cache's default: 60 s
    now[0] += 30
    assert router.ask("Do I need winter tyres?", tier="small").source == "small"
    assert router.ask(CITY, tier="small").source == "exact"
    now[0] += 10_000
    assert router.ask("Is a child seat required?").source == "exact"
    with pytest.raises(InvalidRequest):
        router.warm([("q", "a")], ttl_s=0)


def test_lru_eviction_at_max_entries(make_router, fake_ollama):
    router = make_router(settings=RouterSettings(cache=CacheSettings(max_entries=2)))
    one, two, three = "How do ocean tides work?", "Best recipe for lentil soup?", "Who painted the Mona Lisa?"
    router.warm([(one, "a1"), (two, "a2")])
    assert router.ask(one).source == "exact"  # one is now the most recently used
    router.warm([(three, "a3")])  # evicts two, the least recently used
    assert router.ask(one).source == "exact"
    assert router.ask(three).source == "exact"
    assert router.ask(two, tier="small").source == "small"


@pytest.mark.parametrize("index", ["flat", "hnsw"])
def test_namespaces_are_isolated(make_router, fake_ollama, index):
    router = make_router(verifier=ThresholdVerifier(0.5), settings=RouterSettings(cache=CacheSettings(index=index)))
    router.warm([(CITY, CITY_ANSWER)], namespace="tenant-a")
    other = router.ask(CITY, namespace="tenant-b", tier="small")
    assert other.source == "small" and other.text != CITY_ANSWER
    assert router.ask(CITY, namespace="tenant-a").text == CITY_ANSWER


def test_system_prompt_is_part_of_the_key(make_router, fake_ollama):
    router = make_router()
    plain = router.ask(CITY, tier="small")
    brief = router.ask(CITY, tier="small", system="Answer in one word.")
    assert plain.source == brief.source == "small" and chats(fake_ollama) == 2


@pytest.mark.parametrize("bad", ["", "   ", None, 17, b"bytes", "x" * 201, "lone \udc00 surrogate"])
def test_bad_input_raises_and_stores_nothing(make_router, fake_ollama, bad):
    router = make_router(settings=RouterSettings(max_question_chars=200))
    with pytest.raises(InvalidRequest):
        router.ask(bad)
    with pytest.raises(InvalidRequest):
        router.stream(bad)  # raises at the call, before any iteration
    with pytest.raises(InvalidRequest):
        router.astream(bad)
    with pytest.raises(InvalidRequest):
        router.warm([("fine question", "fine answer"), (bad, "answer")])
    with pytest.raises(InvalidRequest):
        asyncio.run(router.aask(bad))
    assert len(router.pipeline.cache) == 0
    assert chats(fake_ollama) == 0


def test_bad_tier_and_namespace(make_router):
    router = make_router()
    with pytest.raises(InvalidRequest):
        router.ask(CITY, tier="huge")
    with pytest.raises(InvalidRequest):
        router.ask(CITY, namespace="has space")


def test_mid_stream_failure_surfaces_and_stores_nothing(make_router, fake_ollama):
    router = make_router()
    fake_ollama.set_fault("drop", after_chunks=2)
    received = []
    with pytest.raises(BackendError):
        for chunk in router.stream("A question whose stream breaks", tier="small"):
            received.append(chunk.text)
    assert 0 < len(received) <= 2
    fake_ollama.clear_fault()
    assert router.ask("A question whose stream breaks", tier="small").source == "small"


def _dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_falls_back_to_the_other_tier(make_router, fake_ollama):
    router = make_router(tiers={"small": Tier(SMALL, (_dead_url(),)), "large": Tier(LARGE, (fake_ollama.url,))})
    answer = router.ask(CITY, tier="small")
    assert answer.source == "large" and answer.model == LARGE
    assert router.metrics.count("tier.fallback") == 1


def test_fallback_raise_surfaces_the_error(make_router):
    router = make_router(
        tiers={"small": Tier(SMALL, (_dead_url(),)), "large": Tier(LARGE, (_dead_url(),))},
        settings=RouterSettings(fallback="raise"),
    )
    with pytest.raises((BackendError, NoInstanceAvailable)):
        router.ask(CITY, tier="small")
    assert len(router.pipeline.cache) == 0


def test_concurrent_identical_misses_make_one_call(make_router, fake_ollama):
    router = make_router()
    router.ask("warm up the embedder", tier="small")
    fake_ollama.pause()  # the first call waits at the fake until every caller has joined it
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(router.ask("Same new question", tier="small")))
        for _ in range(6)
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while router.metrics.count("requests.coalesced") < 5:  # a bounded wait for a condition, not a timed sleep
        assert time.monotonic() < deadline, "the other five callers never joined the first call"
        time.sleep(0.001)
    fake_ollama.resume()
    for t in threads:
        t.join(timeout=30)
    assert len(results) == 6 and len({r.text for r in results}) == 1
    assert chats(fake_ollama) == 2  # the warm-up and one shared call
    assert sorted(r.source for r in results) == ["small"] * 6


def test_shipped_classifier_routes_simple_and_complex_to_different_tiers(make_router, fake_ollama):
    router = make_router()
    simple = router.ask("What is the capital of France?")
    complex_ = router.ask(
        "A train leaves at 9:40 and travels 210 km at 84 km/h, then waits 25 minutes and covers another "
        "150 km at 100 km/h. Work out the arrival time step by step and explain each calculation."
    )
    assert (simple.source, simple.tier, simple.model) == ("small", "small", SMALL)
    assert (complex_.source, complex_.tier, complex_.model) == ("large", "large", LARGE)
    assert simple.probability < 0.5 < complex_.probability
    assert fake_ollama.stats().count("chat", SMALL) == 1 and fake_ollama.stats().count("chat", LARGE) == 1


def test_classifier_can_be_turned_off(make_router, fake_ollama):
    from semroute import FixedTier

    router = make_router(classifier=FixedTier("large"))
    answer = router.ask("What is the capital of France?")
    assert answer.source == "large" and answer.probability is None


def test_default_verifier_refuses_a_near_miss_that_cosine_would_serve(make_router, fake_ollama):
    router = make_router()
    router.warm([(CITY, CITY_ANSWER)])
    highway = router.ask("What is the speed limit on the highway?", tier="small")
    assert highway.source == "small" and highway.text != CITY_ANSWER
    assert router.metrics.count("verifier.rejected") >= 1
    assert router.ask("What's the speed limit in a city?").source == "semantic"


def test_stats_show_hits_tiers_and_instances(make_router, fake_ollama):
    router = make_router()
    router.ask(CITY, tier="small")
    router.ask(CITY)
    stats = router.stats()
    assert stats["counters"]["answers.small"] == 1 and stats["counters"]["answers.exact"] == 1
    assert stats["latency_ms"]["latency.exact"]["count"] == 1
    (small,) = stats["instances"]["small"]
    assert small["name"] and small["ewma_latency_s"] is not None and small["in_flight"] == 0
    assert "semroute_answers_exact_total 1" in router.metrics.prometheus()


def test_instance_failure_fails_over_and_is_counted(make_router, fake_ollama, caplog):
    dead = _dead_url()
    router = make_router(tiers={"small": Tier(SMALL, (dead, fake_ollama.url)), "large": Tier(LARGE, (fake_ollama.url,))})
    answers = [router.ask(f"question number {i} about parking", tier="small") for i in range(4)]
    assert {a.source for a in answers} == {"small"} and {a.instance for a in answers} == {fake_ollama.url}
    # The dead host is found by the pool's model refresh (a probe) or by a failed call: either way
    # it is counted and logged, and no caller sees the failure.
    failures = router.metrics.count("pool.probe_failures") + router.metrics.count("pool.instance_failures")
    assert failures >= 1
    assert any(dead.split("//")[1] in r.getMessage() for r in caplog.records if r.levelname == "WARNING")


def test_busy_instance_fails_over_within_the_tier(make_router, fake_ollama):
    with FakeOllama((SMALL,)) as other:
        router = make_router(tiers={"small": Tier(SMALL, (fake_ollama.url, other.url), strategy="round_robin")})
        fake_ollama.set_fault("busy", count=20)
        answers = [router.ask(f"parking question {i}", tier="small") for i in range(6)]
        assert {a.source for a in answers} == {"small"}
        assert router.metrics.count("pool.failovers") >= 1
        assert router.metrics.count("pool.instance_failures") == router.metrics.count("pool.failovers")
        assert other.stats().count("chat") >= 1


def test_a_store_that_cannot_open_fails_open_and_is_counted(make_router, fake_ollama, tmp_path):
    first = make_router(data_dir=tmp_path / "shared")
    first.ask(CITY, tier="small")  # holds the directory's lock
    second = make_router(data_dir=tmp_path / "shared")
    answer = second.ask(CITY, tier="small")
    assert answer.source == "small" and answer.text
    assert asyncio.run(second.aask(CITY, tier="small")).source == "small"
    assert second.metrics.count("store.errors.lookup") >= 2
