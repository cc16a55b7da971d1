"""``semroute eval`` and ``semroute calibrate``: measure and tune the verifier on labelled pairs.

PAIRS files (CSV or JSON Lines) have columns ``query,cached,label`` and optionally ``answer``;
label 1 means the cached question's answer answers the query (must hit), 0 must miss.
``eval --retrieval CACHE QUERIES`` measures a whole cache: CACHE has ``id,question`` (and
optionally ``answer``), QUERIES has ``query,expected`` (an id, or empty when it must miss).
``eval --judge-model MODEL`` also measures the grey-zone judge (``semroute.judge``) against a
real Ollama at ``--ollama-url`` (default ``OLLAMA_HOST`` or localhost).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import click

from ..errors import ConfigError, SemrouteError
from . import main
from .files import read_rows

__all__ = ["calibrate_cmd", "eval_cmd"]


def _pair_rows(path: str):
    from ..training.evaluate import PairRow

    rows = read_rows(path, ("query", "cached", "label"))
    out = []
    for number, row in enumerate(rows, start=2):
        label = str(row["label"]).strip()
        if label not in ("0", "1"):
            raise ConfigError(f"{path}: row {number}: label must be 0 or 1, got {label!r}")
        out.append(PairRow(row["query"], row["cached"], int(label), (row.get("answer") or "").strip()))
    return out


def _verifier(kind: str, model: str | None, min_similarity: float | None, embedder):
    from ..hits.verify import PairVerifier, ThresholdVerifier

    if kind == "cosine":
        return ThresholdVerifier(0.9 if min_similarity is None else min_similarity)
    if model is not None:
        return PairVerifier.load(model, embedder=embedder.name, dim=embedder.dim)
    return PairVerifier.default(embedder=embedder.name, dim=embedder.dim)


def _embedder(name: str | None):
    from ..embed import make_embedder

    return make_embedder(name)


_verifier_options = [
    click.option("--verifier", "kind", type=click.Choice(["pair", "cosine"]), default="pair", show_default=True,
                 help="the trained pair verifier or a plain cosine threshold"),
    click.option("--model", type=click.Path(file_okay=False), default=None,
                 help="a pair-verifier directory (e.g. from calibrate --out); default: the shipped one"),
    click.option("--min-similarity", type=float, default=None, help="cosine threshold for --verifier cosine"),
    click.option("--embedder", default=None, help="multilingual-e5-small, use-multilingual-v3, all-MiniLM-L6-v2 or a sentence-transformers model name or path (default: the default embedder)"),
]


def _with_verifier_options(fn):
    for option in reversed(_verifier_options):
        fn = option(fn)
    return fn


@main.command("eval")
@click.argument("pairs", type=click.Path(dir_okay=False))
@click.argument("queries", type=click.Path(dir_okay=False), required=False)
@click.option("--retrieval", is_flag=True, help="PAIRS is a cache file and QUERIES its labelled queries")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, help="write a precision/recall PNG")
@_with_verifier_options
@click.option("--no-consensus", is_flag=True, help="with --retrieval: the verifier alone, without the answer consensus")
@click.option("--cross-language", is_flag=True,
              help="no language guard: a pair in two languages may hit (as CacheSettings(cross_language=True))")
@click.option("--judge-model", default=None, help="also measure the grey-zone judge with this Ollama model")
@click.option("--ollama-url", default=None, help="the Ollama server for --judge-model (default: OLLAMA_HOST)")
@click.option("--judge-min-similarity", type=click.FloatRange(-1.0, 1.0), default=None,
              help="lowest cosine the judge is asked about (default: JudgeSettings' 0.7)")
@click.option("--judge-timeout", type=click.FloatRange(0.0, min_open=True), default=60.0, show_default=True,
              help="seconds per judge call (the first one may load the model)")
def eval_cmd(pairs, queries, retrieval, as_json, plot, kind, model, min_similarity, embedder, no_consensus,
             cross_language, judge_model, ollama_url, judge_min_similarity, judge_timeout):
    """Precision, recall, F1 and false hits of the verifier on labelled PAIRS, vs cosine only."""
    try:
        if retrieval:
            if judge_model is not None:
                raise ConfigError("--judge-model measures labelled pairs; it is not available with --retrieval")
            from .retrieval import run_retrieval

            run_retrieval(pairs, queries, as_json=as_json, verifier=lambda e: _verifier(kind, model, min_similarity, e),
                          embedder=_embedder(embedder), consensus=not no_consensus, cross_language=cross_language)
            return
        if queries is not None:
            raise ConfigError("a second file is only taken with --retrieval")
        from ..training.evaluate import judge_pairs, report

        rows = _pair_rows(pairs)
        emb = _embedder(embedder)
        verifier = _verifier(kind, model, min_similarity, emb)
        from .retrieval import language_guard

        judged = judge_pairs(rows, emb, verifier, language_guard(cross_language))
        result = report(judged)
        grey = None
        if judge_model is not None:
            grey = _judge_grey(judged, verifier, judge_model, ollama_url, judge_min_similarity, judge_timeout)
        if plot:
            _plot(result, plot)
    except SemrouteError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        out = result.as_dict()
        click.echo(json.dumps(out if grey is None else {**out, "judge": grey.as_dict()}, indent=2, ensure_ascii=False))
    else:
        _print(result)
        if grey is not None:
            _print_judge(grey)


def _judge_grey(judged, verifier, model: str, url: str | None, min_similarity: float | None, timeout: float):
    """The grey-zone judge on the same rows, against a real Ollama (one call per grey row, sequential)."""
    from ..backends import OllamaBackend, Pool, Timeout
    from ..training.evaluate import judge_grey_pairs
    from ..hits.judge import AnswerJudge
    from ..settings import JudgeSettings, default_tiers

    settings = JudgeSettings(timeout_s=timeout) if min_similarity is None else JudgeSettings(
        min_similarity=min_similarity, timeout_s=timeout)
    host = url or default_tiers()["small"].hosts[0]  # OLLAMA_HOST or localhost
    with Pool([OllamaBackend(host, timeout=Timeout(read=timeout))]) as pool:
        judge = AnswerJudge(pool, model, timeout_s=timeout, cache_size=settings.cache_size)
        try:
            return judge_grey_pairs(judged, verifier, judge, settings)
        finally:
            judge.close()


def _print_judge(g) -> None:
    r, w = g.replies, g.with_judge
    click.echo(f"grey-zone judge {g.model} (cosine >= {g.min_similarity:.3f}, pair model >= {g.min_probability:.3f}): "
               f"{g.grey_zone} missed pairs judged, {g.calls} model calls "
               f"(yes {r['yes']}, no {r['no']}, unparsed {r['unparsed']}, errors {r['error']})")
    if g.latency_ms:
        click.echo(f"judge latency p50 {g.latency_ms['p50']:.1f} ms  p95 {g.latency_ms['p95']:.1f} ms")
    click.echo(f"with the judge: precision {w.precision:.3f}  recall {w.recall:.3f}  F1 {w.f1:.3f} "
               f"(hits added {g.added_hits}; false hits {w.fp})")
    for j in w.false_hits:
        if j.reason.startswith("judge "):
            click.echo(f"  judge served {j.row.query!r} with {j.row.cached!r} (cosine {j.similarity:.3f})")


def _print(r) -> None:
    click.echo(f"pairs {r.rows} (must hit {r.positives}, must miss {r.rows - r.positives})")
    click.echo(f"hits {r.tp + r.fp}: correct {r.tp}, false {r.fp}; missed {r.fn}; correct misses {r.tn}")
    if not r.tp + r.fp:  # no hit served: precision is undefined, not perfect
        click.echo(f"precision n/a (no hit served)  recall {r.recall:.3f}  F1 {r.f1:.3f}")
    else:
        click.echo(f"precision {r.precision:.3f}  recall {r.recall:.3f}  F1 {r.f1:.3f}")
    if not r.tp + r.fp:
        click.echo("cosine only at the same precision: n/a")
    elif math.isinf(r.baseline_min_similarity):
        click.echo(f"cosine only: no threshold reaches precision {r.precision:.3f}")
    else:
        click.echo(f"cosine only at the same precision: recall {r.baseline_recall:.3f} "
                   f"(min_similarity {r.baseline_min_similarity:.3f})")
    click.echo("cosine only curve (min_similarity precision recall):")
    for t, p, rec in r.curve[::4]:
        click.echo(f"  {t:.2f} {p:.3f} {rec:.3f}")
    click.echo(f"false hits ({len(r.false_hits)}):")
    for j in r.false_hits:
        click.echo(f"  {j.row.query!r} served {j.row.cached!r} (cosine {j.similarity:.3f}, score {j.score:.3f})")


def _plot(result, path: str) -> None:
    try:
        import matplotlib
    except ImportError as exc:
        raise ConfigError("--plot needs matplotlib, which comes with the plot extra: "
                          "pip install 'semroute[plot]'") from exc

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot([c[2] for c in result.curve], [c[1] for c in result.curve], label="cosine only")
    ax.scatter([result.recall], [result.precision], color="red", zorder=3, label="verifier")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_ylim(0, 1.02)
    ax.legend(loc="lower left")
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=100)
    except OSError as exc:
        raise ConfigError(f"cannot write plot {path}: {exc}") from exc
    finally:
        plt.close(fig)


@main.command("calibrate")
@click.argument("pairs", type=click.Path(dir_okay=False))
@click.argument("queries", type=click.Path(dir_okay=False), required=False)
@click.option("--retrieval", is_flag=True,
              help="PAIRS is a cache file and QUERIES its labelled queries: calibrate the answer consensus's threshold")
@click.option("--target-precision", type=click.FloatRange(0.0, 1.0, min_open=True), required=True)
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="write the calibrated verifier (model + card with the new threshold) here")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@_with_verifier_options
@click.option("--cross-language", is_flag=True,
              help="no language guard: a pair in two languages may be served (as CacheSettings(cross_language=True))")
def calibrate_cmd(pairs, queries, retrieval, target_precision, out, as_json, kind, model, min_similarity, embedder,
                  cross_language):
    """Fit the operating point to reach --target-precision on PAIRS; report the recall there."""
    try:
        if retrieval:
            _calibrate_consensus(pairs, queries, target_precision, out, as_json, kind, model, min_similarity, embedder,
                                 cross_language)
            return
        if queries is not None:
            raise ConfigError("a second file is only taken with --retrieval")
        result = _calibrate(pairs, target_precision, out, kind, model, min_similarity, embedder, cross_language)
    except SemrouteError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    if not result["reached"]:
        click.echo(f"precision {target_precision} is out of reach on these {result['rows']} pairs")
    else:
        gate = "" if result["threshold"] is None else f", pair-model threshold {result['threshold']:.2f}"
        if result.get("confident"):
            gate += (f", confident gate cosine >= {result['confident']['min_similarity']:.2f} "
                     f"at pair model >= {result['confident']['threshold']:.2f}")
        click.echo(f"min_similarity {result['min_similarity']:.4f}{gate}: precision {result['precision']:.3f} "
                   f"recall {result['recall']:.3f} on {result['rows']} pairs")
    if result.get("warning"):
        click.echo(f"WARNING: {result['warning']}")
    if out:
        click.echo(f"wrote {out}")


def _calibrate_consensus(cache, queries, target, out, as_json, kind, model, min_similarity, embedder_name,
                         cross_language: bool) -> None:
    from .retrieval import calibrate_retrieval

    result = calibrate_retrieval(cache, queries, target=target, verifier=lambda e: _verifier(kind, model, min_similarity, e),
                                 embedder=_embedder(embedder_name), cross_language=cross_language)
    if out:
        _write_json(Path(out) / "operating_point.json", result)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    for c in result["curve"]:
        click.echo(f"  consensus threshold {c['threshold']:.2f}: precision {c['precision']:.3f} recall {c['recall']:.3f}")
    if not result["reached"]:
        click.echo(f"precision {target} is out of reach on this cache at any consensus threshold")
    else:
        click.echo(f"consensus_threshold {result['consensus_threshold']:.2f}: precision {result['precision']:.3f} "
                   f"recall {result['recall']:.3f}; set [cache] consensus_threshold = {result['consensus_threshold']}")
    if out:
        click.echo(f"wrote {Path(out) / 'operating_point.json'}")


def _calibrate(pairs, target, out, kind, model, min_similarity, embedder_name, cross_language: bool = False
               ) -> dict[str, object]:
    import numpy as np

    from ..training.verifier import CONFIDENT_GATES, threshold_for_precision
    from .retrieval import language_guard

    rows = _pair_rows(pairs)
    emb = _embedder(embedder_name)
    vq, vc = emb.embed([r.query for r in rows]), emb.embed([r.cached for r in rows])
    sims = np.einsum("ij,ij->i", vq, vc).astype(np.float64)
    labels = np.asarray([r.label for r in rows])
    # A pair the Router's language guard refuses, or the pair model vetoes (score -2), is never
    # served, whatever the cosine floor: the floor is chosen on the other pairs, and a positive
    # among them still counts as recall missed.
    guard = language_guard(cross_language)
    servable = np.asarray([guard is None or guard.mismatch(r.query, r.cached) is None for r in rows], dtype=bool)

    def gate_for(scores: np.ndarray) -> tuple[float, float, float]:
        ok = servable & (scores > -2.0)
        cut, p, r = threshold_for_precision(scores[ok], labels[ok], target)
        return cut, p, r * labels[ok].sum() / max(labels.sum(), 1)

    if kind == "cosine":
        cut, precision, recall = gate_for(sims)
        result = {"min_similarity": None if math.isinf(cut) else cut, "threshold": None}
    else:
        verifier = _verifier(kind, model, min_similarity, emb)
        probs = np.asarray([verifier.probability(r.query, r.cached, float(s)) for r, s in zip(rows, sims)])
        best = (-1.0, math.inf, 0.5, 1.0, None)  # recall, min_similarity, threshold, precision, confident gate
        # For each confident gate (none first) and model threshold, the lowest cosine floor
        # reaching the target; a confident gate must add recall to be chosen.
        for confident in (None, *CONFIDENT_GATES):
            extra = np.zeros(len(rows), bool) if confident is None else (sims >= confident[0]) & (probs >= confident[1])
            for gate in (0.1, 0.3, 0.5, 0.7, 0.9):
                cut, p, r = gate_for(np.where(extra, 2.0, np.where(probs >= gate, sims, -2.0)))
                if not math.isinf(cut) and r > best[0] + 1e-9:
                    best = (r, min(cut, 1.0), gate, p, confident)
        recall, cut, gate, precision, confident = best
        recall = max(recall, 0.0)
        result = {"min_similarity": None if math.isinf(cut) else cut, "threshold": gate,
                  "confident": None if confident is None else {"min_similarity": confident[0], "threshold": confident[1]}}
        if out:
            _write_calibrated(verifier, Path(model) if model else None, Path(out), gate, cut,
                              {**result, "precision": precision, "recall": recall}, pairs)
    result = {"rows": len(rows), "target_precision": target, "verifier": kind, **result,
              "precision": precision, "recall": recall, "reached": result["min_similarity"] is not None}
    result.update(sample_check(served=_served(int(labels.sum()), precision, recall), precision=precision, target=target))
    if out and kind == "cosine":
        _write_json(Path(out) / "operating_point.json", result)
    return result


def _served(positives: int, precision: float, recall: float) -> int:
    """Hits served at the operating point: correct ones (recall x positives) over precision."""
    return round(recall * positives / precision) if precision > 0 else 0


def sample_check(*, served: int, precision: float, target: float) -> dict[str, object]:
    """Whether ``served`` hits can support a claim of ``target`` precision (95% Wilson lower bound).

    With no false hit among n served, the bound stays below 0.97 until n is about 100 (rule of
    three: the false-hit rate can be up to 3/n), so a handful of pairs proves little.
    """
    z = 1.645  # one-sided 95%
    lower = 0.0
    if served:
        centre = precision + z * z / (2 * served)
        spread = z * math.sqrt(precision * (1 - precision) / served + z * z / (4 * served * served))
        lower = (centre - spread) / (1 + z * z / served)
    out: dict[str, object] = {"served": served, "precision_lower_bound_95": round(lower, 4), "warning": None}
    if lower < target:
        need = math.ceil(z * z * target / (1 - target)) if target < 1 else None
        more = f"; about {need} hits served without a false one would support it" if need else ""
        out["warning"] = (f"too few pairs for the precision claimed: {served} hits served, so the measured precision "
                          f"{precision:.3f} is only known to be >= {lower:.3f} (95% lower bound), below the target "
                          f"{target}{more}")
    return out


def _write_calibrated(verifier, source: Path | None, out: Path, gate: float, cut: float, result: dict, pairs: str) -> None:
    from ..artifacts import model_dir

    source = source or model_dir("verifier", verifier.card.get("embedder"))
    try:
        out.mkdir(parents=True, exist_ok=True)
        if source.resolve() != out.resolve():
            shutil.copyfile(source / "model.npz", out / "model.npz")
    except OSError as exc:
        raise ConfigError(f"cannot write {out}: {exc}") from exc
    # An unreachable target stores min_similarity 1.0 (accept only identical questions): JSON has no infinity.
    # The cut is one pair's own similarity; a hair lower keeps that pair accepted when the
    # index (float32 inner products in faiss) recomputes it a few ulps apart.
    card = {**verifier.card, "threshold": gate, "min_similarity": 1.0 if math.isinf(cut) else cut - 1e-6,
            "confident": result["confident"], "calibration": {**result, "pairs_file": Path(pairs).name}}
    _write_json(out / "card.json", card)


def _write_json(path: Path, obj: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc}") from exc
