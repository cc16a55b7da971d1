"""The semroute Django app: holds this process's Router, built from ``settings.SEMROUTE`` on first use.

``ready()`` only validates the settings (a typo fails at start-up) and may run any number of
times; the holder is created with the app config, so a second ``ready()`` keeps the Router.
Nothing is built in ``ready()``: the ``runserver`` reloader's watcher process, ``migrate`` and
other commands that never ask anything never load the embedding model.
"""

from __future__ import annotations

from django.apps import AppConfig
from django.conf import settings

from ...router import Router
from ..per_process import PerProcessRouter
from ..spec import RouterSpec

__all__ = ["SemrouteConfig"]


class SemrouteConfig(AppConfig):
    name = "semroute.integrations.django"
    label = "semroute"
    verbose_name = "semroute"
    default = True

    def __init__(self, app_name: str, app_module: object) -> None:
        super().__init__(app_name, app_module)
        self.holder = PerProcessRouter(_build)

    def ready(self) -> None:
        RouterSpec.from_django(getattr(settings, "SEMROUTE", None))

    def router(self) -> Router:
        """This process's Router (built now on the first call)."""
        return self.holder.get()


def _build() -> Router:
    # Read at build time, not in ready(): tests (override_settings) and late settings still apply.
    return Router(**RouterSpec.from_django(getattr(settings, "SEMROUTE", None)).router_kwargs())
