"""The Flask extension and ``examples/flask_app`` against FakeOllama over real HTTP."""

from __future__ import annotations

import importlib.util
import json
import os
import select
import threading
from pathlib import Path

import pytest

flask = pytest.importorskip("flask")

from semroute import ConfigError, Router  # noqa: E402
from semroute.integrations.flask import Semroute, holder_for, router_for  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "flask_app" / "app.py"


def load_example():
    spec = importlib.util.spec_from_file_location("semroute_flask_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def app(tmp_path, fake_ollama, cheap_router_options):
    app = load_example().create_app(
        {
            "TESTING": True,
            "SEMROUTE_DATA_DIR": str(tmp_path / "cache"),
            "SEMROUTE_OLLAMA_URLS": fake_ollama.url,
            "SEMROUTE_OPTIONS": cheap_router_options,
        }
    )
    yield app
    holder_for(app).close()


def chats(fake) -> int:
    return fake.stats().count("chat")


def test_ask_is_a_miss_then_an_exact_hit(app, fake_ollama):
    client = app.test_client()
    first = client.post("/ask", json={"question": "What is the speed limit in the city?"})
    assert first.status_code == 200 and first.mimetype == "application/json"
    body = first.get_json()
    assert body["source"] == "small" and body["tier"] == "small" and body["text"] and body["similarity"] is None
    again = client.post("/ask", json={"question": "what is the SPEED limit in the city"})
    assert again.get_json()["source"] == "exact" and again.get_json()["text"] == body["text"]
    assert again.get_json()["similarity"] == 1.0
    assert chats(fake_ollama) == 1


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"text": "hi"}', "unknown field(s) text"),
        ('{"namespace": "a"}', 'needs a "question" string'),
        ('{"question": "hi", "tier": 3}', '"tier" must be a string'),
        ('{"question": "   "}', "question"),
    ],
)
def test_bad_requests_are_400_with_a_clear_message_and_nothing_is_asked(app, fake_ollama, data, message):
    for path in ("/ask", "/ask/stream"):
        response = app.test_client().post(path, data=data, content_type="application/json")
        assert response.status_code == 400, response.data
        assert response.get_json()["error"] == "InvalidRequest" and message in response.get_json()["message"]
    assert fake_ollama.stats().requests == ()


def test_stream_is_ndjson_and_the_streamed_answer_is_cached(app, fake_ollama):
    client = app.test_client()
    response = client.post("/ask/stream", json={"question": "How do roundabouts work?"})
    assert response.status_code == 200 and response.mimetype == "application/x-ndjson"
    lines = [json.loads(line) for line in response.get_data(as_text=True).splitlines()]
    assert len(lines) > 2 and lines[-1]["done"] and not any(line["done"] for line in lines[:-1])
    assert {line["source"] for line in lines} == {"small"}
    streamed = "".join(line["text"] for line in lines)
    cached = client.post("/ask/stream", json={"question": "How do roundabouts work?"})
    [hit] = [json.loads(line) for line in cached.get_data(as_text=True).splitlines()]
    assert hit == {"text": streamed, "done": True, "source": "exact", "model": lines[-1]["model"]}
    assert chats(fake_ollama) == 1


def test_stream_failing_before_the_first_chunk_gets_a_status(tmp_path, fake_ollama, cheap_router_options):
    app = load_example().create_app(
        {"SEMROUTE_DATA_DIR": str(tmp_path), "SEMROUTE_OLLAMA_URLS": "http://127.0.0.1:9",  # nothing listens
         "SEMROUTE_OPTIONS": cheap_router_options}
    )
    response = app.test_client().post("/ask/stream", json={"question": "Is anybody there?"})
    assert response.status_code in (502, 503) and response.get_json()["error"] in ("NoInstanceAvailable", "BackendUnavailable")
    holder_for(app).close()


def test_metrics_are_prometheus_text_of_this_router(app):
    client = app.test_client()
    client.post("/ask", json={"question": "When must I use winter tyres?"})
    client.post("/ask", json={"question": "When must I use winter tyres?"})
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and metrics.mimetype == "text/plain"
    lines = metrics.get_data(as_text=True).splitlines()
    assert "semroute_answers_small_total 1" in lines and "semroute_answers_exact_total 1" in lines


