"""CLI commands for the complexity router: ``train-router`` and ``eval-router``.

Both read a labelled CSV (``prompt,label``; label ``simple|complex`` or ``0|1``; optional
``lang``/``source``/``kind`` columns are reported per group). Files are read here, the only place
that reads them; training and measuring live in ``semroute.training.complexity``. Training never
fits a prompt of the shipped hard set (``data/complexity_hard.csv``): it measures generalisation.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import click

from . import main, typed_errors
from .files import read_rows

__all__ = ["HARD_SET", "eval_router", "train_router"]

HARD_SET = "complexity_hard.csv"


def _read_labelled(path: Path):
    from ..training.complexity import labelled_set

    rows = read_rows(path, required=("prompt", "label"))
    try:
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:  # read_rows already succeeded, so this is a race; the hash is informative only
        sha = ""
    return labelled_set(rows, name=path.name, sha256=sha)


def _hard_set_prompts() -> list[str]:
    """Prompts of the shipped hard set, which training must never see (empty if not shipped)."""
    from ..artifacts import shipped

    path = shipped("data", HARD_SET)
    return [r["prompt"] for r in read_rows(path, required=("prompt",))] if path.is_file() else []


def _embedder(name: str | None):
    from ..embed import make_embedder

    return make_embedder(name)


@main.command("train-router")
@click.argument("labels", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory to write model.npz and card.json into.")
@click.option("--heldout", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Labelled CSV measured for the card (never used for fitting).")
@click.option("--target-share", type=float, default=None,
              help="Calibrate the threshold so this share of reference traffic goes to the large tier.")
@click.option("--reference", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="CSV with a prompt column: the traffic sample for --target-share (default: training prompts).")
@click.option("--target-recall", type=float, default=None,
              help="Calibrate the threshold to catch this share of complex prompts.")
@click.option("--threshold", type=float, default=0.5, show_default=True, help="Fixed threshold if not calibrated.")
@click.option("--routing", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Labelled CSV for the routing head: complex/1 = only the large model answered well.")
@click.option("--C", "c_value", type=float, default=1.0, show_default=True, help="Inverse L2 regularisation.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--embedder", "embedder_name", default=None,
              help="Built-in embedder (all-MiniLM-L6-v2, multilingual-e5-small, use-multilingual-v3) or a "
                   "sentence-transformers model name or path (default: the default embedder).")
@typed_errors
def train_router(labels: Path, out_dir: Path, heldout: Path | None, target_share: float | None,
                 reference: Path | None, target_recall: float | None, threshold: float, routing: Path | None,
                 c_value: float, seed: int, embedder_name: str | None) -> None:
    """Train the complexity classifier on LABELS (CSV prompt,label) and write an artifact."""
    from ..training.complexity import ThresholdRule, train
    from ..errors import ConfigError

    if target_share is not None and target_recall is not None:
        raise ConfigError("choose one of --target-share and --target-recall")
    rule = (ThresholdRule("share", target_share) if target_share is not None
            else ThresholdRule("recall", target_recall) if target_recall is not None
            else ThresholdRule("fixed", threshold))
    data = _read_labelled(labels)
    held = _read_labelled(heldout) if heldout is not None else None
    routed = _read_labelled(routing) if routing is not None else None
    ref = None
    if reference is not None:
        ref = ([r["prompt"] for r in read_rows(reference, required=("prompt",))], reference.name)
    click.echo(f"read {len(data.prompts)} rows from {labels} {data.counts()}", err=True)
    clf, card = train(data, embedder=_embedder(embedder_name), heldout=held, rule=rule, reference=ref,
                      routing=routed, C=c_value, seed=seed, keep_out=_hard_set_prompts(),
                      progress=lambda msg: click.echo(msg, err=True))
    clf.save(out_dir, card)
    click.echo(f"wrote {out_dir / 'model.npz'} and {out_dir / 'card.json'} (threshold {clf.threshold:.4f})")


@main.command("eval-router")
@click.argument("labels", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--model", "model_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Artifact directory (default: the shipped model).")
@click.option("--threshold", type=float, default=None, help="Override the artifact's threshold.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@click.option("--embedder", "embedder_name", default=None,
              help="Built-in embedder name or a sentence-transformers model name or path (default: the default embedder).")
@typed_errors
def eval_router(labels: Path, model_dir: Path | None, threshold: float | None, as_json: bool,
                embedder_name: str | None) -> None:
    """Measure a complexity classifier on LABELS (CSV prompt,label)."""
    from ..routing.classify import LogisticComplexityClassifier
    from ..training.complexity import evaluate

    data = _read_labelled(labels)
    embedder = _embedder(embedder_name)
    clf = LogisticComplexityClassifier.load(model_dir, embedder_name=embedder.name)
    if threshold is not None:
        clf.threshold = threshold
    result = evaluate(clf, embedder.embed(list(data.prompts)), data)
    if as_json:
        click.echo(json.dumps({"file": str(labels), **result.as_dict()}, ensure_ascii=False))
        return
    _print_evaluation(labels, result)


def _print_evaluation(labels: Path, result) -> None:
    (tn, fp), (fn, tp) = result.confusion
    auc = "n/a (one class)" if result.roc_auc is None else f"{result.roc_auc:.4f}"
    click.echo(f"{labels}: {result.n} prompts, threshold {result.threshold:.4f}")
    click.echo(f"accuracy        {result.accuracy:.4f}")
    click.echo(f"ROC AUC         {auc}")
    for cls in ("simple", "complex"):
        click.echo(f"{cls:<8} precision {result.precision[cls]:.4f}  recall {result.recall[cls]:.4f}")
    click.echo("confusion       predicted simple  predicted complex")
    click.echo(f"  true simple   {tn:>16}  {fp:>17}")
    click.echo(f"  true complex  {fn:>16}  {tp:>17}")
    click.echo(f"routed to large {result.large_share:.1%}")
    for group, values in result.by_group.items():
        parts = ", ".join(f"{k} {v['accuracy']:.3f} (n={v['n']})" for k, v in values.items())
        click.echo(f"accuracy by {group}: {parts}")
