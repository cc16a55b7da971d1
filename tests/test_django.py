"""The Django app (settings-driven Router, views, management commands) against FakeOllama.

Django's settings are process-wide: this module configures them once (the example project's
URLs, ``SEMROUTE = {}``) and each test overrides ``SEMROUTE`` and closes the Router after it.
The example project's own ``settings.py`` is exercised in subprocesses, as ``manage.py`` runs it.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

django = pytest.importorskip("django")

from django.conf import settings  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "django_app"
FAQ = "question,answer\nWhen does the shop open?,At nine.\nDo you deliver on Sundays?,No.\n"


@pytest.fixture(scope="module")
def configured():
    if not settings.configured:
        spec = importlib.util.spec_from_file_location("semroute_django_example_urls", EXAMPLE / "urls.py")
        urls = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(urls)
        settings.configure(
            SECRET_KEY="tests-only", ALLOWED_HOSTS=["testserver"], INSTALLED_APPS=["semroute.integrations.django"],
            ROOT_URLCONF=urls, DATABASES={}, MIDDLEWARE=[], USE_TZ=True, SEMROUTE={},
        )
        django.setup()
    from django.apps import apps

    return apps.get_app_config("semroute")


@pytest.fixture
def app(configured, tmp_path, fake_ollama, cheap_router_options):
    from django.test import override_settings

    semroute = {"DATA_DIR": str(tmp_path / "cache"), "OLLAMA_URLS": [fake_ollama.url], "OPTIONS": cheap_router_options}
    with override_settings(SEMROUTE=semroute):
        yield configured
        configured.holder.close()


@pytest.fixture
def client(app):
    from django.test import Client

    return Client()


def ask(client, path: str, body):
    data = body if isinstance(body, str) else json.dumps(body)
    return client.post(path, data=data, content_type="application/json")


def test_ask_view_misses_then_hits_the_exact_tier(client, fake_ollama):
    first = ask(client, "/semroute/ask/", {"question": "Is parking free on Sundays?"})
    assert first.status_code == 200 and first["Content-Type"] == "application/json"
    assert first.json()["source"] == "small" and first.json()["tier"] == "small" and first.json()["text"]
    again = ask(client, "/semroute/ask/", {"question": "Is  parking FREE on sundays"}).json()
    assert again["source"] == "exact" and again["similarity"] == 1.0 and again["text"] == first.json()["text"]
    assert fake_ollama.stats().count("chat") == 1
    assert client.get("/semroute/ask/").status_code == 405


@pytest.mark.parametrize("path", ["/semroute/ask/", "/semroute/ask/stream/"])
def test_bad_json_is_400_with_a_clear_message(client, fake_ollama, path):
    response = ask(client, path, "{oops")
    assert response.status_code == 400
    assert response.json()["error"] == "InvalidRequest" and "not valid JSON" in response.json()["message"]
    assert ask(client, path, {"question": ""}).status_code == 400
    assert fake_ollama.stats().requests == ()


def test_stream_view_sends_ndjson_and_caches_the_answer(client, fake_ollama):
    response = ask(client, "/semroute/ask/stream/", {"question": "How do I renew a permit?"})
    assert response.status_code == 200 and response.streaming and response["Content-Type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    assert len(lines) > 2 and lines[-1]["done"] and {line["source"] for line in lines} == {"small"}
    hit = ask(client, "/semroute/ask/", {"question": "How do I renew a permit?"}).json()
    assert hit["source"] == "exact" and hit["text"] == "".join(line["text"] for line in lines)
    assert fake_ollama.stats().count("chat") == 1


def test_metrics_view_and_a_project_view_share_the_router(client):
    assert client.get("/faq", {"q": "Where can I charge an electric car?"}).json()["cached"] is False
    assert client.get("/faq", {"q": "Where can I charge an electric car?"}).json()["cached"] is True
    assert client.get("/faq").status_code == 400
    lines = client.get("/semroute/metrics/").content.decode().splitlines()
    assert "semroute_answers_small_total 1" in lines and "semroute_answers_exact_total 1" in lines


def test_ready_running_twice_keeps_the_one_router(app, client):
    from semroute.integrations.django import get_router

    assert not app.holder.built  # nothing was built before the first use
    before = app.holder.builds  # counts this process's builds, across tests
    router = get_router()
    app.ready()
    app.ready()
    assert get_router() is router and app.holder.builds == before + 1
    assert ask(client, "/semroute/ask/", {"question": "Can I park here?"}).status_code == 200
    assert app.holder.builds == before + 1


def test_warm_and_stats_commands(app, client, tmp_path):
    from django.core.management import CommandError, call_command

    faq = tmp_path / "faq.csv"
    faq.write_text(FAQ, encoding="utf-8")
    out = io.StringIO()
    call_command("semroute_warm", str(faq), stdout=out)
    assert out.getvalue().startswith(f"warmed 2 entries from {faq}")
    hit = ask(client, "/semroute/ask/", {"question": "When does the shop open?"}).json()
    assert hit["source"] == "exact" and hit["text"] == "At nine."
    out = io.StringIO()
    call_command("semroute_stats", "--json", stdout=out)
    stats = json.loads(out.getvalue())
    assert stats["entries"] == 2 and stats["counters"]["answers.exact"] == 1
    assert [len(stats["instances"][t]) for t in ("small", "large")] == [1, 1]
    bad = tmp_path / "bad.csv"
    bad.write_text("question,answer\nA question?,\n", encoding="utf-8")
    with pytest.raises(CommandError, match=r"bad.csv: row 2 has an empty answer"):
        call_command("semroute_warm", str(bad), stdout=io.StringIO())
    out = io.StringIO()
    call_command("semroute_stats", stdout=out)
    assert "entries: 2" in out.getvalue().splitlines()  # the bad file stored nothing


def manage(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(EXAMPLE / "manage.py"), *args], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=180)


def test_the_example_project_builds_nothing_at_setup_and_commands_share_the_store(tmp_path, fake_ollama):
    toml = tmp_path / "semroute.toml"
    toml.write_text(f'[embedder]\nollama = "llama3.2:3b"\nhost = "{fake_ollama.url}"\n[router]\n', encoding="utf-8")
    env = {"SEMROUTE_CONFIG": str(toml), "SEMROUTE_DATA_DIR": str(tmp_path / "data"),
           "SEMROUTE_OLLAMA_URLS": fake_ollama.url, "DJANGO_SETTINGS_MODULE": "settings"}
    # What runserver's reloader watcher does: set up the project (ready() runs) and serve nothing.
    probe = ("import sys, django; sys.path.insert(0, sys.argv[1]); django.setup()\n"
             "from django.apps import apps; config = apps.get_app_config('semroute'); config.ready()\n"
             "print(config.holder.builds, 'torch' in sys.modules, 'httpx' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe, str(EXAMPLE)], capture_output=True, text=True,
                         env={**os.environ, **env}, timeout=180)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0", "False", "False"]
    faq = tmp_path / "faq.jsonl"
    faq.write_text('{"question": "Is there a lift?", "answer": "Yes, by the stairs."}\n', encoding="utf-8")
    warmed = manage(["semroute_warm", str(faq)], env)
    assert warmed.returncode == 0, warmed.stderr
    assert warmed.stdout.startswith("warmed 1 entries")
    stats = manage(["semroute_stats", "--json"], env)
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout)["entries"] == 1  # another process sees the persisted entry
    typo = manage(["semroute_stats"], {**env, "SEMROUTE_OLLAMA_URLS": "gpu1:11434"})
    assert typo.returncode != 0 and "settings.SEMROUTE: semroute ollama_urls must be http(s) URLs" in typo.stderr
