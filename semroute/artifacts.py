"""Shipped files and trained artifacts: where they live and how one is read.

A trained artifact is a folder of plain arrays (``model.npz``) and a JSON card (no pickle:
sklearn pickles break across versions and run code on load). Shipped artifacts are kept per
embedder, ``models/<embedder name>/<kind>/``, because a model trained on one embedder's vectors
means nothing on another's; every loader refuses a card made for another embedder or dimension.
This module is the one place that locates ``models/`` and ``data/``, and the one artifact reader
and writer.
Not here: what the arrays mean (each model's own module).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import zipfile
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .errors import ModelError, ModelMismatch

__all__ = ["card_embedder", "check_npz", "load_artifact", "model_dir", "shipped", "write_artifact", "DEFAULT_EMBEDDER"]

# The embedder the shipped artifacts without a more specific match were trained on.
DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"
# The most an artifact's arrays may unpack to. The largest shipped one (the MiniLM verifier:
# a 30,522 x 64 float16 word-piece table and its vocabulary) unpacks to about 7 MB; a card or
# an .npz beyond these is refused from its headers before anything is read (a zip bomb).
MAX_ARTIFACT_BYTES = 64 * 2**20
MAX_CARD_BYTES = 2**20


def shipped(kind: Literal["models", "data"], name: str = "") -> Path:
    """Path of a shipped file or folder, e.g. ``shipped("data", "traffic_faq.csv")``.

    In a wheel ``models/`` and ``data/`` are the packages ``semroute.models`` and
    ``semroute.data``; in a source checkout or an editable install they are top-level folders.
    """
    try:
        root = Path(str(resources.files(f"semroute.{kind}")))
    except ModuleNotFoundError:  # editable install: the mapped folder is not importable
        root = Path(__file__).resolve().parent.parent / kind
    if not (root / name).exists():
        source_tree = Path(__file__).resolve().parent.parent / kind
        if (source_tree / name).exists():
            root = source_tree
    return root / name


def model_dir(kind: Literal["verifier", "consensus", "complexity"], embedder: str | None = None) -> Path:
    """The shipped ``kind`` artifact trained on ``embedder`` (default: the MiniLM set).

    ``ModelMismatch`` when none was shipped for that embedder: callers treat it as "no model for
    this embedder" and fall back (counted), or the user trains one.
    """
    path = shipped("models", f"{embedder or DEFAULT_EMBEDDER}/{kind}")
    if not (path / "card.json").is_file():
        known = sorted(p.parent.parent.name for p in shipped("models").glob(f"*/{kind}/card.json"))
        raise ModelMismatch(f"no shipped {kind} model for embedder {embedder or DEFAULT_EMBEDDER!r} "
                            f"(shipped for: {', '.join(known) or 'none'})")
    return path


def card_embedder(card: dict[str, Any]) -> str | None:
    """The embedder name a card records (older cards store ``{"name": ..., "dim": ...}``)."""
    value = card.get("embedder")
    if isinstance(value, dict):
        value = value.get("name")
    return value if isinstance(value, str) else None


def load_artifact(directory: str | os.PathLike[str], what: str, *, embedder: str | None = None,
                  dim: int | None = None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(card, arrays)`` from ``directory``; ``ModelError`` if unreadable, ``ModelMismatch`` if
    the card names another embedder or dimension than the ones given."""
    path = Path(directory)
    try:
        if (path / "card.json").stat().st_size > MAX_CARD_BYTES:
            raise ModelError(f"{what} card in {path} is larger than {MAX_CARD_BYTES} bytes")
        card = json.loads((path / "card.json").read_text(encoding="utf-8"))
        check_npz(path / "model.npz", max_bytes=MAX_ARTIFACT_BYTES)
        with np.load(path / "model.npz", allow_pickle=False) as data:
            arrays = {k: np.array(data[k]) for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ModelError(f"cannot read {what} in {path}: {exc}") from exc
    if not isinstance(card, dict):
        raise ModelError(f"{what} card in {path} is not a JSON object")
    if embedder is not None and card_embedder(card) != embedder:
        raise ModelMismatch(f"{what} in {path} was trained with embedder {card_embedder(card)!r}, not {embedder!r}")
    if dim is not None and card.get("dim") != dim:
        raise ModelMismatch(f"{what} in {path} was trained for dimension {card.get('dim')}, not {dim}")
    return card, arrays


def write_artifact(directory: str | os.PathLike[str], arrays: dict[str, np.ndarray], card: dict[str, Any]) -> Path:
    """Write ``model.npz`` and ``card.json`` into ``directory`` (created if needed); return it.

    Both go to temporary names first and are then renamed, so a crash or a full disk never
    leaves a half-written file where a loader would read it. ``OSError`` passes through.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    tmp_weights, tmp_card = out / "model.npz.tmp", out / "card.json.tmp"
    try:
        with tmp_weights.open("wb") as f:
            np.savez_compressed(f, **arrays)
        tmp_card.write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        tmp_weights.replace(out / "model.npz")
        tmp_card.replace(out / "card.json")
    finally:
        for leftover in (tmp_weights, tmp_card):
            with contextlib.suppress(OSError):  # never hide the error that ended the write
                leftover.unlink(missing_ok=True)
    return out


def check_npz(path: str | os.PathLike[str], *, max_bytes: int) -> None:
    """Refuse an ``.npz`` whose arrays would unpack to more than ``max_bytes`` in all, from the
    zip directory and each array's ``.npy`` header alone (nothing is decompressed beyond them).

    Also refused: members that are not ``.npy`` arrays and object (pickled) dtypes.
    ``ModelError`` names the offending member.
    """
    total = 0
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                raise ModelError(f"{path}: member {info.filename!r} is not an .npy array")
            total += info.file_size  # the uncompressed size the zip directory declares
            if total > max_bytes:
                raise ModelError(f"{path}: arrays unpack to more than {max_bytes} bytes ({info.filename!r})")
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, _fortran, dtype = read_header(member)
            if dtype.hasobject:
                raise ModelError(f"{path}: {info.filename!r} holds Python objects (pickle); refused")
            nbytes = math.prod(shape) * dtype.itemsize
            if nbytes > info.file_size:  # the header promises more than the member holds
                raise ModelError(f"{path}: {info.filename!r} header says {nbytes} bytes, the member holds {info.file_size}")
