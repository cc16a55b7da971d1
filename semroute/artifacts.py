"""Reading a trained artifact: a folder of plain arrays (``model.npz``) and a JSON card.

Every shipped model is stored this way (no pickle: sklearn pickles break across versions and
run code on load), and every one must refuse vectors of an embedder it was not trained on.
Not here: what the arrays mean (each model's own module) or where shipped folders live
(``semroute.resources``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelError, ModelMismatch

__all__ = ["load_artifact"]


def load_artifact(directory: str | os.PathLike[str], what: str, *, embedder: str | None = None,
                  dim: int | None = None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(card, arrays)`` from ``directory``; ``ModelError`` if unreadable, ``ModelMismatch`` if
    the card names another embedder or dimension than the ones given."""
    path = Path(directory)
    try:
        card = json.loads((path / "card.json").read_text(encoding="utf-8"))
        with np.load(path / "model.npz", allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read {what} in {path}: {exc}") from exc
    if not isinstance(card, dict):
        raise ModelError(f"{what} card in {path} is not a JSON object")
    if embedder is not None and card.get("embedder") != embedder:
        raise ModelMismatch(f"{what} in {path} was trained with embedder {card.get('embedder')!r}, not {embedder!r}")
    if dim is not None and card.get("dim") != dim:
        raise ModelMismatch(f"{what} in {path} was trained for dimension {card.get('dim')}, not {dim}")
    return card, arrays
