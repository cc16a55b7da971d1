"""``semroute serve``: the Ollama- and OpenAI-compatible gateway over HTTP (``semroute[serve]``).

Reads the flags and the config file (``[server]`` plus the Router's tables), builds the Router
with its embedder behind a ``BatchingEmbedder``, and runs the app under uvicorn. With
``--workers N`` uvicorn starts N processes; each rebuilds the app from the same options
(passed through the ``SEMROUTE_SERVE_SPEC`` environment variable, read only here). Several
processes cannot share the embedded on-disk store, so N > 1 needs a shared store.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import click

from ..errors import ConfigError
from . import main, typed_errors

__all__ = ["serve", "ServeSpec", "build_app"]

_SPEC_ENV = "SEMROUTE_SERVE_SPEC"


@dataclass(frozen=True, slots=True)
class ServeSpec:
    """The command line, as plain data a worker process can rebuild the app from."""

    host: str | None = None
    port: int | None = None
    ollama_urls: tuple[str, ...] = ()
    data_dir: str | None = None
    redis_url: str | None = None
    config: str | None = None
    workers: int = 1
    allow_unauthenticated: bool | None = None
    alias: str | None = None


def _config_tables(path: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(Router keyword arguments, the raw ``[server]`` table) from the config file."""
    if path is None:
        return {}, {}
    from ..config import load_config, tomllib

    kwargs = load_config(path)
    raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    table = raw.get("server", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [server] must be a table")
    return kwargs, table


def _tiers(kwargs: dict[str, Any], urls: tuple[str, ...]):
    from ..settings import default_tiers

    tiers = kwargs.get("tiers") or default_tiers(urls[0] if urls else None)
    if urls:  # --ollama-url replaces every tier's hosts
        tiers = {name: replace(t, hosts=urls) for name, t in tiers.items()}
    return tiers


def build_app(spec: ServeSpec):
    """The ASGI app and its ``ServerSettings`` for ``spec`` (reads the config file; opens nothing)."""
    from ..backends.kinds import backend_for
    from ..batching import BatchingEmbedder
    from ..embed import default_embedder, with_threads
    from ..router import Router
    from ..server import create_app
    from ..server.app import quiet_openmp
    from ..server.settings import server_settings_from_table

    quiet_openmp()  # before anything loads the embedding model's OpenMP

    kwargs, table = _config_tables(spec.config)
    settings = server_settings_from_table(table, host=spec.host, port=spec.port, alias=spec.alias,
                                          allow_unauthenticated=spec.allow_unauthenticated)
    if spec.workers > 1 and spec.redis_url is None:
        raise ConfigError("--workers N > 1 needs --redis-url: the embedded store belongs to one process")
    # The process's share of the cores, unless the config says otherwise (ServerSettings.embed_threads).
    threads = settings.embed_threads or max(1, (os.cpu_count() or 1) // spec.workers)
    settings = replace(settings, embed_threads=threads)
    batcher = BatchingEmbedder(with_threads(kwargs.pop("embedder", None) or default_embedder(), threads))
    kwargs["tiers"] = _tiers(kwargs, spec.ollama_urls)
    if spec.data_dir is not None:
        kwargs["data_dir"] = spec.data_dir
    if spec.redis_url is not None:
        kwargs["redis_url"] = spec.redis_url
    router = Router(embedder=batcher, backend_factory=backend_for, **kwargs)
    return create_app(router, settings, batcher=batcher, own_process=True), settings


def _log_to_stderr() -> None:
    """semroute's own logs (access lines included) at INFO on stderr; other libraries stay at
    WARNING (httpx logs every upstream request at INFO)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    semroute_log = logging.getLogger("semroute")
    semroute_log.setLevel(logging.INFO)
    semroute_log.addHandler(handler)
    semroute_log.propagate = False


def app_from_env():
    """uvicorn's factory in each ``--workers`` process."""
    _log_to_stderr()
    raw = json.loads(os.environ[_SPEC_ENV])
    raw["ollama_urls"] = tuple(raw["ollama_urls"])
    return build_app(ServeSpec(**raw))[0]


@main.command()
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="Port (default 11435).")
@click.option("--ollama-url", "ollama_urls", multiple=True,
              help="An upstream instance (repeat for a pool); replaces every tier's hosts. "
                   "Prefix openai+ for an OpenAI-compatible server, e.g. openai+http://127.0.0.1:8000.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory where the cache persists.")
@click.option("--redis-url", envvar="SEMROUTE_REDIS_URL", default=None, show_envvar=True,
              help="Share the cache, instance limits and in-flight misses through Redis (needed for --workers > 1).")
@click.option("--config", "config", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="TOML config: the Router's tables and [server] (alias, keys, limits).")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True, help="Server processes.")
@click.option("--allow-unauthenticated", is_flag=True, default=None,
              help="Serve without API keys on a non-loopback address.")
@click.option("--alias", default=None, help="Model name answered by cache and router (default semroute).")
@typed_errors
def serve(host: str | None, port: int | None, ollama_urls: tuple[str, ...], data_dir: Path | None,
          redis_url: str | None, config: Path | None, workers: int, allow_unauthenticated: bool | None,
          alias: str | None) -> None:
    """Serve Ollama's and OpenAI's APIs, answered from the cache and the tier pools."""
    try:
        import uvicorn
    except ImportError as exc:
        raise ConfigError("semroute serve needs the serve extra: pip install 'semroute[serve]'") from exc
    spec = ServeSpec(host, port, tuple(ollama_urls), None if data_dir is None else str(data_dir), redis_url,
                     None if config is None else str(config), workers, allow_unauthenticated, alias)
    _log_to_stderr()
    app, settings = build_app(spec)
    options = dict(host=settings.host, port=settings.port, access_log=False, log_level="info",
                   timeout_graceful_shutdown=int(settings.drain_s) or 1,
                   timeout_keep_alive=settings.keep_alive_s)
    if workers == 1:
        uvicorn.run(app, **options)
        return
    os.environ[_SPEC_ENV] = json.dumps(asdict(replace(spec, host=settings.host, port=settings.port)))
    uvicorn.run("semroute.cli.serve:app_from_env", factory=True, workers=workers, **options)
