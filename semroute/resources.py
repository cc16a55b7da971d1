"""Where files shipped with semroute live: ``models/`` (trained artifacts) and ``data/``.

In a wheel they are the packages ``semroute.models`` and ``semroute.data``; in a source
checkout or an editable install they are the top-level ``models/`` and ``data/`` folders.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Literal

__all__ = ["shipped"]


def shipped(kind: Literal["models", "data"], name: str = "") -> Path:
    """Path of a shipped file or folder, e.g. ``shipped("data", "traffic_faq.csv")``."""
    try:
        root = Path(str(resources.files(f"semroute.{kind}")))
    except ModuleNotFoundError:  # editable install: the mapped folder is not importable
        root = Path(__file__).resolve().parent.parent / kind
    if not (root / name).exists():
        source_tree = Path(__file__).resolve().parent.parent / kind
        if (source_tree / name).exists():
            root = source_tree
    return root / name
