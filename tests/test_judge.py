"""The grey-zone judge: real MiniLM, the shipped pair verifier, FakeOllama scripted over HTTP."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
from click.testing import CliRunner

from semroute import CacheSettings, ConfigError, JudgeSettings, Router, RouterSettings, Tier
from semroute.backends import OllamaBackend, Pool
from semroute.cli import main
from semroute.hits.judge import AnswerJudge, parse_reply
from semroute.testing import FakeOllama

SMALL, LARGE = "llama3.2:3b", "llama3.1:8b"
CITY = "What is the speed limit in the city?"
CITY_ANSWER = "50 km/h inside settlements unless signs say otherwise."
# A true paraphrase the verifier rejects (cosine 0.785 < its 0.86 floor; pair model 0.81): the grey zone.
PARAPHRASE = "How fast can I drive inside the city?"
# A near miss the pair model vetoes (cosine 0.835, P 0.01): never shown to the judge.
HIGHWAY = "What is the speed limit on the highway?"
DEFAULT_JUDGE = JudgeSettings()


class Script:
    """FakeOllama's ``reply``: a fixed verdict for judge prompts, the default echo for the rest."""

    def __init__(self, verdict: str | None = "Yes") -> None:
        self.verdict = verdict
        self.judge_prompts: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, model: str, prompt: str) -> str | None:
        if not prompt.startswith("Question:"):
            return None
        with self._lock:
            self.judge_prompts.append(prompt)
        if self.verdict == "raise":
            raise RuntimeError("judge is down")
        return self.verdict


@pytest.fixture
def script() -> Script:
    return Script()


@pytest.fixture
def fakes(script):
    """Two servers: the small tier (where the judge runs) and the large tier (answers misses)."""
    with FakeOllama([SMALL], reply=script) as small, FakeOllama([LARGE]) as large:
        yield small, large


@pytest.fixture
def make_router(tmp_path, fakes, embedder):
    routers: list[Router] = []

    def make(judge: JudgeSettings | None = DEFAULT_JUDGE, **kwargs) -> Router:
        small, large = fakes
        kwargs.setdefault("tiers", {"small": Tier(SMALL, (small.url,)), "large": Tier(LARGE, (large.url,))})
        router = Router(data_dir=tmp_path / f"cache{len(routers)}", embedder=embedder,
                        settings=RouterSettings(cache=CacheSettings(judge=judge)), **kwargs)
        router.warm([(CITY, CITY_ANSWER)])
        routers.append(router)
        return router

    yield make
    for router in routers:
        router.close()


def counters(router: Router) -> dict[str, float]:
    return {k: v for k, v in router.metrics.snapshot()["counters"].items() if k.startswith("judge.")}


def test_grey_zone_candidate_is_served_when_the_judge_says_yes(make_router, fakes, script):
    router = make_router()
    answer = router.ask(PARAPHRASE, tier="large")
    assert answer.source == "semantic" and answer.text == CITY_ANSWER and answer.cached_question == CITY
    assert answer.verdict.accepted and answer.verdict.reason.startswith(f"judge {SMALL}: yes")
    assert 0.7 <= answer.similarity < 0.86 and "judge" in answer.timings_ms
    # the judge saw the query, the cached question and the cached answer in one short prompt
    assert len(script.judge_prompts) == 1
    assert PARAPHRASE in script.judge_prompts[0] and CITY_ANSWER in script.judge_prompts[0]
    assert fakes[0].stats().count("chat") == 1 and fakes[1].stats().count("chat") == 0
    c = counters(router)
    assert c["judge.calls"] == 1 and c["judge.yes"] == 1 and c["judge.hits"] == 1
    assert c["judge.tokens.prompt"] > 0 and router.metrics.percentiles("judge.call")["count"] == 1
    assert "semroute_judge_calls_total 1" in router.metrics.prometheus()


def test_the_judge_asks_for_at_most_4_tokens(make_router, fakes, script):
    script.verdict = "Yes, the stored answer correctly answers the question."
    router = make_router()
    assert router.ask(PARAPHRASE, tier="large").source == "semantic"
    assert counters(router)["judge.tokens.completion"] == 4  # num_predict reached the server


