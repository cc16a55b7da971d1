"""The sentence sets bench/embedders.py compares embedders on (read from ../shared/data and data/).

Each loader returns plain lists; see bench/embedders.py for what is measured on them.
"""

from __future__ import annotations

import csv
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import shared_data as sd  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# The Turkish sets (the e5 prefix ablation runs on these only).
TURKISH = {"tqp_dev", "xsid_tr", "nearmiss_tr", "stsb_tr"}


def tqp_groups(split: str = "dev", pairs: int | None = None) -> list[tuple[str, str]]:
    """(sentence, group) rows: TQP's ``split`` pairs (the first ``pairs`` of them) joined into
    connected components."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    for a, b in sd.tqp_pairs(split)[:pairs]:
        parent[find(a)] = find(b)
    return [(t, find(t)) for t in sorted(parent)]


def xsid_parallel(split: str = "test") -> list[dict[str, str]]:
    """xSID rows {id, en, tr, intent}: each Turkish sentence with the English one it translates
    (``SharedData.xsid`` gives an English sentence the id of its Turkish translation)."""
    en = {s["id"]: s["text"] for s in sd.xsid("en", split)}
    return [{"id": s["id"], "en": en[s["id"]], "tr": s["text"], "intent": s["intent"]}
            for s in sd.xsid("tr", split) if s["id"] in en and "intent" in s]  # type: ignore[index]


def group_sets(quick: bool) -> dict[str, list[tuple[str, str]]]:
    xs = {lang: [(r[lang], r["intent"]) for r in xsid_parallel()] for lang in ("tr", "en")}
    return {
        "tqp_dev": tqp_groups(),
        "xsid_tr": xs["tr"],
        "xsid_en": xs["en"],
        "banking77": sd.first_per_intent(sd.banking77("test"), 3 if quick else 10),
        "clinc150": sd.first_per_intent(sd.clinc150("test"), 2 if quick else 5),
    }


def _tokens(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


def pair_sets() -> dict[str, list[tuple[str, str, int]]]:
    with open(ROOT / "data" / "verifier_nearmiss.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    out = {f"nearmiss_{lang}": [(r["query"], r["cached"], int(r["label"])) for r in rows if r["lang"] == lang]
           for lang in ("en", "tr")}
    with open(sd.DATA / "stsb_tr" / "stsb_tr_test.tsv", encoding="utf-8") as fh:
        sts = list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    high = [(r[5], r[6], 1) for r in sts if float(r[4]) >= 4.5]
    near = [(r[5], r[6], 0) for r in sts if float(r[4]) <= 2.5
            and len(_tokens(r[5]) & _tokens(r[6])) / max(1, len(_tokens(r[5]) | _tokens(r[6]))) >= 0.4]
    out["stsb_tr"] = high + near
    return out


def demo_rows() -> tuple[list[str], list[tuple[str, str | None]]]:
    with open(ROOT / "data" / "traffic_faq.csv", encoding="utf-8") as fh:
        faq = [r["question"] for r in csv.DictReader(fh)]
    with open(ROOT / "data" / "demo_queries.csv", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["expect"] in ("semantic", "miss")]
    return faq, [(r["question"], r["note"].split("'")[1] if r["expect"] == "semantic" else None) for r in rows]
