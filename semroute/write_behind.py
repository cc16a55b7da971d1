"""``WriteBehind``: a new answer is stored after it is returned, not before.

Storing a model's answer (the store's write, the index update, a thread hop to do them off the
event loop) took 0.5-1 ms of every miss, on the path to the caller, who does not need it
(``bench/serve.py``, issue 15). Here the caller gets the answer at once and one worker thread
stores entries in the order they came. Nothing is lost for being late:

* until its write lands, an entry is *pending*, and ``pending(key)`` serves it, so the next
  identical question is an exact hit even if it arrives first;
* a failed write goes to ``on_error`` (the pipeline counts and logs it, as for any store error);
* ``close`` waits for every write still queued; after it, writes run in the caller's thread.

``HeldWrites`` goes one step further for a server: writes submitted inside it (in its context,
tasks it starts included) are pending at once but start only when it is released, which the
gateway does once the response's last byte is handed to the socket. Started at once, the store's
worker thread woke while the response was still being built and sent, and took the CPU and the
GIL from it (``bench/serve.py``'s misses, load 4.5: 0.25-0.5 ms more from the model's answer to
the client's last byte). ``flush`` and ``close`` start held writes too, so an invalidation still
orders after every answer submitted before it.

Not here: what an entry holds (``Pipeline.new_entry``), how it is stored (``Pipeline``'s insert).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar, Token

from .types import CacheEntry

__all__ = ["HeldWrites", "WriteBehind"]


class _Held:
    """One write waiting for its ``HeldWrites`` to end (or for a flush); started once."""

    __slots__ = ("behind", "entry", "started")

    def __init__(self, behind: WriteBehind, entry: CacheEntry) -> None:
        self.behind, self.entry, self.started = behind, entry, False


class HeldWrites:
    """Writes submitted in this context wait until ``release`` (a context manager; idempotent).

    ``with HeldWrites(): ...`` or ``enter()`` / ``release()`` / ``exit()`` when the release point
    lies inside the block (the gateway releases after the last byte, and exits in ``finally``).
    """

    __slots__ = ("_writes", "_token")

    def __init__(self) -> None:
        self._writes: list[_Held] = []
        self._token: Token[HeldWrites | None] | None = None

    def enter(self) -> HeldWrites:
        self._token = _HOLD.set(self)
        return self

    def release(self) -> None:
        """Start every write held so far."""
        writes, self._writes = self._writes, []
        for held in writes:
            held.behind._start_held(held)

    def exit(self) -> None:
        """Release, and stop holding in this context."""
        if self._token is not None:
            _HOLD.reset(self._token)
            self._token = None
        self.release()

    def _hold(self, held: _Held) -> None:
        self._writes.append(held)

    def __enter__(self) -> HeldWrites:
        return self.enter()

    def __exit__(self, *exc_info: object) -> None:
        self.exit()


_HOLD: ContextVar[HeldWrites | None] = ContextVar("semroute_held_writes", default=None)


class WriteBehind:
    """Queued entry writes, one worker thread, in order. Thread-safe."""

    def __init__(self, write: Callable[[CacheEntry], None], on_error: Callable[[CacheEntry, Exception], None]) -> None:
        self._write = write
        self._on_error = on_error
        self._lock = threading.Lock()
        self._pending: dict[str, CacheEntry] = {}
        self._executor: ThreadPoolExecutor | None = None
        self._pid = os.getpid()
        self._closed = False
        self._held: list[_Held] = []  # writes a ``HeldWrites`` holds back, in submission order

    def submit(self, entry: CacheEntry) -> None:
        """Store ``entry`` soon (when the ``HeldWrites`` around this call ends, if any); it is
        ``pending`` under its key until then."""
        hold = _HOLD.get()
        with self._lock:
            self._pending[entry.key] = entry
            if hold is not None and not self._closed:
                held = _Held(self, entry)
                self._held.append(held)
                hold._hold(held)
                return
        self._start(entry)

    def _start_held(self, held: _Held) -> None:
        with self._lock:
            if held.started:
                return
            held.started = True
            self._held.remove(held)
        self._start(held.entry)

    def _start_all_held(self) -> None:
        with self._lock:
            held = list(self._held)
        for one in held:
            self._start_held(one)

    def _start(self, entry: CacheEntry) -> None:
        self._on_worker(lambda: self._run(entry))

    def _on_worker(self, job: Callable[[], None]) -> None:
        with self._lock:
            if not self._closed:
                if self._pid != os.getpid():  # a forked child: the parent's worker thread is not here
                    self._executor, self._pid = None, os.getpid()
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(1, thread_name_prefix="semroute-store")
                self._executor.submit(job)
                return
        job()  # closed: nobody would run it later

    def housekeep(self, job: Callable[[], None]) -> None:
        """Run ``job`` (store housekeeping, e.g. purging what a lookup on the event loop found
        expired) on the worker thread, after the writes started before it; never held back."""
        self._on_worker(job)

    def pending(self, key: str) -> CacheEntry | None:
        """The entry for exact ``key`` whose write has not landed yet, if any."""
        return self._pending.get(key)

    def flush(self) -> None:
        """Return once every write submitted before this call has run (held ones included)."""
        self._start_all_held()
        with self._lock:
            executor = self._executor
        if executor is not None:
            try:
                executor.submit(lambda: None).result()
            except RuntimeError:  # shut down meanwhile: close() waited for the writes
                pass

    def close(self) -> None:
        """Run every queued write (held ones included), then stop the worker. Idempotent."""
        self._start_all_held()
        with self._lock:
            self._closed = True
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)

    def _run(self, entry: CacheEntry) -> None:
        try:
            self._write(entry)
        except Exception as exc:  # noqa: BLE001 - the caller has its answer: a failed write is reported
            self._on_error(entry, exc)
        finally:
            with self._lock:
                if self._pending.get(entry.key) is entry:
                    del self._pending[entry.key]