@pytest.mark.parametrize(("verdict", "counter"), [("No.", "judge.no"), ("Maybe, it depends", "judge.unparsed")])
def test_grey_zone_candidate_stays_a_miss_unless_the_judge_says_yes(make_router, fakes, script, verdict, counter):
    script.verdict = verdict
    router = make_router()
    answer = router.ask(PARAPHRASE, tier="large")
    assert answer.source == "large" and fakes[1].stats().count("chat") == 1
    c = counters(router)
    assert c["judge.calls"] == 1 and c[counter] == 1 and "judge.hits" not in c


def test_the_judge_never_sees_a_near_miss_the_pair_model_vetoes(make_router, fakes, script):
    router = make_router()
    assert router.ask(HIGHWAY, tier="large").source == "large"
    assert script.judge_prompts == [] and "judge.calls" not in counters(router)


def test_verdicts_are_cached(make_router, fakes, script):
    router = make_router()
    first = router.ask(PARAPHRASE, tier="large")
    second = router.ask(PARAPHRASE, tier="large")
    assert first.source == second.source == "semantic"
    assert "cached verdict" in second.verdict.reason
    assert fakes[0].stats().count("chat") == 1 and len(script.judge_prompts) == 1
    assert counters(router)["judge.cache_hits"] == 1


def test_off_by_default_no_judge_call(make_router, fakes, script):
    router = make_router(judge=None)
    assert RouterSettings().cache.judge is None
    answer = router.ask(PARAPHRASE, tier="large")
    assert answer.source == "large" and fakes[0].stats().count("chat") == 0
    assert script.judge_prompts == [] and counters(router) == {}


def test_async_grey_zone_hit(make_router, fakes, script):
    router = make_router()

    async def go():
        return await router.aask(PARAPHRASE, tier="large"), [c async for c in router.astream(PARAPHRASE, tier="large")]

    answer, chunks = asyncio.run(go())
    assert answer.source == "semantic" and answer.text == CITY_ANSWER
    assert [c.source for c in chunks] == ["semantic"]
    assert len(script.judge_prompts) == 1 and counters(router)["judge.cache_hits"] == 1


@pytest.mark.parametrize("mode", ["error", "refuse", "hang", "raise"])
@pytest.mark.parametrize("use_async", [False, True])
def test_a_failing_judge_degrades_to_a_miss(make_router, fakes, script, mode, use_async):
    small, large = fakes
    if mode == "raise":
        script.verdict = "raise"  # the server answers 500 to judge prompts only
    else:
        small.set_fault(mode, **({"status": 503} if mode == "error" else {}))
    router = make_router(judge=JudgeSettings(timeout_s=0.5))
    answer = asyncio.run(router.aask(PARAPHRASE, tier="large")) if use_async else router.ask(PARAPHRASE, tier="large")
    assert answer.source == "large" and answer.text and large.stats().count("chat") == 1
    c = counters(router)
    assert c["judge.errors"] == 1 and "judge.hits" not in c and "judge.yes" not in c
    if mode == "hang":
        assert c["judge.timeouts"] == 1
    small.clear_fault()


def test_parse_reply():
    assert [parse_reply(t) for t in ("Yes", "yes.", "**Yes**", "Answer: yes", "YES, it does", "Evet")] == [True] * 6
    assert [parse_reply(t) for t in ("No", "no.", "**No.**", "<think>yes?</think>No", "Hayır")] == [False] * 5
    assert [parse_reply(t) for t in ("", "Maybe", "I think so", "<think>still thinking")] == [None] * 4


def test_judge_cache_is_bounded(fakes, script):
    small, _ = fakes
    with Pool([OllamaBackend(small.url)]) as pool:
        judge = AnswerJudge(pool, SMALL, cache_size=1)
        try:
            assert judge.judge("q1", "c", "a").accepted and judge.judge("q1", "c", "a").cached
            judge.judge("q2", "c", "a")  # evicts q1
            assert not judge.judge("q1", "c", "a").cached
        finally:
            judge.close()
    assert len(script.judge_prompts) == 3


