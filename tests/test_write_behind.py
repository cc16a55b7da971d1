"""Answers stored after they are returned (``WriteBehind``): the caller does not wait for the
store, the next identical question is an exact hit even before the write lands, failed writes
are reported, and closing waits for every queued write. Real MiniLM, FakeOllama over HTTP, a
store whose writes wait on a gate the test opens."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import numpy as np
import pytest

from semroute import Router, Tier
from semroute.types import CacheEntry
from semroute.write_behind import HeldWrites, WriteBehind
from store_wrappers import WrappedStore

pytestmark = pytest.mark.timeout(120)

SMALL, LARGE = "llama3.2:3b", "llama3.1:8b"


class GatedWrites(WrappedStore):
    """A ``MemoryStore`` whose writes wait until ``gate`` opens (a store on a slow disk)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.writing = threading.Event()

    def put_many(self, entries) -> None:
        self.writing.set()
        assert self.gate.wait(30), "the test never opened the gate"
        self.inner.put_many(entries)


@pytest.fixture
def gated_router(fake_ollama, embedder):
    store = GatedWrites()
    router = Router(tiers={"small": Tier(SMALL, (fake_ollama.url,)), "large": Tier(LARGE, (fake_ollama.url,))},
                    embedder=embedder, store=store)
    yield router, store
    store.gate.set()
    router.close()


@pytest.mark.parametrize("call", ["aask", "astream"])
async def test_a_miss_is_answered_before_its_write_lands_and_served_exact_meanwhile(gated_router, fake_ollama, call):
    router, store = gated_router
    question = "How do I renew a fishing licence?"
    if call == "aask":
        first = await router.aask(question, tier="small")
        text = first.text
    else:
        text = "".join([chunk.text async for chunk in router.astream(question, tier="small")])
    assert text and len(store) == 0  # answered while the write still waits on the gate
    assert await asyncio.to_thread(store.writing.wait, 30)
    again = await router.aask(question, tier="small")
    assert again.source == "exact" and again.text == text and fake_ollama.stats().count("chat") == 1
    store.gate.set()
    await asyncio.to_thread(router.pipeline.behind.flush)
    assert len(store) == 1 and router.pipeline.behind.pending(next(store.entries()).key) is None


async def test_closing_the_router_writes_what_is_still_queued(gated_router):
    router, store = gated_router
    for i in range(3):
        await router.aask(f"What is the fine for offence number {i}?", tier="small")
    assert len(store) == 0
    threading.Timer(0.05, store.gate.set).start()  # opened while close() waits
    await asyncio.to_thread(router.close)
    assert sorted(e.question for e in store.entries()) == [f"What is the fine for offence number {i}?" for i in range(3)]


def _entry(key: str) -> CacheEntry:
    return CacheEntry(id=key, key=key, scope="s", namespace="n", question=key, answer="a",
                      vector=np.zeros(3, dtype=np.float32), created_at=0.0)


def test_failed_writes_are_reported_in_order_and_stop_being_pending():
    written: list[str] = []
    failed: list[tuple[str, str]] = []

    def write(entry: CacheEntry) -> None:
        if entry.key == "bad":
            raise OSError("disk full")
        written.append(entry.key)

    behind = WriteBehind(write, lambda entry, exc: failed.append((entry.key, str(exc))))
    for key in ("a", "bad", "b"):
        behind.submit(_entry(key))
    behind.flush()
    assert written == ["a", "b"] and failed == [("bad", "disk full")]
    assert behind.pending("bad") is None and behind.pending("a") is None
    behind.close()
    behind.submit(_entry("late"))  # after close: written at once, in the caller's thread
    assert written[-1] == "late"


def test_held_writes_are_pending_at_once_and_start_on_release_or_flush():
    written: list[str] = []
    behind = WriteBehind(lambda entry: written.append(entry.key), lambda entry, exc: None)
    with HeldWrites() as held:
        behind.submit(_entry("held"))
        behind.flush()  # a flush starts held writes (an invalidation must come after them)
        assert written == ["held"]
        behind.submit(_entry("later"))
        time.sleep(0.05)
        assert written == ["held"] and behind.pending("later") is not None  # served exact, not yet written
        held.release()
        behind.flush()
        assert written == ["held", "later"]
        behind.submit(_entry("at exit"))
    behind.flush()
    assert written == ["held", "later", "at exit"]
    behind.submit(_entry("outside"))  # no hold here any more: queued at once
    behind.flush()
    assert written[-1] == "outside" and behind.pending("outside") is None
    behind.close()


async def test_tasks_started_inside_a_hold_are_held_and_close_writes_them():
    written: list[str] = []
    behind = WriteBehind(lambda entry: written.append(entry.key), lambda entry, exc: None)
    held = HeldWrites().enter()

    async def miss() -> None:  # a request's work runs in tasks of its own (the gateway's, the flight's)
        behind.submit(_entry("from a task"))

    await asyncio.ensure_future(miss())
    await asyncio.sleep(0.05)
    assert written == [] and behind.pending("from a task") is not None
    await asyncio.to_thread(behind.close)  # closing never leaves a held answer unwritten
    assert written == ["from a task"]
    held.exit()  # releasing after close starts nothing twice
    assert written == ["from a task"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_writes_through_its_own_worker() -> None:
    """A parent's worker thread does not survive ``fork``: a child's writes must still run."""
    written: list[str] = []
    behind = WriteBehind(lambda entry: written.append(entry.id), lambda entry, exc: None)
    behind.submit(_entry("parent"))
    behind.flush()
    pid = os.fork()
    if pid == 0:  # the child: exit 0 only if its write ran
        behind.submit(_entry("child"))
        deadline = time.monotonic() + 10  # not flush(): without a live worker it would wait forever
        while len(written) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        os._exit(0 if written == ["parent", "child"] else 1)
    _, status = os.waitpid(pid, 0)
    behind.close()
    assert os.waitstatus_to_exitcode(status) == 0
