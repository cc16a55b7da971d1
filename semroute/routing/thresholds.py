"""Decision thresholds for a score: one that sends a target share of traffic to the large tier,
or one that keeps a target recall of complex prompts. Pure functions over scored examples, so
calibration can be checked without a trained model.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ConfigError

__all__ = ["threshold_for_recall", "threshold_for_share"]


def threshold_for_share(p: np.ndarray, share: float) -> float:
    """A threshold with about ``share`` of ``p`` at or above it (ties go to the large side)."""
    if share <= 0.0:
        return float(np.nextafter(p.max(), np.inf))
    if share >= 1.0:
        return float(p.min())
    ordered = np.sort(p)[::-1]
    k = max(1, round(share * len(p)))
    return float(ordered[k - 1])


def threshold_for_recall(p: np.ndarray, labels: np.ndarray, recall: float) -> float:
    """The highest threshold whose recall of complex (label 1) is at least ``recall``."""
    if not 0.0 < recall <= 1.0:
        raise ConfigError(f"target recall must be in (0, 1], got {recall}")
    positives = np.sort(np.asarray(p, dtype=np.float64)[np.asarray(labels).reshape(-1) == 1])[::-1]
    if len(positives) == 0:
        raise ConfigError("calibrating to a recall needs at least one complex example")
    k = max(1, math.ceil(recall * len(positives) - 1e-9))
    return float(positives[k - 1])
