"""The ``semroute`` command line. The only place that reads files and environment for settings.

Each group of commands lives in its own module and registers itself on ``main``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import wraps

import click

from ..errors import SemrouteError

__all__ = ["main", "typed_errors"]


def typed_errors(fn: Callable[..., None]) -> Callable[..., None]:
    """Show semroute's typed errors as a one-line message and exit status 1, not a traceback."""

    @wraps(fn)
    def wrapper(*args: object, **kwargs: object) -> None:
        try:
            fn(*args, **kwargs)
        except SemrouteError as exc:
            raise click.ClickException(f"{type(exc).__name__}: {exc}") from exc

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="semroute")
def main() -> None:
    """Semantic cache and complexity router in front of Ollama."""
    # Model-loading progress bars from huggingface/transformers would interleave with our output.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def _register() -> None:
    # Imported for their side effect of adding commands to ``main``.
    from . import cache_cmds  # noqa: F401
    from . import plan_cmds  # noqa: F401
    from . import replay_cmds  # noqa: F401
    from . import report_cmds  # noqa: F401
    from . import router_cmds  # noqa: F401
    from . import serve  # noqa: F401
    from . import train_cmds  # noqa: F401
    from . import verify_cmds  # noqa: F401


_register()
