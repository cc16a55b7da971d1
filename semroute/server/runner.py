"""``ServerThread``: the gateway app served by uvicorn in a background thread, on a real port.

For tests, benchmarks and applications that embed the gateway in a Python process: start it,
talk HTTP to ``url``, stop it (which drains like ``semroute serve`` on SIGTERM). Startup and
shutdown are waited for with events, never by polling. ``semroute serve`` itself runs uvicorn
in the main thread; this is the same server, only in another thread.
"""

from __future__ import annotations

import threading
from typing import Any

import uvicorn

from ..errors import ConfigError

__all__ = ["ServerThread"]


class _Server(uvicorn.Server):
    """uvicorn's server, telling a thread when it listens (or failed to)."""

    def __init__(self, config: uvicorn.Config, started: threading.Event) -> None:
        super().__init__(config)
        self._started_event = started

    async def startup(self, sockets: Any = None) -> None:
        try:
            await super().startup(sockets)
        finally:
            self._started_event.set()


class ServerThread:
    """Serve ``app`` on ``host:port`` (0: a free port) until ``stop()``. A context manager."""

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = 0, drain_s: int = 10,
                 **uvicorn_options: Any) -> None:
        self._config = uvicorn.Config(app, host=host, port=port, access_log=False, log_level="warning",
                                      timeout_graceful_shutdown=drain_s, lifespan="on", **uvicorn_options)
        self._started = threading.Event()
        self._server = _Server(self._config, self._started)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def port(self) -> int:
        servers = getattr(self._server, "servers", None)
        if not servers:
            raise ConfigError("the server is not listening")
        return servers[0].sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://{self._config.host}:{self.port}"

    def start(self) -> ServerThread:
        self._thread = threading.Thread(target=self._run, name="semroute-serve", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout=60) or not self._server.started:
            self.stop()
            raise ConfigError(f"the gateway did not start on {self._config.host}:{self._config.port}") from self._error
        return self

    def _run(self) -> None:
        try:
            self._server.run()
        except BaseException as exc:  # reported by start()
            self._error = exc
        finally:
            self._started.set()

    def stop(self) -> None:
        """Stop accepting, let requests in flight finish (up to ``drain_s``), shut the app down."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
