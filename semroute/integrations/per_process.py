"""``PerProcessRouter``: one ``Router`` per worker process, built lazily on first use.

Web servers import the app in a master process and fork workers (gunicorn ``--preload``,
uwsgi, Django's ``runserver`` reloader runs the app's setup in a watcher process that never
serves). A Router holds sockets, threads and locks that do not survive ``fork``, and loading
its embedding model in a process that never serves wastes memory. So nothing is built until
the first request of each process; a process whose id differs from the builder's builds its
own (the inherited one is dropped, not closed: closing would shut the parent's sockets).
Concurrent first requests build exactly one Router (a lock, re-created in a forked child so a
lock held by a thread of the parent at fork time cannot deadlock it).

It is not a pool or a registry: one holder, one Router, for one app.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable

from ..router import Router

__all__ = ["PerProcessRouter"]


class PerProcessRouter:
    """Builds ``build()`` once per process on the first ``get()``; thread-safe.

    ``getpid`` is injectable so tests can stand in for a fork; ``builds`` counts Routers built
    by this process's holder (a forked child starts from the parent's count).
    """

    def __init__(self, build: Callable[[], Router], *, getpid: Callable[[], int] = os.getpid) -> None:
        self._build = build
        self._getpid = getpid
        self._lock = threading.Lock()
        self._router: Router | None = None
        self._pid: int | None = None
        self.builds = 0
        if hasattr(os, "register_at_fork"):  # POSIX: a fresh lock in the child (see module docstring)
            ref = weakref.ref(self)
            os.register_at_fork(after_in_child=lambda: _renew_lock(ref))

    def get(self) -> Router:
        """This process's Router, built now if this process has none yet."""
        pid = self._getpid()
        router = self._router
        if router is not None and self._pid == pid:
            return router
        with self._lock:
            if self._router is None or self._pid != pid:
                self._router = self._build()
                self._pid = pid
                self.builds += 1
            return self._router

    @property
    def built(self) -> bool:
        """Whether this process has built its Router (``get()`` would not build)."""
        return self._router is not None and self._pid == self._getpid()

    def close(self) -> None:
        """Close this process's Router (a later ``get()`` builds a new one)."""
        with self._lock:
            router, mine = self._router, self._pid == self._getpid()
            self._router = self._pid = None
        if router is not None and mine:
            router.close()


def _renew_lock(ref: weakref.ref[PerProcessRouter]) -> None:
    holder = ref()
    if holder is not None:
        holder._lock = threading.Lock()
