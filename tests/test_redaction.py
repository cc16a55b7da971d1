"""Credentials in an Ollama URL never leave: logs, errors, stats and metrics show them redacted
(issue 12, item 2). The router runs against real fake Ollama servers that refuse connections,
so every failure path that names an instance is taken."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from reliability_helpers import SMALL, light_router
from semroute.backends.ollama import OllamaBackend
from semroute.backends.pool import Pool
from semroute.errors import BackendUnavailable, NoInstanceAvailable, SemrouteError
from semroute.redact import redact_text, redact_url
from semroute.testing import FakeOllama
from semroute.types import Message

pytestmark = pytest.mark.reliability

PASSWORD = "pa55w0rdXYZ"
TOKEN = "t0kenABCDEF"


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("http://user:pa55@host:11434", "http://***@host:11434"),
        ("http://tok@host", "http://***@host"),
        ("http://user:p@ss@host:1/x", "http://***@host:1/x"),
        ("https://h:1/v1?token=abc&model=x", "https://h:1/v1?token=***&model=x"),
        ("https://h/?api_key=abc#frag", "https://h/?api_key=***#frag"),
        ("https://h/?X-Amz-Signature=abc&a=1", "https://h/?X-Amz-Signature=***&a=1"),
        ("got 'user:pw@host:11434'", "got '***@host:11434'"),
        ("Authorization: Bearer abcdefghijklmnop", "Authorization: Bearer ***"),
        ("http://[::1]:11434", "http://[::1]:11434"),
        ("mail bob@example.com about a=1", "mail bob@example.com about a=1"),
    ],
)
def test_redaction_rule(raw: str, shown: str) -> None:
    assert redact_text(raw) == shown
    assert redact_url(raw) == shown


@pytest.fixture
def secret_hosts():
    """Two refusing fake servers, one addressed with userinfo, one with a token parameter."""
    with FakeOllama([SMALL]) as a, FakeOllama([SMALL]) as b:
        hosts = (f"http://admin:{PASSWORD}@127.0.0.1:{a.port}", f"http://127.0.0.1:{b.port}/?token={TOKEN}")
        a.set_fault("refuse")
        b.set_fault("refuse")
        yield hosts


def leaks(*texts: object) -> list[str]:
    return [str(t) for t in texts if PASSWORD in str(t) or TOKEN in str(t)]


def test_backend_and_pool_errors_logs_and_states_are_redacted(secret_hosts, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    backends = [OllamaBackend(h) for h in secret_hosts]
    assert not leaks(*(b.name for b in backends), *(repr(b) for b in backends))
    with pytest.raises(BackendUnavailable) as one:
        backends[0].chat(SMALL, [Message("user", "hi")])
    assert not leaks(str(one.value), one.value.instance, repr(one.value))
    with Pool(backends) as pool:
        with pytest.raises(NoInstanceAvailable) as err:
            pool.chat(SMALL, [Message("user", "hi")])
        assert not leaks(str(err.value), repr(err.value.attempts), pool.states(SMALL))
    assert caplog.records and not leaks(caplog.text)


def test_router_errors_stats_and_prometheus_are_redacted(secret_hosts, tmp_path, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    with light_router(secret_hosts, tmp_path) as router:
        errors: list[SemrouteError] = []
        for call in (
            lambda: router.ask("What is the speed limit?"),
            lambda: list(router.stream("What is the speed limit in town?")),
            lambda: asyncio.run(router.aask("How far is the moon?")),
        ):
            with pytest.raises(SemrouteError) as err:
                call()
            errors.append(err.value)
        stats = json.dumps(router.stats(), default=str)
        assert "127.0.0.1" in stats  # the instances are shown, only without their secrets
        found = leaks(*errors, *(repr(e) for e in errors), stats, router.metrics.prometheus(), caplog.text)
        assert not found, found
        assert "***" in stats
