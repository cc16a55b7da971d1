"""CLI commands around the cache: ``ask``, ``warm``, ``invalidate`` and ``demo``.

Common options: ``--config`` (a TOML file, see ``semroute.config``), ``--data-dir`` (where the
cache persists), ``--namespace``, ``--ollama-url`` and ``--redis-url`` (env ``SEMROUTE_REDIS_URL``:
share the cache, limits and in-flight misses of every process using that Redis; ``semroute warm
--redis-url`` fills a running app's cache); given options override the file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import click

from . import main, typed_errors

if TYPE_CHECKING:
    from ..embed import Embedder

__all__ = ["ask", "warm", "demo", "invalidate"]


def common_options(fn: Callable[..., None]) -> Callable[..., None]:
    """``--config``, ``--data-dir``, ``--namespace``, ``--ollama-url``, ``--redis-url``, plus typed errors as messages."""
    wrapped = typed_errors(fn)
    for option in (
        redis_option,
        click.option("--ollama-url", default=None,
                     help="Ollama URL for every tier (default: the config's tiers, else OLLAMA_HOST or "
                          "http://127.0.0.1:11434)."),
        click.option("--namespace", default=None, help="Cache namespace (tenant; default: the config's, else 'default')."),
        click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                     help="Directory where the cache persists (default: the config's, else the user cache directory)."),
        click.option("--config", "config", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="TOML configuration file (README: Configuration file); options given here override it."),
    ):
        wrapped = option(wrapped)
    return wrapped


redis_option = click.option(
    "--redis-url", envvar="SEMROUTE_REDIS_URL", default=None, show_envvar=True,
    help="Share the cache, instance limits and in-flight misses through this Redis "
         "(redis://[:password@]host:port/db, rediss:// for TLS). Default: the config's [redis] url, "
         "else an embedded cache in --data-dir.")


def router_kwargs(config: Path | None, data_dir: Path | None, namespace: str | None,
                  ollama_url: str | None, redis_url: str | None = None) -> dict[str, object]:
    """``Router`` keyword arguments: the TOML file's, overridden by the options given."""
    from ..config import load_config
    from ..settings import default_tiers

    kwargs: dict[str, object] = dict(load_config(config)) if config is not None else {}
    if ollama_url is not None or "tiers" not in kwargs:
        tiers = kwargs.get("tiers")
        if ollama_url is not None and isinstance(tiers, dict):  # the file's tiers, at this URL
            kwargs["tiers"] = {name: replace(t, hosts=(ollama_url,)) for name, t in tiers.items()}
        else:
            kwargs["tiers"] = default_tiers(ollama_url)
    if data_dir is not None:
        kwargs["data_dir"] = data_dir
    if namespace is not None:
        kwargs["namespace"] = namespace
    if redis_url is not None:
        kwargs["redis_url"] = redis_url
    return kwargs


def warm_embedder(embedder: object, threads: int) -> Embedder:
    """The embedder a warm-up computes with: ``embedder`` (the config's, else the default) on
    ``threads`` threads. The packaged embedders default to one thread, for latency beside other
    work; a warm-up is a batch job, and e5 embeds 52.9 texts/s on one thread against 103.5 on two
    (2 cores, banking77 test questions in batches of 64, 2026-12-05)."""
    from ..embed import default_embedder, is_embedder, with_threads

    return with_threads(embedder if is_embedder(embedder) else default_embedder(), threads)


def _router(config: Path | None, data_dir: Path | None, namespace: str | None, ollama_url: str | None,
            redis_url: str | None = None):
    from ..router import Router

    return Router(**router_kwargs(config, data_dir, namespace, ollama_url, redis_url))  # type: ignore[arg-type]


def _tags(pairs: tuple[str, ...]) -> dict[str, str]:
    tags: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name or not value:
            raise click.BadParameter(f"expected key=value, got {pair!r}")
        tags[name] = value
    return tags


@main.command()
@click.argument("question")
@click.option("--json", "as_json", is_flag=True, help="Print the answer and its provenance as JSON.")
@click.option("--tier", type=click.Choice(["small", "large"]), default=None, help="Skip the classifier.")
@click.option("--system", default=None, help="System prompt (part of the cache key).")
@common_options
def ask(question: str, as_json: bool, tier: str | None, system: str | None, config: Path | None,
        data_dir: Path | None, namespace: str | None, ollama_url: str | None, redis_url: str | None) -> None:
    """Answer QUESTION from the cache or the model tier the classifier picks."""
    with _router(config, data_dir, namespace, ollama_url, redis_url) as router:
        answer = router.ask(question, tier=tier, system=system)
    if as_json:
        click.echo(json.dumps(answer.as_dict(), ensure_ascii=False))
        return
    click.echo(answer.text)
    similarity = "" if answer.similarity is None else f" similarity={answer.similarity:.3f}"
    where = f" model={answer.model} instance={answer.instance}" if answer.instance else ""
    click.echo(f"-- {answer.source}{similarity}{where} {answer.latency_ms:.1f} ms", err=True)


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(1, 4096))
@click.option("--system", default=None, help="System prompt the answers were written for.")
@click.option("--ttl", "ttl_s", type=click.FloatRange(0, None, min_open=True), default=None,
              help="Seconds these entries live (default: forever, or the cache's default TTL); a row's ttl column wins.")
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE",
              help="Tag every entry (repeatable), e.g. --tag topic=speed-limits, for `semroute invalidate --where`.")
