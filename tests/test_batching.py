"""``BatchingEmbedder``: concurrent calls share batches, rows are the wrapped embedder's, the queue is bounded."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from gateway_kit import WordEmbedder, wait_for
from semroute import ConfigError, EmbeddingError, Overloaded
from semroute.batching import BatchingEmbedder, BatchSettings
from semroute.testing.clock import ManualClock


class GatedEmbedder(WordEmbedder):
    """Records each batch; the first call waits for ``gate`` (so later calls pile up meanwhile)."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.batches: list[list[str]] = []
        self.fail = False

    def embed(self, texts):
        self.entered.set()
        self.gate.wait(timeout=10)
        self.batches.append(list(texts))
        if self.fail:
            raise EmbeddingError("the model fell over")
        return super().embed(texts)


def run_in_threads(batcher: BatchingEmbedder, texts: list[str]) -> dict[str, object]:
    results: dict[str, object] = {}

    def one(text: str) -> None:
        try:
            results[text] = batcher.embed([text])
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            results[text] = exc

    threads = [threading.Thread(target=one, args=(t,)) for t in texts]
    for t in threads:
        t.start()
    return results, threads


def test_calls_waiting_while_the_model_is_busy_form_one_batch():
    inner = GatedEmbedder()
    batcher = BatchingEmbedder(inner, BatchSettings(max_batch=64, max_wait_ms=0))
    started = time.perf_counter()
    first, first_threads = run_in_threads(batcher, ["first text"])
    assert inner.entered.wait(timeout=10)  # the worker is inside the model with the first text
    texts = [f"text number {i}" for i in range(20)]
    results, threads = run_in_threads(batcher, texts)
    wait_for(lambda: batcher.queued == len(texts), what="every caller queued")
    inner.gate.set()
    for t in first_threads + threads:
        t.join(timeout=10)
    assert inner.batches[0] == ["first text"] and sorted(inner.batches[1]) == sorted(texts)
    expected = WordEmbedder().embed(texts)
    for i, text in enumerate(texts):
        np.testing.assert_allclose(results[text][0], expected[i], rtol=1e-6)
    assert batcher.batches == 2 and batcher.batched_texts == 21
    # the model was busy while the first batch waited at the gate, and never longer than the test ran
    assert 0.0 < batcher.busy_s <= time.perf_counter() - started
    batcher.close()


def test_the_queue_is_bounded_and_errors_reach_every_caller():
    inner = GatedEmbedder()
    batcher = BatchingEmbedder(inner, BatchSettings(max_batch=8, max_wait_ms=0, max_queue=4))
    run_in_threads(batcher, ["occupies the model"])
    assert inner.entered.wait(timeout=10)
    results, threads = run_in_threads(batcher, ["a", "b", "c", "d"])
    wait_for(lambda: batcher.queued == 4, what="every caller queued")
    with pytest.raises(Overloaded, match="waiting to be embedded"):
        batcher.embed(["one too many"])
    inner.fail = True
    inner.gate.set()
    for t in threads:
        t.join(timeout=10)
    assert all(isinstance(results[t], EmbeddingError) for t in "abcd")
    batcher.close()
    with pytest.raises(Overloaded):
        batcher.embed(["after close"])


async def test_async_callers_share_batches_and_big_calls_go_straight_through():
    inner = GatedEmbedder()
    inner.gate.set()
    batcher = BatchingEmbedder(inner, BatchSettings(max_batch=4, max_wait_ms=50))
    rows = await asyncio.gather(*(batcher.aembed([f"async {i}"]) for i in range(4)))
    assert [len(b) for b in inner.batches] == [4]  # four callers inside 50 ms: one full batch, no wait past it
    big = batcher.embed([f"warm {i}" for i in range(10)])
    assert big.shape == (10, 64) and [len(b) for b in inner.batches] == [4, 10]
    assert rows[0].shape == (1, 64) and batcher.name == "test-words" and batcher.dim == 64
    batcher.close()


def test_a_text_after_an_idle_gap_goes_at_once_and_a_burst_still_waits_for_company():
    inner, clock = GatedEmbedder(), ManualClock()
    inner.gate.set()
    # the clock stands still, so a text that waits for company waits until its batch fills
    batcher = BatchingEmbedder(inner, BatchSettings(max_batch=2, max_wait_ms=1000, idle_gap_ms=10), clock=clock)
    _, threads = run_in_threads(batcher, ["first", "second"])  # no gap known yet: they wait, and fill a batch
    for t in threads:
        t.join(timeout=10)
    clock.advance(1.0)  # a quiet second
    alone = batcher.embed(["after a quiet second"])
    assert alone.shape == (1, 64) and inner.batches[-1] == ["after a quiet second"]
    clock.advance(0.001)  # 1 ms after the last text: a burst, so it waits for company
    results, threads = run_in_threads(batcher, ["burst one"])
    wait_for(lambda: batcher.queued == 1, what="the burst's first text queued")
    assert len(inner.batches) == 2  # still waiting, not embedded alone
    results, more = run_in_threads(batcher, ["burst two"])
    for t in threads + more:
        t.join(timeout=10)
    assert inner.batches[-1] == ["burst one", "burst two"] and batcher.batches == 3
    batcher.close()


def test_settings_are_validated():
    for bad in (dict(max_batch=0), dict(max_wait_ms=-1), dict(max_queue=0), dict(max_batch=True), dict(idle_gap_ms=-1),
                dict(idle_gap_ms=True)):
        with pytest.raises(ConfigError):
            BatchSettings(**bad)
    with pytest.raises(ConfigError):
        BatchingEmbedder(object())


class LazyEmbedder(WordEmbedder):
    """An embedder whose ``dim`` would load a model (MiniLM's does): it counts the reads."""

    def __init__(self) -> None:
        self.dim_reads = 0

    @property
    def dim(self):
        self.dim_reads += 1
        return WordEmbedder.dim


class NoEmbed:
    name, dim = "half", 3  # no ``embed``


def test_wrapping_an_embedder_loads_nothing_and_a_non_embedder_is_refused():
    inner = LazyEmbedder()
    batcher = BatchingEmbedder(inner)  # ``isinstance(inner, Embedder)`` would have read ``dim`` here
    assert inner.dim_reads == 0
    assert batcher.dim == 64 and inner.dim_reads == 1  # asked for, it is read
    for bad in (object(), NoEmbed(), "an embedder"):
        with pytest.raises(ConfigError):
            BatchingEmbedder(bad)
    batcher.close()