TOML = """
[cache]
min_similarity = 0.8
[cache.judge]
min_similarity = 0.75
min_probability = 0.6
timeout_s = 2
[tiers.small]
model = "llama3.2:3b"
host = "http://127.0.0.1:1"
"""


def test_config_round_trip(tmp_path):
    path = tmp_path / "semroute.toml"
    path.write_text(TOML, encoding="utf-8")
    router = Router.from_config(path, data_dir=tmp_path / "cache")
    assert router.settings.cache.judge == JudgeSettings(min_similarity=0.75, min_probability=0.6, timeout_s=2)
    router.close()
    path.write_text("[cache]\n", encoding="utf-8")
    assert Router.from_config(path, data_dir=tmp_path / "cache").settings.cache.judge is None


@pytest.mark.parametrize(
    "text",
    [
        "[cache.judge]\nmin_similarty = 0.5",
        "[cache.judge]\nmin_similarity = 2.0",
        "[cache.judge]\nmin_probability = -0.1",
        "[cache.judge]\ntimeout_s = 0",
        "[cache.judge]\ncache_size = -1",
        "[cache]\njudge = 1",
        "[cache.judge]\ntier = 'medium'",
    ],
)
def test_bad_judge_config_is_a_config_error(tmp_path, text):
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError):
        Router.from_config(path, data_dir=tmp_path / "cache")


@pytest.fixture
def pairs_file(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text(
        "query,cached,label,answer\n"
        f"{PARAPHRASE},{CITY},1,{CITY_ANSWER}\n"
        f"{HIGHWAY},{CITY},0,{CITY_ANSWER}\n"
        f"What's the speed limit in a city?,{CITY},1,{CITY_ANSWER}\n"
        "How do I reset my password?,How do I change my password?,1,Use the account page.\n",
        encoding="utf-8",
    )
    return path


def test_eval_with_a_judge_reports_both_operating_points(fakes, script, pairs_file, embedder):
    small, _ = fakes
    runner = CliRunner()
    plain = json.loads(runner.invoke(main, ["eval", str(pairs_file), "--json"]).stdout)
    result = runner.invoke(main, ["eval", str(pairs_file), "--json", "--judge-model", SMALL,
                                  "--ollama-url", small.url])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    judge = data.pop("judge")
    assert data == plain  # the existing keys are unchanged
    assert judge["model"] == SMALL and judge["calls"] == judge["grey_zone"] == len(script.judge_prompts) >= 1
    assert judge["yes"] == judge["calls"] and judge["errors"] == 0
    assert set(judge["latency_ms"]) == {"p50", "p95"}
    with_judge = judge["with_judge"]
    assert with_judge["recall"] > plain["recall"] and with_judge["precision"] == 1.0
    assert with_judge["added_hits"] == with_judge["tp"] - plain["tp"] >= 1
    text = runner.invoke(main, ["eval", str(pairs_file), "--judge-model", SMALL, "--ollama-url", small.url])
    assert text.exit_code == 0, text.output
    assert "grey-zone judge" in text.stdout and "with the judge: precision 1.000" in text.stdout
    assert "judge latency p50" in text.stdout


def test_eval_judge_unreachable_is_counted_not_fatal(pairs_file, embedder):
    with FakeOllama([SMALL]) as fake:
        url = fake.url
    result = CliRunner().invoke(main, ["eval", str(pairs_file), "--json", "--judge-model", SMALL,
                                       "--ollama-url", url, "--judge-timeout", "2"])
    assert result.exit_code == 0, result.output
    judge = json.loads(result.stdout)["judge"]
    assert judge["errors"] == judge["grey_zone"] >= 1 and judge["with_judge"]["added_hits"] == 0


def test_eval_judge_is_not_taken_with_retrieval(tmp_path):
    cache, queries = tmp_path / "cache.csv", tmp_path / "queries.csv"
    cache.write_text("id,question\n1,q\n", encoding="utf-8")
    queries.write_text("query,expected\nq,1\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["eval", "--retrieval", str(cache), str(queries), "--judge-model", SMALL])
    assert result.exit_code == 1 and "not available with --retrieval" in result.output
