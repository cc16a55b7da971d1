"""The fixed train / held-out split of RouteLLM's label rows, and a cache of their embeddings.

RouteLLM itself trains its routers partly on "golden" benchmark labels (MMLU's validation split)
and evaluates on the rest. We do the same with ``../shared/data/routellm_labels``: the
uncontaminated GSM8K and MMLU rows are split by a salted SHA-256 of the prompt into a train part
(which ``bench/build_complexity_data.py`` may add to the classifier's training data) and a
held-out part (the only rows ``bench/router_quality.py`` evaluates on). The split depends only on
the prompt text, so it is stable across runs, row orders and file versions, and a prompt that
occurs twice always lands on one side.

Not here: turning the rows into training labels (``build_complexity_data``) or scoring routers
(``router_quality``). The embedding cache lives in ``bench/results/`` (git-ignored); it only saves
time and never changes a result.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
LABELS = ROOT.parent / "shared" / "data" / "routellm_labels"
RESULTS = ROOT / "bench" / "results"
HELDOUT_PERCENT = 50
# A salt keeps this split independent of the 20% split of data/complexity_*.csv (also by SHA-256).
_SALT = b"semroute/routellm-split/1:"


def load_clean() -> tuple[list[dict[str, str]], dict[str, int]]:
    """Uncontaminated GSM8K + MMLU rows (prompt stripped), with counts of what was dropped."""
    with (LABELS / "routellm_gsm8k_labels.csv").open(encoding="utf-8", newline="") as f:
        gsm8k = list(csv.DictReader(f))
    with gzip.open(LABELS / "routellm_mmlu_labels.csv.gz", "rt", encoding="utf-8", newline="") as f:
        mmlu = list(csv.DictReader(f))
    clean = [{**r, "prompt": r["prompt"].strip()} for r in gsm8k + mmlu if r["contaminated"] == "0"]
    stats = {"gsm8k_rows": len(gsm8k), "mmlu_rows": len(mmlu), "dropped_contaminated": len(gsm8k) + len(mmlu) - len(clean)}
    return clean, stats


def is_heldout(prompt: str) -> bool:
    """True for the evaluation half: salted SHA-256 of the stripped prompt, first 4 bytes mod 100."""
    digest = hashlib.sha256(_SALT + prompt.strip().encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") % 100 < HELDOUT_PERCENT


def split() -> tuple[list[dict[str, str]], list[dict[str, str]], dict[str, int]]:
    """(train rows, held-out rows, stats) of the uncontaminated RouteLLM rows."""
    rows, stats = load_clean()
    train = [r for r in rows if not is_heldout(r["prompt"])]
    held = [r for r in rows if is_heldout(r["prompt"])]
    for name, part in (("train", train), ("heldout", held)):
        for source in ("gsm8k", "mmlu"):
            stats[f"{name}_{source}"] = sum(r["source"] == source for r in part)
    return train, held, stats


def embed_cached(prompts: Sequence[str], embedder, cache: Path | None = None) -> np.ndarray:
    """Embed prompts, reusing vectors cached by (embedder name, SHA-256 of the text)."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in embedder.name)
    path = cache or RESULTS / f"embeddings_{safe}.npz"
    known: dict[str, np.ndarray] = {}
    if path.exists():
        with np.load(path, allow_pickle=False) as npz:
            known = dict(zip(npz["keys"].tolist(), npz["vectors"]))
    keys = [hashlib.sha256(p.encode("utf-8")).hexdigest() for p in prompts]
    missing = sorted({k: p for k, p in zip(keys, prompts) if k not in known}.items())
    if missing:
        vectors = embedder.embed([p for _k, p in missing])
        known.update({k: v for (k, _p), v in zip(missing, vectors)})
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, keys=np.array(list(known)), vectors=np.stack(list(known.values())))
        tmp.replace(path)
    return np.stack([known[k] for k in keys]).astype(np.float32)
