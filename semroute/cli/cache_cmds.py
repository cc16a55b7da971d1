"""CLI commands around the cache: ``ask``, ``warm`` and ``demo``.

Common options: ``--config`` (a TOML file, see ``semroute.config``), ``--data-dir`` (where the
cache persists), ``--namespace`` and ``--ollama-url``; given options override the file.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import click

from . import main, typed_errors
from .files import read_numbered_rows

__all__ = ["ask", "warm", "demo"]


def common_options(fn: Callable[..., None]) -> Callable[..., None]:
    """``--config``, ``--data-dir``, ``--namespace`` and ``--ollama-url``, plus typed errors as messages."""
    wrapped = typed_errors(fn)
    for option in (
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


def router_kwargs(config: Path | None, data_dir: Path | None, namespace: str | None,
                  ollama_url: str | None) -> dict[str, object]:
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
    return kwargs


def _router(config: Path | None, data_dir: Path | None, namespace: str | None, ollama_url: str | None):
    from ..router import Router

    return Router(**router_kwargs(config, data_dir, namespace, ollama_url))  # type: ignore[arg-type]


@main.command()
@click.argument("question")
@click.option("--json", "as_json", is_flag=True, help="Print the answer and its provenance as JSON.")
@click.option("--tier", type=click.Choice(["small", "large"]), default=None, help="Skip the classifier.")
@click.option("--system", default=None, help="System prompt (part of the cache key).")
@common_options
def ask(question: str, as_json: bool, tier: str | None, system: str | None, config: Path | None,
        data_dir: Path | None, namespace: str | None, ollama_url: str | None) -> None:
    """Answer QUESTION from the cache or the model tier the classifier picks."""
    with _router(config, data_dir, namespace, ollama_url) as router:
        answer = router.ask(question, tier=tier, system=system)
    if as_json:
        click.echo(json.dumps(answer.as_dict(), ensure_ascii=False))
        return
    click.echo(answer.text)
    similarity = "" if answer.similarity is None else f" similarity={answer.similarity:.3f}"
    where = f" model={answer.model} instance={answer.instance}" if answer.instance else ""
    click.echo(f"-- {answer.source}{similarity}{where} {answer.latency_ms:.1f} ms", err=True)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(1, 4096))
@click.option("--system", default=None, help="System prompt the answers were written for.")
@click.option("--ttl", "ttl_s", type=click.FloatRange(0, None, min_open=True), default=None,
              help="Seconds these entries live (default: forever, or the cache's default TTL).")
@common_options
def warm(file: Path, batch_size: int, system: str | None, ttl_s: float | None, config: Path | None,
         data_dir: Path | None, namespace: str | None, ollama_url: str | None) -> None:
    """Store question/answer pairs from FILE (CSV or JSONL with question and answer columns).

    Every row is checked before the embedding model loads: an over-long question or the same
    question with two different answers is an error naming the file and rows.
    """
    from .faq import checked_pairs

    rows = read_numbered_rows(file, ("question", "answer"))
    with _router(config, data_dir, namespace, ollama_url) as router:
        pairs, repeated = checked_pairs(file, rows, max_chars=router.settings.max_question_chars)
        if repeated:
            click.echo(f"{file}: skipped {repeated} row(s) repeating an earlier question with the same answer", err=True)
        with click.progressbar(length=len(pairs), label="warming", file=sys.stderr) as bar:
            stored = router.warm(pairs, batch_size=batch_size, progress=bar.update, system=system, ttl_s=ttl_s)
        click.echo(f"stored {stored} entries in namespace {router.pipeline.namespace!r}")


@main.command()
@click.option("--faq", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="FAQ to warm the cache with (default: the traffic-rules FAQ shipped with semroute).")
@click.option("--queries", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Questions to replay (default: the shipped demo list).")
@click.option("--json", "as_json", is_flag=True, help="Print the per-question results and summary as JSON.")
@common_options
def demo(faq: Path | None, queries: Path | None, as_json: bool, config: Path | None,
         data_dir: Path | None, namespace: str | None, ollama_url: str | None) -> None:
    """Warm a cache from an FAQ, replay questions and print each decision and a summary."""
    from .demo import run_demo

    run_demo(faq=faq, queries=queries, data_dir=data_dir, namespace=namespace or "default", ollama_url=ollama_url,
             as_json=as_json, echo=click.echo, config=config)
