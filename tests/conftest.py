"""Shared fixtures. ``fake_ollama``: a started FakeOllama with the two default tier models."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from semroute.testing import FakeOllama

FAKE_MODELS = ("llama3.2:3b", "llama3.1:8b")


@pytest.fixture
def fake_ollama() -> Iterator[FakeOllama]:
    """A fresh FakeOllama per test (faults and counters never leak between tests)."""
    with FakeOllama(FAKE_MODELS) as fake:
        yield fake
