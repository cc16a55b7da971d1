"""Per-tier default model options: checked on construction, sent on every miss path, overridden by a request's own.

FakeOllama records the ``options`` of the last chat request it received (``last_options``) and
honours ``num_predict``, so each test sees what really reached the server.
"""

from __future__ import annotations

import asyncio

import httpx
import openai
import pytest

from gateway_kit import LARGE, SMALL, WordEmbedder
from semroute import ConfigError, FixedTier, Router, ThresholdVerifier, Tier
from semroute.backends.openai import OpenAIBackend
from semroute.types import Message

SHORT = {"num_predict": 3, "temperature": 0.2}
HISTORY = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"},
           {"role": "assistant", "content": "hello"}, {"role": "user", "content": "what now?"}]


def tiers(url: str) -> dict[str, Tier]:
    return {"small": Tier(SMALL, (url,), options=SHORT), "large": Tier(LARGE, (url,), options={"num_predict": 5})}


@pytest.fixture
def router(tmp_path, fake_ollama):
    r = Router(tiers=tiers(fake_ollama.url), data_dir=tmp_path / "cache", embedder=WordEmbedder(),
               verifier=ThresholdVerifier(0.99), classifier=FixedTier("small"))
    yield r
    r.close()


def test_tier_options_are_checked_and_read_only():
    tier = Tier(SMALL, options={"num_predict": 256, "top_p": 1, "stop": ["\n"], "use_mmap": True})
    assert dict(tier.options) == {"num_predict": 256, "top_p": 1, "stop": ("\n",), "use_mmap": True}
    with pytest.raises(TypeError):
        tier.options["num_predict"] = 1  # type: ignore[index]
    assert Tier(SMALL, options={}).options is None and Tier(SMALL).options is None
    assert hash(tier) == hash(Tier(SMALL, options={"num_predict": 1}))  # options do not make a Tier unhashable


@pytest.mark.parametrize("options, key", [
    ({"num_predict": "256"}, "num_predict"), ({"num_predict": 2.5}, "num_predict"), ({"num_ctx": True}, "num_ctx"),
    ({"temperature": "hot"}, "temperature"), ({"temperature": float("nan")}, "temperature"),
    ({"stop": "\n"}, "stop"), ({"stop": [1]}, "stop"), ({"use_mmap": 1}, "use_mmap"),
    ({"num_predit": 5}, "num_predit"), ({7: 1}, "7"),
])
def test_bad_tier_options_are_config_errors_naming_the_key(options, key):
    with pytest.raises(ConfigError, match=key):
        Tier(SMALL, options=options)


def test_options_must_be_a_mapping():
    with pytest.raises(ConfigError, match="options must be a table"):
        Tier(SMALL, options=[("num_predict", 5)])  # type: ignore[arg-type]


def test_ask_and_stream_misses_send_the_tier_options(router, fake_ollama):
    answer = router.ask("What is the speed limit in the city?")
    assert fake_ollama.last_options == SHORT and answer.completion_tokens == 3
    fake_ollama.last_options = None
    chunks = list(router.stream("How wide is a parking space?"))
    assert fake_ollama.last_options == SHORT and chunks[-1].completion_tokens == 3
    assert router.ask("What is the speed limit in the city?").source == "exact"


def test_async_misses_send_the_tier_options(router, fake_ollama):
    async def main():
        first = await router.aask("Who has right of way at a roundabout?", tier="large")
        assert fake_ollama.last_options == {"num_predict": 5} and first.completion_tokens == 5
        fake_ollama.last_options = None
        chunks = [c async for c in router.astream("When must headlights be on?")]
        assert fake_ollama.last_options == SHORT and chunks[-1].completion_tokens == 3

    asyncio.run(main())


def test_the_openai_backend_maps_tier_options(tmp_path, fake_ollama, gateway):
    gw = gateway(tiers={"small": Tier(SMALL, (fake_ollama.url,)), "large": Tier(LARGE, (fake_ollama.url,))})
    backend = OpenAIBackend(f"{gw.url}/v1")
    try:
        history = [Message(m["role"], m["content"]) for m in HISTORY]  # uncached: straight to the model
        chunks = list(backend.stream(SMALL, history, options={"num_predict": 2, "temperature": 0.5, "num_ctx": 8}))
        # max_tokens and temperature crossed the OpenAI API; num_ctx has no OpenAI name and stays behind
        assert fake_ollama.last_options == {"num_predict": 2, "temperature": 0.5}
        assert chunks[-1].completion_tokens == 2
    finally:
        backend.close()


def test_gateway_direct_calls_merge_request_options_over_tier_defaults(fake_ollama, gateway):
    gw = gateway(tiers=tiers(fake_ollama.url))
    with openai.OpenAI(base_url=f"{gw.url}/v1", api_key="unused", max_retries=0) as sdk:
        done = sdk.chat.completions.create(model=SMALL, messages=HISTORY, max_tokens=4)
        assert done.usage.completion_tokens == 4
        assert fake_ollama.last_options == {"num_predict": 4, "temperature": 0.2}  # key by key
        list(sdk.chat.completions.create(model=LARGE, messages=HISTORY, stream=True))
        assert fake_ollama.last_options == {"num_predict": 5}
    body = {"model": SMALL, "messages": HISTORY, "stream": True, "options": {"temperature": 0.9, "seed": 7}}
    lines = httpx.post(f"{gw.url}/api/chat", json=body, timeout=10).text.splitlines()
    assert fake_ollama.last_options == {"num_predict": 3, "temperature": 0.9, "seed": 7}
    assert '"done":true' in lines[-1].replace(" ", "")
    gw.ollama().chat(SMALL, messages=HISTORY)
    assert fake_ollama.last_options == SHORT


def test_gateway_routed_misses_use_the_tier_defaults(fake_ollama, gateway):
    gw = gateway(tiers=tiers(fake_ollama.url), classifier=FixedTier("small"))
    reply = gw.ollama().chat("semroute", messages=[{"role": "user", "content": "Is a U-turn allowed here?"}],
                             options={"num_predict": 50})
    # a routed answer is cached for everyone: the tier's defaults, never one caller's options
    assert fake_ollama.last_options == SHORT and reply.eval_count == 3


def test_config_file_tier_options(tmp_path, fake_ollama):
    path = tmp_path / "semroute.toml"
    path.write_text(f"""
[tiers.small]
model = "{SMALL}"
hosts = ["{fake_ollama.url}"]
options = {{num_predict = 3, temperature = 0.2}}
[tiers.large]
model = "{LARGE}"
hosts = ["{fake_ollama.url}"]
[tiers.large.options]
num_predict = 5
stop = ["###"]
""", encoding="utf-8")
    router = Router.from_config(path, data_dir=tmp_path / "cache", embedder=WordEmbedder(),
                                classifier=FixedTier("small"))
    try:
        assert dict(router.tiers["small"].options) == SHORT
        assert dict(router.tiers["large"].options) == {"num_predict": 5, "stop": ("###",)}
        router.ask("Where may I park a trailer?")
        assert fake_ollama.last_options == SHORT
    finally:
        router.close()


@pytest.mark.parametrize("table, match", [
    ('options = {num_predict = "many"}', "num_predict"),
    ("options = {temprature = 0.2}", "temprature"),
    ('options = "short"', "options must be a table"),
])
def test_bad_options_in_a_config_file(tmp_path, table, match):
    path = tmp_path / "semroute.toml"
    path.write_text(f'[tiers.small]\nmodel = "{SMALL}"\n{table}\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=match):
        Router.from_config(path, data_dir=tmp_path / "cache")
