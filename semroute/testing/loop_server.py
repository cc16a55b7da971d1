"""``LoopServer``: an HTTP/1.1 server on loopback with its own event loop in its own thread.

The life cycle every fake server in ``semroute.testing`` needs, kept apart from what a server
answers: start and stop from synchronous test code, keep-alive connections tracked so that stop
closes them all, a listener that can be closed and reopened while running (a fake that "refuses
connections"), and a clean shutdown that leaks no socket even for a connection accepted in the
instant the listener closed. Subclasses implement ``_dispatch`` (one request) and may hook
``_setup`` (loop-owned state), ``_accepts`` (take new connections?) and the connection counters.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import h11

from .http11 import HttpConnection, HttpRequest

__all__ = ["LoopServer"]

_T = TypeVar("_T")
_S = TypeVar("_S", bound="LoopServer")


class LoopServer:
    """Start with ``start()`` or ``with``; ``stop()`` is idempotent. State lives on the server loop."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host, self._port = host, port
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._startup_error: BaseException | None = None
        # Owned by the server loop once started.
        self._server: asyncio.Server | None = None
        self._stopping: asyncio.Event | None = None
        self._conns: dict[asyncio.Task[Any], HttpConnection] = {}

    # -- what a subclass answers and counts ----------------------------------------------

    async def _dispatch(self, conn: HttpConnection, request: HttpRequest) -> bool:
        """Answer one request; False closes the connection."""
        raise NotImplementedError

    async def _setup(self) -> None:
        """Make the loop-owned state (semaphores, events) once the loop runs."""

    def _accepts(self) -> bool:
        """Whether to listen and to keep a newly accepted connection."""
        return True

    def _connected(self) -> None:
        """A connection was kept."""

    def _disconnected(self) -> None:
        """A kept connection ended."""

    # -- life cycle ------------------------------------------------------------------------

    @property
    def _name(self) -> str:
        return type(self).__name__

    @property
    def url(self) -> str:
        if not self._port:
            raise RuntimeError(f"{self._name} has no port yet; start() it first")
        return f"http://{self._host}:{self._port}"

    @property
    def port(self) -> int:
        return self._port

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self: _S) -> _S:
        if self._thread is not None:
            raise RuntimeError(f"{self._name} is already running")
        ready = threading.Event()
        self._startup_error = None
        self._thread = threading.Thread(target=self._run, args=(ready,), name=self._name, daemon=True)
        self._thread.start()
        if not ready.wait(timeout=10) or self._startup_error is not None:
            error = self._startup_error
            self.stop()
            raise RuntimeError(f"{self._name} failed to start on {self._host}:{self._port}") from error
        return self

    def stop(self) -> None:
        """Close every connection and the listener, and end the server thread. Idempotent."""
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None:
            return
        if loop is not None and stopping is not None:
            try:
                loop.call_soon_threadsafe(stopping.set)
            except RuntimeError:  # the loop already finished (startup failed)
                pass
        thread.join(timeout=10)
        self._thread = self._loop = None

    def __enter__(self: _S) -> _S:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self, ready: threading.Event) -> None:
        try:
            asyncio.run(self._main(ready))
        except BaseException as exc:  # reported to start(); the thread must not die noisily
            self._startup_error = exc
        finally:
            ready.set()

    async def _main(self, ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        await self._setup()
        if self._accepts():
            await self._listen()
        ready.set()
        await self._stopping.wait()
        await self._stop_listening()
        await self._close_connections()
        await self._finish_late_connections()

    def _call(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run ``coro`` on the server loop from another thread and wait for its result."""
        loop = self._loop
        if loop is None or self._thread is None:
            coro.close()
            raise RuntimeError(f"{self._name} is not running")
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=10)

    # -- listener and connections ----------------------------------------------------------

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._on_connection, self._host, self._port, backlog=2048, reuse_address=True
        )
        self._port = self._server.sockets[0].getsockname()[1]

    async def _stop_listening(self) -> None:
        if self._server is not None:
            # CPython 3.11 leaks a connection accepted just before ``close()`` whose set-up task runs
            # after it (``Server._attach`` asserts the server is open; the socket is never closed).
            # So stop accepting first, and yield once: set-up tasks already queued run before we resume.
            assert self._loop is not None
            for sock in self._server.sockets:
                self._loop.remove_reader(sock.fileno())
            await asyncio.sleep(0)
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _close_connections(self) -> None:
        tasks = list(self._conns)
        for task, conn in list(self._conns.items()):
            conn.abort()
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _finish_late_connections(self) -> None:
        """At shutdown: a connection accepted just before the listener closed may have a handler
        that has not run yet; cancelled unstarted at the loop's end it would leave its socket
        open. Let every such task run (the handler sees it is not wanted and drops it)."""
        while late := [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]:
            await asyncio.gather(*late, return_exceptions=True)

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        conn = HttpConnection(reader, writer)
        stopping = self._stopping is not None and self._stopping.is_set()
        if stopping or not self._accepts():
            conn.abort()  # accepted just before the listener closed
            return
        self._conns[task] = conn
        self._connected()
        try:
            while (request := await conn.next_request()) is not None:
                if not await self._dispatch(conn, request):
                    break
        except (ConnectionError, OSError, h11.ProtocolError):
            pass  # the client went away or broke HTTP; nothing more to answer
        except asyncio.CancelledError:
            # Only our own shutdown cancels this task. Ending it normally keeps asyncio's
            # stream callback from logging the cancelled task as an error.
            pass
        finally:
            self._conns.pop(task, None)
            await conn.aclose()
            self._disconnected()
