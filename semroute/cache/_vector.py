"""Vector checks shared by the store and the index: one place decides what a usable vector is.

A usable vector is 1-D, of the expected dimension, finite and non-zero; it is returned as a
read-only, L2-normalised float32 copy so inner products are cosine similarities and nobody can
mutate the store's truth through an alias. This module does no I/O and imports no faiss.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

import numpy as np

from ..errors import DimensionMismatch, InvalidRequest

__all__ = ["as_unit_vector", "gc_paused"]


def as_unit_vector(value: object, *, dim: int | None, what: str) -> np.ndarray:
    """``value`` as a read-only unit float32 vector, or a typed error (nothing is changed)."""
    # Overflow to inf when casting huge float64s is caught below as non-finite; silence numpy's
    # warning so it is reported as our error, not a RuntimeWarning.
    with np.errstate(over="ignore", invalid="ignore"):
        try:
            arr = np.asarray(value, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise InvalidRequest(f"{what} is not a numeric vector: {exc}") from exc
    if arr.ndim != 1 or arr.shape[0] == 0:
        raise DimensionMismatch(f"{what} must be a non-empty 1-D vector, got shape {arr.shape}")
    if dim is not None and arr.shape[0] != dim:
        raise DimensionMismatch(f"{what} has dimension {arr.shape[0]}, expected {dim}")
    if not np.isfinite(arr).all():
        raise InvalidRequest(f"{what} contains NaN or infinite values")
    wide = arr.astype(np.float64)  # float32 squares overflow for large but finite values
    norm = float(np.sqrt(wide @ wide))
    if norm == 0.0 or not np.isfinite(norm):
        raise InvalidRequest(f"{what} has norm {norm}; a zero vector has no direction")
    out = (wide / norm).astype(np.float32)
    out.setflags(write=False)
    return out


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a snapshot's million objects are created.

    Each full collection walks every tracked object, and creating a million of them triggers
    several: ~30% of a 1M-entry load. The objects made here form no cycles, so nothing is lost;
    collection resumes (as it was) on exit.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
