"""Every public entry point raises only the documented ``SemrouteError`` tree (issue 12, item 5).

A CI-sized hypothesis run over the real router, pool, store, Ollama embedder and CLI (FakeOllama
over HTTP); ``bench/reliability.py fuzz`` runs the same harness for tens of thousands of cases.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import tempfile
from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings

from reliability_helpers import SMALL, light_router
from semroute.backends.ollama import OllamaBackend
from semroute.backends.pool import Pool
from semroute.cache import MemoryStore
from semroute.cli import main
from semroute.embed import OllamaEmbedder
from semroute.errors import InvalidRequest
from semroute.testing import FakeFleet
from semroute.testing.fuzz import Call, Targets, calls

pytestmark = pytest.mark.reliability


@contextlib.contextmanager
def _serve_port_taken() -> Iterator[None]:
    """Hold ``semroute serve``'s default port while the CLI is fuzzed.

    A fuzzed ``serve`` whose arguments are all valid would otherwise start a real server that
    never returns; with the port taken it gets as far as binding (everything it validates runs)
    and exits. If some other process holds the port already, the effect is the same.
    """
    held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        try:
            held.bind(("127.0.0.1", 11435))
            held.listen(1)
        except OSError:
            pass
        yield
    finally:
        held.close()


class EvilEncode(str):
    def encode(self, *args, **kwargs):  # type: ignore[override]
        raise UnicodeEncodeError("utf-8", "x", 0, 1, "misbehaving encode")

    def __hash__(self) -> int:
        raise TypeError("misbehaving hash")


def cli(argv: list[str]) -> BaseException | None:
    here = os.getcwd()
    with tempfile.TemporaryDirectory() as scratch, _serve_port_taken():
        os.chdir(scratch)  # fuzzed arguments name paths: keep them out of the checkout
        try:
            result = CliRunner().invoke(main, argv)
        finally:
            os.chdir(here)
    return None if result.exception is None or isinstance(result.exception, SystemExit) else result.exception


@pytest.fixture(scope="module")
def targets(tmp_path_factory) -> Iterator[Targets]:
    tmp = tmp_path_factory.mktemp("fuzz")
    with FakeFleet(2) as fleet:
        router = light_router(fleet.urls, tmp / "router")
        pool = Pool([OllamaBackend(u) for u in fleet.urls])
        store = MemoryStore(tmp / "store")
        embedder = OllamaEmbedder(SMALL, host=fleet.urls[0])
        try:
            yield Targets(router=router, pool=pool, store=store, embedder=embedder, cli=cli)
        finally:
            router.close()
            pool.close()
            store.close()
            embedder.close()


@pytest.mark.parametrize(
    "call",
    [
        Call("ask", ("What is 5?",), {"tier": ["small"]}),
        Call("aask", ("What is 5?",), {"tier": {"small": 1}}),
        Call("stream", ("What is 5?",), {"tier": ["small"]}),
        Call("warm", ([("q", "a")],), {"ttl_s": {}}),
        Call("warm", ([("q", "a")],), {"batch_size": "8"}),
        Call("warm", (True,)),
        Call("pool.chat", (SMALL, [])),
        Call("store.get", ([],), {"now": 0.0}),
        Call("store.get_by_key", ("k",), {"now": None}),
        Call("store.delete", (None,)),
        Call("store.changes", (None,)),
        Call("embedder.embed", ([None],)),
    ],
    ids=repr,
)
def test_reported_untyped_errors_are_typed_now(targets: Targets, call: Call) -> None:
    outcome, error = targets.run(call)
    assert outcome == "typed" and isinstance(error, InvalidRequest), (outcome, error)


@pytest.mark.parametrize(
    "call",
    [
        Call("ask", (EvilEncode("What is 5?"),)),
        Call("ask", ("What is 5?",), {"namespace": EvilEncode("tenant")}),
        Call("ask", ("What is 5?",), {"system": EvilEncode("be brief")}),
        Call("pool.chat", (EvilEncode(SMALL), [])),
    ],
    ids=repr,
)
def test_str_subclasses_with_misbehaving_methods_are_used_as_plain_text(targets: Targets, call: Call) -> None:
    outcome, error = targets.run(call)
    assert outcome in ("ok", "typed"), (outcome, error)


@settings(max_examples=250, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(call=calls())
def test_fuzzed_calls_end_in_an_answer_or_a_typed_error(targets: Targets, call: Call) -> None:
    logging.disable(logging.WARNING)  # thousands of expected failure warnings would only slow this down
    try:
        outcome, error = targets.run(call)
    finally:
        logging.disable(logging.NOTSET)
    assert outcome != "untyped", (call, repr(error))


def test_the_harness_finds_an_untyped_error() -> None:
    """The harness is not vacuous: a target raising TypeError is reported as untyped."""

    class Broken:
        def ask(self, *args, **kwargs):
            raise TypeError("unhashable type: 'list'")

    assert Targets(router=Broken()).run(Call("ask", ("q",)))[0] == "untyped"
