"""The router's shells under concurrency: a slow store never blocks the event loop, identical
streamed misses share one model call, ``Overloaded`` reaches callers, streams fall back and
count broken streams. Real MiniLM, FakeOllama over HTTP; synchronised with events and the
fake's pause/resume, never with sleeps of a chosen length.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable

import pytest

from semroute import BackendError, Overloaded, PoolSettings, QueueSettings, Router, Tier
from semroute.types import CacheEntry
from store_wrappers import WrappedStore

pytestmark = pytest.mark.timeout(120)

SMALL, LARGE = "llama3.2:3b", "llama3.1:8b"
QUESTION = "How do I register a second-hand car?"


def tiers_at(url: str, **small: object) -> dict[str, Tier]:
    return {"small": Tier(SMALL, (url,), **small), "large": Tier(LARGE, (url,))}  # type: ignore[arg-type]


def chats(fake, question: str | None = None) -> int:
    return fake.stats().count("chat")


def eventually(predicate: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Wait for a condition other threads make true (a bounded poll, not a timed sleep)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.001)


async def aeventually(predicate: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.001)


@pytest.fixture
def make_router(tmp_path, fake_ollama, embedder):
    routers: list[Router] = []

    def make(**kwargs) -> Router:
        kwargs.setdefault("tiers", tiers_at(fake_ollama.url))
        kwargs.setdefault("data_dir", tmp_path / "cache")
        kwargs.setdefault("embedder", embedder)
        router = Router(**kwargs)
        routers.append(router)
        return router

    yield make
    for router in routers:
        router.close()


class SlowStore(WrappedStore):
    """A ``MemoryStore`` whose reads wait for ``gate``: a store on a slow disk or network."""

    def __init__(self, gate: threading.Event) -> None:
        super().__init__()
        self.gate = gate
        self.entered = threading.Event()
        self.waited_out = False  # a read gave up waiting: nobody opened the gate meanwhile

    def _slow(self) -> None:
        self.entered.set()
        if not self.gate.wait(30):  # a deadlock guard only: the ticker opens it at once when the loop is free
            self.waited_out = True

    def get_by_key(self, key: str, *, now: float) -> CacheEntry | None:
        self._slow()
        return self.inner.get_by_key(key, now=now)

    def changes(self, since: int):
        self._slow()
        return self.inner.changes(since)


@pytest.mark.parametrize("call", ["aask", "astream"])
async def test_a_slow_store_never_blocks_the_event_loop(make_router, call):
    gate = threading.Event()
    store = SlowStore(gate)
    router = make_router(store=store)
    ticks = 0

    async def ticker() -> None:
        """Runs only if the loop is free while the store holds a read."""
        nonlocal ticks
        await asyncio.to_thread(store.entered.wait, 30)
        for _ in range(3):
            ticks += 1
            await asyncio.sleep(0)
        gate.set()

    async def request() -> str:
        if call == "aask":
            return (await router.aask(QUESTION, tier="small")).text
        return "".join([c.text async for c in router.astream(QUESTION, tier="small")])

    text, _ = await asyncio.gather(request(), ticker())
    assert text and ticks == 3
    assert not store.waited_out  # the ticker opened the gate while the read was waiting
    await asyncio.to_thread(router.pipeline.behind.flush)  # the answer is written after it is returned
    assert len(store) == 1  # and the answer was stored


def test_concurrent_identical_streamed_misses_make_one_model_call(make_router, fake_ollama):
    router = make_router()
    router.ask("warm up the embedder and the cache", tier="small")
    fake_ollama.pause()
    streams: list[list] = [[] for _ in range(4)]

    def read(i: int) -> None:
        streams[i] = list(router.stream(QUESTION, tier="small"))

    threads = [threading.Thread(target=read, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    eventually(lambda: router.metrics.count("requests.coalesced") == 3, "three callers joined the first stream")
    fake_ollama.resume()
    for t in threads:
        t.join(60)
    texts = {"".join(c.text for c in chunks) for chunks in streams}
    assert len(texts) == 1 and QUESTION in texts.pop()
    assert all(len(chunks) > 2 and chunks[-1].done for chunks in streams)  # each got the whole stream
    assert chats(fake_ollama) == 2  # the warm-up and one shared call
    assert router.ask(QUESTION).source == "exact"


async def test_concurrent_identical_async_streams_make_one_model_call(make_router, fake_ollama):
    router = make_router()
    await router.aask("warm up the embedder and the cache", tier="small")
    fake_ollama.pause()

    async def read(stop_after: int | None) -> list:
        got = []
        async for chunk in router.astream(QUESTION, tier="small"):
            got.append(chunk)
            if stop_after is not None and len(got) == stop_after:
                break  # this caller leaves early; the others must still get everything
        return got

    tasks = [asyncio.create_task(read(1 if i == 0 else None)) for i in range(4)]
    await aeventually(lambda: router.metrics.count("requests.coalesced") == 3, "three callers joined")
    fake_ollama.resume()
    early, *full = await asyncio.gather(*tasks)
    assert len(early) == 1
    texts = {"".join(c.text for c in chunks) for chunks in full}
    assert len(texts) == 1 and all(chunks[-1].done for chunks in full)
    assert chats(fake_ollama) == 2


def test_overloaded_reaches_router_callers(make_router, fake_ollama):
    no_queue = PoolSettings(queue=QueueSettings(max_length=0))
    router = make_router(tiers=tiers_at(fake_ollama.url, limit=1, pool=no_queue))
    router.ask("warm up the embedder and the cache", tier="large")
    fake_ollama.pause()
    holder = threading.Thread(target=router.ask, args=("The request holding the only slot",), kwargs={"tier": "small"})
    holder.start()
    fake_ollama.wait_until(lambda s: s.active == 1, timeout=20)
    with pytest.raises(Overloaded):
        router.ask("Another question for the full tier", tier="small")
    with pytest.raises(Overloaded):
        asyncio.run(router.aask("A third question for the full tier", tier="small"))
    fake_ollama.resume()
    holder.join(30)
    assert router.metrics.count("pool.overloaded") == 2


def _dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_streams_fall_back_to_the_other_tier(make_router, fake_ollama):
    router = make_router(tiers={"small": Tier(SMALL, (_dead_url(),)), "large": Tier(LARGE, (fake_ollama.url,))})
    chunks = list(router.stream(QUESTION, tier="small"))
    assert {c.source for c in chunks} == {"large"} and chunks[-1].done and chunks[-1].model == LARGE
    streamed = asyncio.run(_collect(router.astream("And a motorbike?", tier="small")))
    assert {c.source for c in streamed} == {"large"} and streamed[-1].done
    assert router.metrics.count("tier.small.failed") == 2 and router.metrics.count("answers.fallback") == 2


async def _collect(stream) -> list:
    return [c async for c in stream]


def test_a_broken_stream_is_counted_surfaced_and_not_stored(make_router, fake_ollama):
    router = make_router()
    fake_ollama.set_fault("drop", after_chunks=2)
    received = []
    with pytest.raises(BackendError):
        for chunk in router.stream(QUESTION, tier="small"):
            received.append(chunk)
    assert len(received) == 2
    assert router.metrics.count("stream.broken") == 1
    assert router.metrics.count("tier.small.failed") == 0  # no fallback after text went out
    fake_ollama.clear_fault()
    assert router.ask(QUESTION, tier="small").source == "small"  # nothing was stored
