"""What ``semroute warm`` shows: the pre-model checks, a progress bar and the final report.

The bar is tqdm's (rows, rate and ETA on stderr; hidden when stderr is not a terminal, e.g.
under cron). The report's last stdout line keeps the form scripts grep for:
``stored N entries in namespace 'ns'``; details and conflicts go to stderr, or the whole
report as JSON with ``--json`` / ``--report FILE``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from ..errors import ConfigError
from ..warming import BadRow, WarmReport, WarmRow
from .faq import check_conflicts

__all__ = ["check_rows", "progress_bar", "echo_report"]

_SHOWN = 20  # conflicts and bad rows listed on stderr; the JSON report has all of them


def check_rows(rows: Sequence[WarmRow], bad: Sequence[BadRow]) -> None:
    """Refuse the files (before the model loads) on a bad row or an exact conflict."""
    if bad:
        more = f" (and {len(bad) - 1} more bad row(s); --skip-bad stores the rest)" if len(bad) > 1 else ""
        raise ConfigError(bad[0].reason + more)
    check_conflicts(rows)


def progress_bar(total: int) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="row", desc="warming", file=sys.stderr, disable=None, dynamic_ncols=True)


def echo_report(report: WarmReport, *, namespace: str, as_json: bool, path: Path | None) -> None:
    data = report.as_dict()
    if path is not None:
        path.write_text(json.dumps(data, ensure_ascii=False, indent=1, default=str) + "\n", encoding="utf-8")
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False, default=str))
        return
    if report.duplicates:
        click.echo(f"skipped {report.duplicates} row(s) repeating an earlier question with the same answer", err=True)
    for conflict in report.conflicts[:_SHOWN]:
        click.echo(f"conflict: {conflict.where} ({conflict.question[:60]!r}) has another answer than {conflict.other} "
                   f"({conflict.other_question[:60]!r}, similarity {conflict.similarity:.3f}); not stored", err=True)
    for row in report.bad[:_SHOWN]:
        click.echo(f"bad row: {row.reason}", err=True)
    hidden = max(0, len(report.conflicts) - _SHOWN) + max(0, len(report.bad) - _SHOWN)
    if hidden:
        click.echo(f"... and {hidden} more (--report FILE lists them all)", err=True)
    rate = report.stored / report.seconds if report.seconds > 0 else 0.0
    click.echo(f"added {report.added}, updated {report.updated}, skipped {report.skipped} (already stored "
               f"{report.already_stored}, repeats {report.duplicates}, near-duplicates {report.near_duplicates}, "
               f"conflicts {len(report.conflicts)}, bad rows {len(report.bad)}) in {report.seconds:.1f} s "
               f"({rate:.0f} rows/s)", err=True)
    click.echo(f"stored {report.stored} entries in namespace {namespace!r}")
