"""Loaders for the public datasets in ``../shared/data`` (relative to the repository root).

Thin functions over ``semroute.training.sources.SharedData`` for the bench scripts. Each loader
returns plain lists; nothing is copied into the repository.
"""

from __future__ import annotations

from pathlib import Path

from semroute.training.sources import SharedData

__all__ = ["DATA", "banking77", "clinc150", "covid_faq", "covid_pairs", "first_per_intent", "stsb_tr", "tqp_pairs",
           "xsid"]

DATA = Path(__file__).resolve().parent.parent / ".." / "shared" / "data"
_DATA = SharedData(DATA)

banking77 = _DATA.banking77
clinc150 = _DATA.clinc150
covid_faq = _DATA.covid_faq
covid_pairs = _DATA.covid_pairs
tqp_pairs = _DATA.tqp_pairs
stsb_tr = _DATA.stsb_tr
xsid = _DATA.xsid


def first_per_intent(rows: list[tuple[str, str]], n: int) -> list[tuple[str, str]]:
    """The first ``n`` (text, intent) rows of every intent, intents in order of first appearance."""
    per: dict[str, list[str]] = {}
    for text, intent in rows:
        per.setdefault(intent, []).append(text)
    return [(t, i) for i, ts in per.items() for t in ts[:n]]
