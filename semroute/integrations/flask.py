"""Flask extension: ``Semroute()`` + ``init_app(app)``, one ``Router`` per worker process.

Follows Flask's extension conventions: settings come from ``app.config`` (``SEMROUTE_CONFIG``
TOML path, ``SEMROUTE_DATA_DIR``, ``SEMROUTE_OLLAMA_URLS``, ``SEMROUTE_NAMESPACE``,
``SEMROUTE_OPTIONS`` extra Router keyword arguments), state lives in ``app.extensions["semroute"]``
(a ``PerProcessRouter``) and one extension object serves many apps. ``init_app`` validates the
settings and builds nothing; the Router is built on first use in each worker process, after
the server forked (gunicorn ``--preload`` safe). ``semroute.router`` is the current app's Router.

It adds no routes: ``examples/flask_app/app.py`` shows ``POST /ask``, ``POST /ask/stream`` and
``/metrics`` built from ``semroute.integrations.http``. Needs the ``semroute[flask]`` extra.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from flask import Flask, current_app

from ..errors import ConfigError
from ..router import Router
from .per_process import PerProcessRouter
from .spec import RouterSpec

__all__ = ["Semroute", "router_for", "holder_for"]

EXTENSION = "semroute"


class Semroute:
    """The extension. ``factory(**kwargs)`` builds the Router (default ``Router``)."""

    def __init__(self, app: Flask | None = None, *, factory: Callable[..., Router] = Router) -> None:
        self._factory = factory
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Check ``app``'s settings now (a typo fails at start-up) and register a lazy holder."""
        if EXTENSION in app.extensions:
            raise ConfigError("semroute is already initialised on this app (call init_app once per app)")
        RouterSpec.from_flask(app.config)
        config, factory = app.config, self._factory
        # The config is read again at build time: tests and app factories may change it after init_app.
        app.extensions[EXTENSION] = PerProcessRouter(lambda: _build(config, factory))

    @property
    def router(self) -> Router:
        """The current app's Router (needs an app context, e.g. inside a request)."""
        return router_for(current_app)


def router_for(app: Flask) -> Router:
    """``app``'s Router for this process, built now if needed."""
    return holder_for(app).get()


def holder_for(app: Flask) -> PerProcessRouter:
    """``app.extensions["semroute"]``; a clear error if ``init_app`` was not called."""
    holder = app.extensions.get(EXTENSION)
    if not isinstance(holder, PerProcessRouter):
        raise ConfigError(f"semroute is not initialised on app {app.name!r}: call Semroute().init_app(app)")
    return holder


def _build(config: Mapping[str, Any], factory: Callable[..., Router]) -> Router:
    return factory(**RouterSpec.from_flask(config).router_kwargs())