@click.option("--near-duplicates", "near", type=click.FloatRange(0, 1, min_open=True), default=None,
              metavar="SIMILARITY", help="Also skip a question at least this cosine-similar to an earlier one in "
                                         "its namespace (e.g. 0.95); different answers are reported as conflicts.")
@click.option("--skip-bad", is_flag=True,
              help="Report bad rows and conflicting repeats (file and line) and store the rest; "
                   "default: refuse the files and store nothing.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the final report as JSON to this file.")
@click.option("--json", "as_json", is_flag=True, help="Print the final report as JSON on stdout.")
@click.option("--threads", type=click.IntRange(1, 1024), default=None,
              help="Threads the embedding model computes with (default: every core; a warm-up owns its process).")
@common_options
def warm(files: tuple[Path, ...], batch_size: int, system: str | None, ttl_s: float | None, tags: tuple[str, ...],
         near: float | None, skip_bad: bool, report_path: Path | None, as_json: bool, threads: int | None,
         config: Path | None, data_dir: Path | None, namespace: str | None, ollama_url: str | None,
         redis_url: str | None) -> None:
    """Store question/answer rows from FILES (CSV or JSONL: question, answer, optional namespace, ttl, metadata).

    Every row is checked before the embedding model loads: a bad row (empty field, over-long
    question, bad ttl or metadata) or the same question with two different answers is an
    error naming the file and row, unless --skip-bad. Rows already stored with the same
    answer are skipped without embedding, so an interrupted run can simply be run again.
    """
    from ..router import Router
    from ..warm_files import read_warm_file
    from .warm_report import check_rows, echo_report, progress_bar

    tag_map = _tags(tags)
    kwargs = router_kwargs(config, data_dir, namespace, ollama_url, redis_url)
    kwargs["embedder"] = warm_embedder(kwargs.get("embedder"), threads or os.cpu_count() or 1)
    with Router(**kwargs) as router:  # type: ignore[arg-type]
        rows, bad = [], []
        for file in files:
            good, wrong = read_warm_file(file, max_chars=router.settings.max_question_chars)
            rows += good
            bad += wrong
        if not skip_bad:
            check_rows(rows, bad)
        with progress_bar(len(rows)) as bar:
            report = router.warm(rows, batch_size=batch_size, progress=bar.update, system=system, ttl_s=ttl_s,
                                 tags=tag_map, near_duplicates=near, on_bad="skip" if skip_bad else "raise")
        report.bad[:0] = bad
        echo_report(report, namespace=router.pipeline.namespace, as_json=as_json, path=report_path)


@main.command()
@click.option("--faq", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="FAQ to warm the cache with (default: the traffic-rules FAQ shipped with semroute).")
@click.option("--queries", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Questions to replay (default: the shipped demo list).")
@click.option("--json", "as_json", is_flag=True, help="Print the per-question results and summary as JSON.")
@common_options
def demo(faq: Path | None, queries: Path | None, as_json: bool, config: Path | None,
         data_dir: Path | None, namespace: str | None, ollama_url: str | None, redis_url: str | None) -> None:
    """Warm a cache from an FAQ, replay questions and print each decision and a summary."""
    from .demo import run_demo

    run_demo(faq=faq, queries=queries, data_dir=data_dir, namespace=namespace or "default", ollama_url=ollama_url,
             as_json=as_json, echo=click.echo, config=config, redis_url=redis_url)


@main.command()
@click.option("--id", "ids", multiple=True, help="Entry id to delete (repeatable; see `ask --json` entry_id).")
@click.option("--namespace", default=None, help="Delete every entry of this namespace (with --where: only those).")
@click.option("--where", "where", multiple=True, metavar="KEY=VALUE",
              help="Delete entries carrying this tag (repeatable: all must match), e.g. topic=speed-limits.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The embedded cache's directory (default: the user cache directory).")
@redis_option
@typed_errors
def invalidate(ids: tuple[str, ...], namespace: str | None, where: tuple[str, ...], data_dir: Path | None,
               redis_url: str | None) -> None:
    """Delete cached entries by id, namespace or tag; every process following the cache drops them."""
    from ..errors import InvalidRequest

    criteria = _tags(where)
    if not ids and namespace is None and not criteria:
        raise InvalidRequest("say what to invalidate: --id, --namespace and/or --where key=value")
    with _store(data_dir, redis_url) as store:
        removed = store.delete(ids) if ids else 0
        if namespace is not None or criteria:
            removed += store.invalidate(namespace=namespace, where=criteria or None)
    click.echo(f"invalidated {removed} entries")


def _store(data_dir: Path | None, redis_url: str | None):
    """The cache's store, opened without the embedder (invalidation needs no vectors)."""
    if redis_url is not None:
        from ..cache.redis import RedisStore

        return RedisStore.from_url(redis_url)
    from ..cache import MemoryStore

    if data_dir is None:
        import platformdirs

        data_dir = Path(platformdirs.user_cache_dir("semroute"))
    return MemoryStore(data_dir, max_entries=2**62)
