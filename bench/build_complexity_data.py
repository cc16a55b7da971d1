"""Build the complexity router's labelled data: ``data/complexity_train.csv`` and ``..._heldout.csv``.

Combines the questions we wrote ourselves (``data/complexity_written.csv``, English and Turkish;
and ``data/complexity_ask.csv``, chatty-but-simple and terse-but-complex prompts, all in the train
split) with attributed rows from the public sets in ``../shared/data`` (see ``data/README.md`` for
sources, licences and the label definition). The split is fixed by a hash of the prompt, so it
does not depend on row order and a re-run reproduces the same files byte for byte. No prompt of
the hard set (``data/complexity_hard.csv``) may enter any output: the script stops if one would.

Also writes ``data/complexity_routing.csv``: the *train part* of RouteLLM's GSM8K and MMLU labels
(``bench/routellm_split.py``), labelled complex where the weak model was wrong and the strong one
right, simple otherwise, for the classifier's routing head. GSM8K prompts used as ``complex``
examples are drawn from that train part too, so the held-out part that
``bench/router_quality.py`` evaluates on is never seen in training.

This is a data-preparation script, not a benchmark; it lives here because it reads
``../shared/data``, which the package itself must never do.

Run from the repository root: ``python bench/build_complexity_data.py``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
OUT = ROOT / "data"
SEED = 20261126
HELDOUT_PERCENT = 20

sys.path.insert(0, str(ROOT / "bench"))
import routellm_split

# How many rows to take from each public source; kept modest so our own questions weigh in.
QUOTAS = {
    "nq_open_dev": 450,
    "banking77": 120,
    "clinc150": 120,
    "covid_faq": 80,
    "xsid_en": 50,
    "xsid_tr": 50,
    "tqp": 50,
    "gsm8k": 450,
    "mt_bench": 80,
}


def _sample(items: list[str], n: int, rng: random.Random) -> list[str]:
    unique = sorted({s.strip() for s in items if s.strip()})
    return rng.sample(unique, min(n, len(unique)))


def _conll_texts(path: Path) -> list[str]:
    return [line[len("# text = ") :] for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("# text = ")]


def public_rows(rng: random.Random) -> list[tuple[str, str, str, str]]:
    """(prompt, label, lang, source) rows from ../shared/data, sampled with a fixed seed."""
    nq = [json.loads(line)["question"] + "?" for line in (SHARED / "nq_open_dev/NQ-open.dev.jsonl").open(encoding="utf-8")]
    with (SHARED / "banking77/train.csv").open(encoding="utf-8", newline="") as f:
        banking = [r["text"] for r in csv.DictReader(f)]
    clinc = [text for text, _intent in json.loads((SHARED / "clinc150/data_full.json").read_text(encoding="utf-8"))["train"]]
    with (SHARED / "deepset_covid_faq_similarity/faq_covidbert.csv").open(encoding="utf-8", newline="") as f:
        covid = [r["question"] for r in csv.DictReader(f) if r.get("lang", "en") == "en"]
    with (SHARED / "tqp_turkish_question_paraphrase/tqp_dev.csv").open(encoding="utf-8", newline="") as f:
        tqp = [r["input"] for r in csv.DictReader(f)]
    # Only the RouteLLM train part: router_quality.py evaluates on the other part.
    gsm8k = [r["prompt"] for r in routellm_split.split()[0] if r["source"] == "gsm8k"]
    mt_bench = [
        row["turns"][0]
        for row in map(json.loads, (SHARED / "routellm_labels/routellm_mtbench_scores.jsonl").open(encoding="utf-8"))
        if row["turn"] == 1
    ]
    sources = [
        ("nq_open_dev", nq, "simple", "en"),
        ("banking77", banking, "simple", "en"),
        ("clinc150", clinc, "simple", "en"),
        ("covid_faq", covid, "simple", "en"),
        ("xsid_en", _conll_texts(SHARED / "xsid_en_tr/en.valid.conll"), "simple", "en"),
        ("xsid_tr", _conll_texts(SHARED / "xsid_en_tr/tr.valid.conll"), "simple", "tr"),
        ("tqp", tqp, "simple", "tr"),
        ("gsm8k", gsm8k, "complex", "en"),
        ("mt_bench", mt_bench, "complex", "en"),
    ]
    rows = []
    for name, items, label, lang in sources:
        rows += [(p, label, lang, name) for p in _sample(items, QUOTAS[name], rng)]
    return rows


def ask_rows() -> list[tuple[str, str, str, str]]:
    """``complexity_ask.csv``: our prompts whose length points the wrong way, for training only."""
    with (OUT / "complexity_ask.csv").open(encoding="utf-8", newline="") as f:
        return [(r["prompt"], r["label"], r["lang"], "written_ask") for r in csv.DictReader(f)]


def hard_set() -> set[str]:
    """Case-folded prompts of the hard set, which no output file may contain."""
    with (OUT / "complexity_hard.csv").open(encoding="utf-8", newline="") as f:
        return {r["prompt"].strip().casefold() for r in csv.DictReader(f)}


def written_rows() -> list[tuple[str, str, str, str]]:
    with (OUT / "complexity_written.csv").open(encoding="utf-8", newline="") as f:
        return [(r["prompt"], r["label"], r["lang"], "written") for r in csv.DictReader(f)]


def is_heldout(prompt: str) -> bool:
    """Fixed split by content hash: independent of row order and of the other rows."""
    digest = hashlib.sha256(prompt.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") % 100 < HELDOUT_PERCENT


def routing_rows(exclude: set[str]) -> list[tuple[str, str, str, str]]:
    """RouteLLM train-part rows labelled for the routing head; prompts in ``exclude`` are left out.

    complex = weak wrong and strong right (``needs_strong``); simple = weak right, or both wrong
    (a larger model does not help there, so paying for it is wasted).
    """
    rows = []
    for r in routellm_split.split()[0]:
        if r["prompt"].casefold() not in exclude:
            label = "complex" if r["needs_strong"] == "1" else "simple"
            rows.append((r["prompt"], label, "en", f"routellm_{r['source']}"))
    return rows


def write(path: Path, rows: list[tuple[str, str, str, str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["prompt", "label", "lang", "source"])
        writer.writerows(sorted(rows, key=lambda r: (r[3], r[1], r[0])))
    counts: dict[str, int] = {}
    for r in rows:
        counts[f"{r[3]}/{r[1]}"] = counts.get(f"{r[3]}/{r[1]}", 0) + 1
    print(f"{path.relative_to(ROOT)}: {len(rows)} rows {dict(sorted(counts.items()))}")


def main() -> None:
    rng = random.Random(SEED)
    rows, seen = [], set()
    for row in written_rows() + public_rows(rng):
        key = row[0].casefold()
        if key not in seen:  # the same prompt must never sit in both splits
            seen.add(key)
            rows.append(row)
    splits = {"train": [r for r in rows if not is_heldout(r[0])], "heldout": [r for r in rows if is_heldout(r[0])]}
    # The ask rows all train: the hard set (written apart, other wording and topics) is their test,
    # and leaving them out of the held-out file keeps its metrics comparable with earlier cards.
    splits["train"] += [r for r in ask_rows() if r[0].casefold() not in seen]
    hard = hard_set()
    leaked = [r[0] for split in splits.values() for r in split if r[0].strip().casefold() in hard]
    if leaked:
        raise SystemExit(f"hard-set prompts would enter the training data: {leaked[:3]}")
    for name, split in splits.items():
        write(OUT / f"complexity_{name}.csv", split)
    # Rows of our held-out file stay out of the routing head too, so the card's metrics stay clean.
    write(OUT / "complexity_routing.csv", routing_rows({r[0].casefold() for r in splits["heldout"]}))


if __name__ == "__main__":
    main()
