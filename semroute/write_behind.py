"""``WriteBehind``: a new answer is stored after it is returned, not before.

Storing a model's answer (the store's write, the index update, a thread hop to do them off the
event loop) took 0.5-1 ms of every miss, on the path to the caller, who does not need it
(``bench/serve.py``, issue 15). Here the caller gets the answer at once and one worker thread
stores entries in the order they came. Nothing is lost for being late:

* until its write lands, an entry is *pending*, and ``pending(key)`` serves it, so the next
  identical question is an exact hit even if it arrives first;
* a failed write goes to ``on_error`` (the pipeline counts and logs it, as for any store error);
* ``close`` waits for every write still queued; after it, writes run in the caller's thread.

Not here: what an entry holds (``Pipeline.new_entry``), how it is stored (``Pipeline``'s insert).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from .types import CacheEntry

__all__ = ["WriteBehind"]


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

    def submit(self, entry: CacheEntry) -> None:
        """Store ``entry`` soon; it is ``pending`` under its key until then."""
        with self._lock:
            self._pending[entry.key] = entry
            if not self._closed:
                if self._pid != os.getpid():  # a forked child: the parent's worker thread is not here
                    self._executor, self._pid = None, os.getpid()
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(1, thread_name_prefix="semroute-store")
                self._executor.submit(self._run, entry)
                return
        self._run(entry)  # closed: nobody would run it later

    def pending(self, key: str) -> CacheEntry | None:
        """The entry for exact ``key`` whose write has not landed yet, if any."""
        return self._pending.get(key)

    def flush(self) -> None:
        """Return once every write submitted before this call has run."""
        with self._lock:
            executor = self._executor
        if executor is not None:
            try:
                executor.submit(lambda: None).result()
            except RuntimeError:  # shut down meanwhile: close() waited for the writes
                pass

    def close(self) -> None:
        """Run every queued write, then stop the worker. Idempotent."""
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
