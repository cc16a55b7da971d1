"""``semroute train-verifier`` and ``semroute train-consensus``: the hit models for any embedder.

Both read the public datasets from ``--data`` (default ``../shared/data``, see its README) and the
project's traffic FAQ tuning split from the shipped ``data/``, train with ``semroute.training``
and write ``model.npz`` + ``card.json`` to ``--out`` (default ``models/<embedder name>/<kind>/``
under the current directory). ``--embedder`` is a built-in name (``all-MiniLM-L6-v2``,
``multilingual-e5-small``, ``use-multilingual-v3``) or a sentence-transformers model name or path.
Training needs scikit-learn (and torch for the consensus adapter): the ``dev`` extra.
"""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import ConfigError
from . import main, typed_errors

__all__ = ["train_consensus_cmd", "train_verifier_cmd"]


def _setup(embedder_name: str | None, data: Path | None, cache: Path | None, traffic: bool):
    from ..artifacts import shipped
    from ..embed import make_embedder
    from ..training.embedcache import CachedEmbedder
    from ..training.sources import SharedData, traffic_set

    root = data or Path("..") / "shared" / "data"
    if not (root / "banking77").is_dir():
        raise ConfigError(f"no training data in {root}: pass --data DIR (the shared data folder, see its README)")
    embed = CachedEmbedder(make_embedder(embedder_name), cache)
    return embed, SharedData(root), traffic_set(shipped("data")) if traffic else None


def _write(out: Path, arrays, card) -> None:
    from ..artifacts import write_artifact

    try:
        write_artifact(out, arrays, card)
    except OSError as exc:
        raise ConfigError(f"cannot write {out}: {exc}") from exc


def _sets(names: str | None) -> frozenset[str] | None:
    return None if not names else frozenset(n.strip() for n in names.split(",") if n.strip())


_common = [
    click.option("--embedder", "embedder_name", default=None,
                 help="built-in embedder name or a sentence-transformers model name/path (default: the default embedder)"),
    click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
                 help="output folder (default: models/<embedder name>/<kind>/)"),
    click.option("--data", type=click.Path(file_okay=False, path_type=Path), default=None,
                 help="the shared data folder (default: ../shared/data)"),
    click.option("--no-traffic", is_flag=True, help="leave out the traffic FAQ's tuning split"),
    click.option("--exclude", multiple=True, type=click.Choice(
        ["banking77", "clinc150", "covid_faq", "tqp", "xsid", "traffic", "stsb_tr"]), help="leave a source out (repeatable)"),
    click.option("--scale", type=click.FloatRange(0.01, 1.0), default=1.0, show_default=True,
                 help="share of each sample to use (a slow embedder: 0.3)"),
    click.option("--target-precision", type=click.FloatRange(0.5, 1.0), default=0.97, show_default=True),
    click.option("--tune-on", default=None,
                 help="comma-separated tuning sets the operating point is chosen on (banking77, clinc150, tqp, "
                      "traffic; default: all that are not excluded)"),
    click.option("--embedding-cache", type=click.Path(dir_okay=False, path_type=Path), default=None,
                 help="an .npz of text embeddings reused across runs"),
]


def _with_common(fn):
    for option in reversed(_common):
        fn = option(fn)
    return fn


@main.command("train-verifier")
@_with_common
@click.option("--hidden", default="32,16", show_default=True, help="MLP hidden sizes; empty: logistic regression")
@click.option("--seed", type=int, default=0, show_default=True)
@typed_errors
def train_verifier_cmd(embedder_name, out, data, no_traffic, exclude, scale, target_precision, tune_on,
                       embedding_cache, hidden, seed):
    """Train the pair verifier for an embedder and write it (model + card with held-out metrics)."""
    from ..training.verifier import card_for
    from ..training.verifier_job import train_verifier

    embed, shared, traffic = _setup(embedder_name, data, embedding_cache, not no_traffic)
    try:
        arrays, card = train_verifier(embed, data=shared, traffic=traffic, exclude=frozenset(exclude), scale=scale,
                                      target=target_precision, hidden=tuple(int(h) for h in hidden.split(",") if h),
                                      seed=seed, tune_on=_sets(tune_on), log=click.echo)
    finally:
        embed.save()
    out = out or Path("models") / embed.name / "verifier"
    _write(out, arrays, card_for(arrays, card))
    point = card["operating_point"]
    click.echo(f"min_similarity {card['min_similarity']}, threshold {card['threshold']}, confident {card['confident']}")
    for name, m in point["without_confident"].items():
        click.echo(f"  tuning {name}: precision {m['precision']:.3f} recall {m['recall']:.3f}")
    for name, m in card["metrics"].items():
        click.echo(f"  {name}: P {m['precision']:.3f} R {m['recall']:.3f} (cosine R at same P "
                   f"{m['cosine_recall_at_same_precision']:.3f})")
    click.echo(f"wrote {out}")


@main.command("train-consensus")
@_with_common
@click.option("--verifier", "verifier_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="the pair verifier it votes over (default: models/<embedder name>/verifier/, else the shipped one)")
@click.option("--no-adapter", is_flag=True, help="vote in the embedding's own space")
@click.option("--adapter-sentences", type=click.IntRange(100), default=None,
              help="at most this many intent-labelled sentences for the adapter (a slow embedder: 2000)")
@typed_errors
def train_consensus_cmd(embedder_name, out, data, no_traffic, exclude, scale, target_precision, tune_on,
                        embedding_cache, verifier_dir, no_adapter, adapter_sentences):
    """Train the answer consensus for an embedder over its pair verifier and write it."""
    from ..hits.verify import PairVerifier
    from ..training.consensus import train_consensus

    embed, shared, traffic = _setup(embedder_name, data, embedding_cache, not no_traffic)
    local = verifier_dir or Path("models") / embed.name / "verifier"
    pair = (PairVerifier.load(local, embedder=embed.name, dim=embed.dim) if (local / "card.json").is_file()
            else PairVerifier.default(embedder=embed.name, dim=embed.dim))
    try:
        arrays, card = train_consensus(embed, pair, data=shared, traffic=traffic, exclude=frozenset(exclude),
                                       scale=scale, target=target_precision, adapter=not no_adapter,
                                       adapter_sentences=adapter_sentences, tune_on=_sets(tune_on), log=click.echo)
    finally:
        embed.save()
    out = out or Path("models") / embed.name / "consensus"
    _write(out, arrays, card)
    click.echo(f"threshold {card['threshold']}; wrote {out}")
