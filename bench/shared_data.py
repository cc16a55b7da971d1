"""Loaders for the public datasets in ``../shared/data`` (relative to the repository root).

Used by the verifier's training script and by ``bench/cache_quality.py``. Each loader returns
plain lists; nothing is copied into the repository.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

__all__ = ["DATA", "banking77", "clinc150", "covid_faq", "covid_pairs", "first_per_intent", "tqp_pairs", "xsid"]

DATA = Path(__file__).resolve().parent.parent / ".." / "shared" / "data"


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def banking77(split: str) -> list[tuple[str, str]]:
    """(text, intent) rows of banking77's ``train`` or ``test`` split."""
    return [(r["text"], r["category"]) for r in _rows(DATA / "banking77" / f"{split}.csv")]


def clinc150(split: str) -> list[tuple[str, str]]:
    """(text, intent) rows of a clinc150 split (``train``, ``val``, ``test``, ``oos_test``, ...)."""
    with open(DATA / "clinc150" / "data_full.json", encoding="utf-8") as fh:
        return [(t, i) for t, i in json.load(fh)[split]]


def first_per_intent(rows: list[tuple[str, str]], n: int) -> list[tuple[str, str]]:
    """The first ``n`` (text, intent) rows of every intent, intents in order of first appearance."""
    per: dict[str, list[str]] = {}
    for text, intent in rows:
        per.setdefault(intent, []).append(text)
    return [(t, i) for i, ts in per.items() for t in ts[:n]]


def covid_faq() -> list[tuple[str, str]]:
    """(question, answer) items of the deepset COVID FAQ."""
    return [(r["question"], r["answer"]) for r in _rows(DATA / "deepset_covid_faq_similarity" / "faq_covidbert.csv")]


def covid_pairs() -> list[tuple[str, str, int]]:
    """(faq question, rewording, similar) labelled pairs."""
    path = DATA / "deepset_covid_faq_similarity" / "eval_question_similarity_en.csv"
    return [(r["question_1"], r["question_2"], int(r["similar"])) for r in _rows(path)]


def tqp_pairs(split: str) -> list[tuple[str, str]]:
    """Turkish paraphrase pairs (positives only) of tqp's ``train`` or ``dev`` split."""
    return [(r["input"], r["target"]) for r in _rows(DATA / "tqp_turkish_question_paraphrase" / f"tqp_{split}.csv")]


def xsid(lang: str, split: str) -> list[dict[str, object]]:
    """xSID sentences: dicts with id, text, intent and slots [(type, start, end)] over ``tokens``."""
    out: list[dict[str, object]] = []
    block: dict[str, object] = {}
    with open(DATA / "xsid_en_tr" / f"{lang}.{split}.conll", encoding="utf-8") as fh:
        for line in list(fh) + [""]:
            line = line.rstrip("\n")
            if not line.strip():
                if block.get("tokens"):
                    out.append(block)
                block = {}
            elif line.startswith("# id ="):
                block = {"id": line.split("=", 1)[1].strip(), "tokens": [], "tags": []}
            elif line.startswith(("# text =", "# text:")):
                block["text"] = line.split("=", 1)[1].strip() if "=" in line else line.split(":", 1)[1].strip()
            elif line.startswith("# intent"):
                block["intent"] = line.split("=", 1)[1].strip()
            elif not line.startswith("#") and "\t" in line and "tokens" in block:
                parts = line.split("\t")
                block["tokens"].append(parts[1])  # type: ignore[union-attr]
                block["tags"].append(parts[-1])  # type: ignore[union-attr]
    for b in out:
        b["slots"] = _spans(b["tags"])  # type: ignore[arg-type]
    return out


def _spans(tags: list[str]) -> list[tuple[str, int, int]]:
    spans, start, kind = [], None, None
    for i, tag in enumerate(tags + ["O"]):
        if tag.startswith("B-") or tag == "O" or (tag.startswith("I-") and tag[2:] != kind):
            if start is not None:
                spans.append((kind, start, i))
            start, kind = (i, tag[2:]) if tag[:2] in ("B-", "I-") else (None, None)
    return spans
