"""Operating the gateway: /metrics, /healthz, /readyz, access logs, and the ``semroute serve`` command."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys

import httpx
import ollama
import pytest

from gateway_kit import SMALL, Gateway
from semroute.testing import FakeOllama


def metric(text: str, name: str, **labels: str) -> float:
    """One sample's value from Prometheus text (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0])) if "{" in line else {}
            if all(found.get(k) == v for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_requests_by_source(gateway, fake_ollama):
    gw = gateway()
    body = {"model": "semroute", "messages": [{"role": "user", "content": "metrics question"}], "stream": False}
    for _ in range(3):
        httpx.post(f"{gw.url}/api/chat", json=body)
    httpx.post(f"{gw.url}/api/chat", json={"model": "nope", "messages": body["messages"]})
    text = httpx.get(f"{gw.url}/metrics").text
    assert metric(text, "semroute_gateway_requests_total", endpoint="/api/chat", source="small", status="200") == 1
    assert metric(text, "semroute_gateway_requests_total", endpoint="/api/chat", source="exact", status="200") == 2
    assert metric(text, "semroute_gateway_requests_total", endpoint="/api/chat", status="404") == 1
    assert metric(text, "semroute_gateway_request_seconds_count", endpoint="/api/chat", source="exact") == 2
    assert metric(text, "semroute_router_events_total", event="answers.exact") == 2
    assert metric(text, "semroute_gateway_in_flight") == 0
    # one question embedded (its two repeats were exact hits; the unknown model never got that far)
    assert metric(text, "semroute_gateway_embed_batches_total") == 1
    assert metric(text, "semroute_gateway_embed_texts_total") == 1
    assert metric(text, "semroute_gateway_embed_busy_seconds_total") > 0
    assert metric(text, "semroute_gateway_embed_queued") == 0


def test_stats_endpoint_feeds_semroute_stats_and_metrics_carry_savings(gateway, fake_ollama):
    from click.testing import CliRunner

    from semroute.cli import main

    gw = gateway()
    body = {"model": "semroute", "messages": [{"role": "user", "content": "a savings question"}], "stream": False}
    for _ in range(2):
        httpx.post(f"{gw.url}/api/chat", json=body)
    stats = httpx.get(f"{gw.url}/stats").json()
    assert stats["counters"]["answers.exact"] == 1 and stats["savings"]["hits"] == 1
    tokens = stats["counters"]["tokens.completion"]
    assert stats["counters"]["tokens.avoided"] == tokens  # the hit re-served the answer generated here
    text = httpx.get(f"{gw.url}/metrics").text
    assert metric(text, "semroute_router_events_total", event="tokens.avoided") == tokens
    assert metric(text, "semroute_savings", quantity="api_saved") > 0
    result = CliRunner().invoke(main, ["stats", "--url", gw.url, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["savings"]["tokens"]["completion_avoided"] == tokens


def test_readyz_needs_a_loaded_cache_and_a_healthy_instance_per_tier(tmp_path):
    with FakeOllama([SMALL]) as fake:  # the large tier's model is missing
        gw = Gateway([fake.url], tmp_path / "cache")
        try:
            gw.router.pipeline.prepare()
            for tier in gw.router.tiers:
                gw.router.pipeline.pool(tier).check_health()
            not_ready = httpx.get(f"{gw.url}/readyz")
            assert not_ready.status_code == 503
            assert not_ready.json()["problems"] == ["tier large: no healthy instance with its model"]
            assert httpx.get(f"{gw.url}/healthz").json() == {"status": "ok"}
        finally:
            gw.stop()
    with FakeOllama() as fake:
        gw = Gateway([fake.url], tmp_path / "cache2")
        try:
            gw.router.pipeline.prepare()
            for tier in gw.router.tiers:
                gw.router.pipeline.pool(tier).check_health()
            assert httpx.get(f"{gw.url}/readyz").json() == {"ready": True, "problems": []}
        finally:
            gw.stop()


def test_access_log_is_one_json_line_per_request(gateway, fake_ollama, caplog):
    gw = gateway()
    with caplog.at_level(logging.INFO, logger="semroute.access"):
        httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "semroute", "messages": [
            {"role": "user", "content": "log me"}]})
        httpx.get(f"{gw.url}/healthz")  # probes are not logged
    (line,) = [json.loads(r.getMessage()) for r in caplog.records if r.name == "semroute.access"]
    assert line["path"] == "/v1/chat/completions" and line["status"] == 200 and line["source"] == "small"
    assert line["tenant"] == "anonymous" and line["model"] == "semroute" and line["ms"] > 0


def test_semroute_serve_command(tmp_path, fake_ollama):
    """The real command: starts, answers the ollama client, logs, stops cleanly on SIGTERM."""
    config = tmp_path / "semroute.toml"
    # Embeddings from the fake's /api/embed: the command runs without loading torch.
    config.write_text(f'[server]\nalias = "smart"\n[embedder]\nollama = "{SMALL}"\nhost = "{fake_ollama.url}"\n')
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "semroute.cli", "serve", "--port", "0", "--ollama-url",
                             fake_ollama.url, "--data-dir", str(tmp_path / "data"), "--config", str(config)],
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        url = None
        for line in proc.stderr:
            found = re.search(r"running on (http://127\.0\.0\.1:\d+)", line)
            if found:
                url = found.group(1)
                break
        assert url is not None, "semroute serve never said where it listens"
        client = ollama.Client(url)
        try:
            reply = client.generate(model="smart", prompt="Is the command alive?")
            assert "Is the command alive?" in reply.response
            assert [m.model for m in client.list().models][0] == "smart"
        finally:
            client.close()
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=30)[1]
        assert proc.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after a clean shutdown
        assert "Finished server process" in rest
        assert "HTTP Request:" not in rest  # upstream calls are not logged one by one (httpx stays at WARNING)
        assert '"path": "/api/generate"' in rest and "Is the command alive" not in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
