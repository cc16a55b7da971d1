"""Django glue: a settings-driven ``Router`` (``SEMROUTE = {...}``), views, management commands.

Add ``"semroute.integrations.django"`` to ``INSTALLED_APPS``, set ``SEMROUTE`` (keys ``CONFIG``,
``DATA_DIR``, ``OLLAMA_URLS``, ``NAMESPACE``, ``OPTIONS``; see ``semroute.integrations.spec``),
include ``semroute.integrations.django.urls`` and call ``get_router()`` in your own views. The
Router is built once per process on first use, never in ``AppConfig.ready()``, so the
``runserver`` reloader's watcher process and a second ``ready()`` build nothing.
Commands: ``manage.py semroute_warm FILE`` and ``manage.py semroute_stats [--json]``.
This package imports Django; the rest of semroute never does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ...router import Router

__all__ = ["get_router"]


def get_router() -> Router:
    """This process's Router (built on the first call; needs the app in ``INSTALLED_APPS``)."""
    from django.apps import apps

    return apps.get_app_config("semroute").router()