def test_concurrent_requests_share_one_router_built_once(app, fake_ollama):
    holder = holder_for(app)
    assert not holder.built and holder.builds == 0  # init_app built nothing
    n = 8
    barrier = threading.Barrier(n)
    results: dict[int, dict] = {}

    def worker(i: int) -> None:
        client = app.test_client()
        barrier.wait()  # every thread asks at once, so the first use races
        response = client.post("/ask", json={"question": f"question number {i} about parking"})
        results[i] = {"status": response.status_code, **response.get_json()}

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(results) == list(range(n))
    assert all(r["status"] == 200 and r["source"] == "small" and r["text"] for r in results.values())
    assert holder.builds == 1 and chats(fake_ollama) == n
    with app.app_context():
        assert router_for(app) is holder.get()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_worker_builds_its_own_router(app, fake_ollama):
    client = app.test_client()
    assert client.post("/ask", json={"question": "Who has priority at a crossing?"}).status_code == 200
    parent_router = holder_for(app).get()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker: ask through the app, report, leave without running pytest's exit
        try:
            response = app.test_client().post("/ask", json={"question": "How fast near a school?"})
            report = {"status": response.status_code, "source": response.get_json()["source"],
                      "builds": holder_for(app).builds, "new": holder_for(app).get() is not parent_router}
            os.write(write_end, json.dumps(report).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    ready, _, _ = select.select([read_end], [], [], 120)
    report = json.loads(os.read(read_end, 4096)) if ready else None
    os.close(read_end)
    os.waitpid(pid, 0)
    assert report == {"status": 200, "source": "small", "builds": 2, "new": True}
    # the parent's router is untouched: still its own and still answering from its cache
    assert holder_for(app).get() is parent_router and holder_for(app).builds == 1
    assert client.post("/ask", json={"question": "Who has priority at a crossing?"}).get_json()["source"] == "exact"


def test_settings_come_from_app_config(tmp_path, fake_ollama, cheap_router_options):
    toml = tmp_path / "semroute.toml"
    toml.write_text('[tiers.small]\nmodel = "llama3.2:3b"\nhosts = ["http://elsewhere:1"]\nlimit = 2\n'
                    '[tiers.large]\nmodel = "llama3.1:8b"\nhosts = ["http://elsewhere:1"]\n')
    app = flask.Flask("configured")
    app.config.update(SEMROUTE_CONFIG=str(toml), SEMROUTE_OLLAMA_URLS=f" {fake_ollama.url} ,",
                      SEMROUTE_NAMESPACE="shop", SEMROUTE_DATA_DIR=str(tmp_path / "data"),
                      SEMROUTE_OPTIONS=cheap_router_options)
    ext = Semroute(app)
    with app.app_context():
        router = ext.router
        assert isinstance(router, Router) and router.tiers["small"].limit == 2  # from the TOML file
        assert router.tiers["small"].hosts == router.tiers["large"].hosts == (fake_ollama.url,)  # URLs win
        assert router.pipeline.namespace == "shop"
        router.warm([("Opening hours?", "Nine to five.")])
        assert router.ask("Opening hours?").source == "exact"
        assert router.ask("Opening hours?", namespace="other").source == "small"  # namespaces stay apart
    holder_for(app).close()
    assert any((tmp_path / "data").iterdir())  # the cache persisted under SEMROUTE_DATA_DIR


def test_configuration_mistakes_are_typed_errors(fake_ollama):
    app = flask.Flask("typo")
    app.config["SEMROUTE_OLAMA_URLS"] = fake_ollama.url
    with pytest.raises(ConfigError, match="unknown key.*SEMROUTE_OLAMA_URLS"):
        Semroute(app)
    bare = flask.Flask("bare")
    with pytest.raises(ConfigError, match="not initialised on app 'bare'"):
        router_for(bare)
    bad = flask.Flask("bad")
    bad.config["SEMROUTE_OLLAMA_URLS"] = "gpu1:11434"
    with pytest.raises(ConfigError, match="app.config: semroute ollama_urls must be http"):
        Semroute(bad)
    ok = flask.Flask("twice")
    ext = Semroute(ok)
    with pytest.raises(ConfigError, match="already initialised"):
        ext.init_app(ok)
    assert not holder_for(ok).built


def test_a_stream_broken_after_its_first_chunk_ends_with_an_error_line_and_is_not_cached(app, fake_ollama):
    from semroute.testing import Fault

    fake_ollama.set_fault(Fault("drop", count=1, after_chunks=2, endpoints=frozenset({"chat"})))
    client = app.test_client()
    response = client.post("/ask/stream", json={"question": "Why do trams have priority?"})
    assert response.status_code == 200  # the status line went out with the first chunk
    lines = [json.loads(line) for line in response.get_data(as_text=True).splitlines()]
    assert lines[0]["text"] and not any(line.get("done") for line in lines)
    assert lines[-1]["error"] in ("BackendError", "BackendProtocolError", "BackendUnavailable")
    again = client.post("/ask", json={"question": "Why do trams have priority?"}).get_json()
    assert again["source"] == "small"  # the broken answer was never stored
