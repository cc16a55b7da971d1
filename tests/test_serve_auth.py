"""Tenants on the gateway: bearer keys -> namespaces, per-key rate and concurrency limits, keys never logged."""

from __future__ import annotations

import logging
import threading

import httpx
import openai
import pytest

from gateway_kit import wait_for
from semroute import ConfigError
from semroute.server import ApiKey, ServerSettings
from semroute.server.auth import Tenants
from semroute.server.settings import key_digest, server_settings_from_table
from semroute.testing import ManualClock

KEY_A = "sk-team-a-0123456789abcdef"
KEY_B = "sk-team-b-0123456789abcdef"


def keys(**limits) -> tuple[ApiKey, ...]:
    return (ApiKey(key_digest(KEY_A), "team-a", "team-a", **limits), ApiKey(key_digest(KEY_B), "team-b", "team-b"))


def chat(url: str, key: str | None, text: str) -> httpx.Response:
    headers = {} if key is None else {"authorization": f"Bearer {key}"}
    return httpx.post(f"{url}/api/chat", headers=headers, timeout=30,
                      json={"model": "semroute", "messages": [{"role": "user", "content": text}], "stream": False})


def test_missing_or_wrong_keys_get_401_in_each_apis_shape(gateway, fake_ollama):
    gw = gateway(settings=ServerSettings(keys=keys()))
    missing = chat(gw.url, None, "hello")
    wrong = chat(gw.url, "sk-not-a-key-at-all-000", "hello")
    assert missing.status_code == 401 and "missing API key" in missing.json()["error"]
    assert wrong.status_code == 401 and wrong.json() == {"error": "invalid API key"}
    with openai.OpenAI(base_url=f"{gw.url}/v1", api_key="sk-wrong-key-000000000", max_retries=0) as sdk:
        with pytest.raises(openai.AuthenticationError) as denied:
            sdk.models.list()
    assert denied.value.body["code"] == "invalid_api_key"
    assert fake_ollama.stats().count("chat") == 0


def test_each_key_has_its_own_namespace(gateway, fake_ollama, caplog):
    gw = gateway(settings=ServerSettings(keys=keys()))
    with caplog.at_level(logging.INFO, logger="semroute.access"):
        a1 = chat(gw.url, KEY_A, "What is the fine for speeding?")
        a2 = chat(gw.url, KEY_A, "What is the fine for speeding?")
        b1 = chat(gw.url, KEY_B, "What is the fine for speeding?")
        # The gateway logs a request after its response is sent: the last line may trail the reply.
        wait_for(lambda: sum(r.name == "semroute.access" for r in caplog.records) >= 3, what="three access lines")
    assert [r.headers["x-semroute-source"] for r in (a1, a2, b1)] == ["small", "exact", "small"]
    assert fake_ollama.stats().count("chat") == 2  # team-b never sees team-a's cached answer
    lines = [r.getMessage() for r in caplog.records if r.name == "semroute.access"]
    assert len(lines) == 3 and all('"tenant": "team-' in line for line in lines)
    assert not any(KEY_A in r.getMessage() or KEY_B in r.getMessage() for r in caplog.records)


def test_rate_limit_is_429_with_retry_after(gateway, fake_ollama):
    clock = ManualClock(0.0)
    table = keys(rate_per_s=0.5, burst=1)
    gw = gateway(settings=ServerSettings(keys=table), tenants=Tenants(table, clock=clock))
    assert chat(gw.url, KEY_A, "first question").status_code == 200
    limited = chat(gw.url, KEY_A, "second question")
    assert limited.status_code == 429 and limited.headers["retry-after"] == "2"
    assert chat(gw.url, KEY_B, "the other key is not limited").status_code == 200
    clock.now += 2.0
    assert chat(gw.url, KEY_A, "second question").status_code == 200


def test_concurrency_limit_per_key(gateway, fake_ollama):
    table = keys(concurrency=1)
    gw = gateway(settings=ServerSettings(keys=table))
    fake_ollama.pause()
    held = threading.Thread(target=chat, args=(gw.url, KEY_A, "held"))
    held.start()
    try:
        fake_ollama.wait_until(lambda s: s.count("chat") == 1)
        second = chat(gw.url, KEY_A, "second while held")
        assert second.status_code == 429 and "in flight" in second.json()["error"]
    finally:
        fake_ollama.resume()
        held.join(timeout=30)
    assert gw.service.tenants.in_flight(table[0]) == 0


def test_unauthenticated_only_on_loopback_unless_allowed():
    with pytest.raises(ConfigError, match="without API keys"):
        ServerSettings(host="0.0.0.0")
    assert ServerSettings(host="0.0.0.0", allow_unauthenticated=True).keys == ()
    assert ServerSettings(host="0.0.0.0", keys=keys()).keys
    assert ServerSettings(host="::1").host == "::1"


def test_keys_from_a_config_table():
    settings = server_settings_from_table({
        "alias": "smart", "keys": [{"name": "a", "key": KEY_A, "namespace": "team-a", "concurrency": 2},
                                   {"name": "b", "key_sha256": key_digest(KEY_B), "namespace": "team-b"}]},
        port=9999)
    assert settings.alias == "smart" and settings.port == 9999
    assert [k.sha256 for k in settings.keys] == [key_digest(KEY_A), key_digest(KEY_B)]
    assert KEY_A not in repr(settings)
    for bad in ({"keys": [{"key": KEY_A}]}, {"keys": [{"key": KEY_A, "key_sha256": "0" * 64, "namespace": "x"}]},
                {"keys": [{"key": "short", "namespace": "x"}]}, {"keys": [{"key": KEY_A, "namespace": "bad space"}]},
                {"bogus": 1}, {"keys": [{"key": KEY_A, "namespace": "x", "rate": 3}]}):
        with pytest.raises(ConfigError):
            server_settings_from_table(bad)
