"""Readers for the public datasets the verifier and consensus are trained and measured on.

``SharedData(root)`` reads the folders of ``../shared/data`` (banking77, clinc150, the COVID FAQ,
TQP, xSID, STSb-TR) from ``root`` and returns plain lists; nothing is copied into the repository.
Also here: grouping TQP's paraphrase pairs into groups, and the project's own traffic FAQ set
(``data/traffic_faq.csv`` + ``data/traffic_paraphrases.csv``). Not here: turning rows into
training pairs (``semroute.training.pair_data``).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SharedData", "TrafficSet", "groups", "traffic_set"]


def _rows(path: Path, delimiter: str = ",") -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter=delimiter))


@dataclass(frozen=True)
class SharedData:
    """The datasets under ``root`` (``../shared/data`` from the repository root)."""

    root: Path

    def banking77(self, split: str) -> list[tuple[str, str]]:
        """(text, intent) rows of banking77's ``train`` or ``test`` split."""
        return [(r["text"], r["category"]) for r in _rows(self.root / "banking77" / f"{split}.csv")]

    def clinc150(self, split: str) -> list[tuple[str, str]]:
        """(text, intent) rows of a clinc150 split (``train``, ``val``, ``test``, ``oos_test``, ...)."""
        with open(self.root / "clinc150" / "data_full.json", encoding="utf-8") as fh:
            return [(t, i) for t, i in json.load(fh)[split]]

    def covid_faq(self) -> list[tuple[str, str]]:
        """(question, answer) items of the deepset COVID FAQ."""
        return [(r["question"], r["answer"]) for r in _rows(self.root / "deepset_covid_faq_similarity" / "faq_covidbert.csv")]

    def covid_pairs(self) -> list[tuple[str, str, int]]:
        """(faq question, rewording, similar) labelled pairs."""
        path = self.root / "deepset_covid_faq_similarity" / "eval_question_similarity_en.csv"
        return [(r["question_1"], r["question_2"], int(r["similar"])) for r in _rows(path)]

    def tqp_pairs(self, split: str) -> list[tuple[str, str]]:
        """Turkish paraphrase pairs (positives only) of tqp's ``train`` or ``dev`` split."""
        return [(r["input"], r["target"]) for r in _rows(self.root / "tqp_turkish_question_paraphrase" / f"tqp_{split}.csv")]

    def stsb_tr(self, split: str) -> list[tuple[str, str, float]]:
        """(sentence1, sentence2, 0-5 score) rows of STSb-TR's ``train``, ``dev`` or ``test`` split."""
        out = []
        with open(self.root / "stsb_tr" / f"stsb_tr_{split}.tsv", encoding="utf-8") as fh:
            for line in fh:
                parts = line.rstrip("\n").split("\t")
                if len(parts) >= 7:
                    try:
                        out.append((parts[5], parts[6], float(parts[4])))
                    except ValueError:  # the header row
                        continue
        return out

    def xsid(self, lang: str, split: str) -> list[dict[str, object]]:
        """xSID sentences: dicts with id, text, intent and slots [(type, start, end)] over ``tokens``.

        The Turkish files number their sentences (``# id``); the English files do not, but list the
        same sentences in the same order, so a sentence without an id gets its position (from 1):
        the English and Turkish sentences of one id are translations of each other."""
        out: list[dict[str, object]] = []
        block: dict[str, object] = {}
        with open(self.root / "xsid_en_tr" / f"{lang}.{split}.conll", encoding="utf-8") as fh:
            for line in list(fh) + [""]:
                line = line.rstrip("\n")
                if not line.strip():
                    if block.get("tokens"):
                        block.setdefault("id", str(len(out) + 1))
                        out.append(block)
                    block = {}
                elif line.startswith("# id ="):
                    block = {"id": line.split("=", 1)[1].strip(), "tokens": [], "tags": []}
                elif line.startswith(("# text =", "# text:")):
                    block.setdefault("tokens", [])
                    block.setdefault("tags", [])
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


def groups(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """Each text of paraphrase ``pairs`` -> one representative of its group (union-find)."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        parent[find(a)] = find(b)
    return {t: find(t) for t in parent}


@dataclass(frozen=True)
class TrafficSet:
    """The traffic FAQ and its labelled rewordings, split for tuning and for reporting.

    ``faq``: (question, answer, lang); ``queries``: (text, FAQ question or None for a near miss,
    lang, split) with split ``tune`` (may be trained and tuned on) or ``test`` (reported only).
    """

    faq: list[tuple[str, str, str]]
    queries: list[tuple[str, str | None, str, str]]

    def split(self, name: str) -> list[tuple[str, str | None]]:
        return [(t, q) for t, q, _, s in self.queries if s == name]


def traffic_set(data_dir: Path) -> TrafficSet:
    """``traffic_faq.csv`` and ``traffic_paraphrases.csv`` from the project's ``data/`` folder."""
    faq = [(r["question"], r["answer"], r["lang"]) for r in _rows(data_dir / "traffic_faq.csv")]
    known = {q for q, _, _ in faq}
    queries = []
    for r in _rows(data_dir / "traffic_paraphrases.csv"):
        target = r["faq_question"].strip() or None
        if target is not None and target not in known:
            raise ValueError(f"traffic_paraphrases.csv names an FAQ question not in traffic_faq.csv: {target!r}")
        queries.append((r["query"], target, r["lang"], r["split"]))
    return TrafficSet(faq, queries)
