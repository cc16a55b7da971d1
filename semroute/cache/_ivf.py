"""The quantised index ``FaissIndex(kind="auto")`` turns a large scope into: IVF with 4-bit codes.

Why IVF with scalar-quantised codes and not HNSW at 10^5-10^6 entries (bench/cache_scale.py,
random 384-d vectors, 2 cores): an HNSW over fp16 vectors holds ~1 KB per entry (the vector again
plus its links), takes tens of minutes to build at 1M and loses recall@1 as it grows (0.996 at
100k, 0.912 at 300k). IVF holds 192 bytes of 4-bit codes (``CODE_BITS``; 384 with 8-bit) and an
8-byte id per entry, trains its centroids on a sample in seconds, adds a million vectors in
seconds, and a stored vector's own list is the one nearest to it, so its own entry is found at
any ``nprobe``. The codes are approximate; ``Replica`` re-ranks the candidates against the
store's own vectors, so similarities reported to the verifier are exact.

Codes are stored without residuals (``by_residual=False``), so a code decodes without its list's
centroid: compaction copies codes list by list, and a retrain (as the scope grows) decodes them.
This module holds no state; ``FaissIndex`` calls it under its lock.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = ["NPROBE", "RETRAIN_GROWTH", "build", "copy_live", "live_mask", "live_vectors", "needs_retrain", "spare_adds"]

# Lists searched per query. Measured at 1M random 384-d vectors (1529 lists, 1000 queries, 2-core host
# at load ~3; README): a stored vector finds its own entry at any nprobe; a perturbed copy (cosine
# ~0.99, a paraphrase) finds it at 0.976 / 0.998 / 1.000 for nprobe 4 / 8 / 16, searching in
# 0.18 / 0.37 / 0.59 ms p50 and 0.30 / 0.96 / 0.83-1.75 ms p99. Real embeddings are harder than
# those copies: e5 vectors of banking77 and clinc150 (8k rows, 1,000 held-out queries, 362 lists),
# the nearest row at cosine >= 0.9 is among the top 4 at 0.962 / 0.979 / 0.991 / 0.999 for nprobe
# 4 / 8 / 16 / 32. 16 keeps the lookup's p99 under 2 ms at 1M and loses ~1% of such neighbours.
NPROBE = 16
# A scope is retrained (more lists) once it holds this many times the vectors it was trained on,
# so lists stay short (latency) and the O(n) retrain is amortised over the growth.
RETRAIN_GROWTH = 4
# Spare room laid out behind each list, as a fraction of its length (at least _MIN_SPARE codes). faiss
# keeps a list in a std::vector that doubles when full, so appending a few codes at a time left lists
# ~1.7x their length: 676 bytes per 392-byte entry (300k random 384-d vectors added 5,000 at a time).
# ``copy_live`` lays every list out at its length plus this room; ``FaissIndex`` lays the scope out
# again (dropping tombstones) after ``spare_adds`` adds, before most lists outgrow their room.
SPARE = 1 / 8
_MIN_SPARE = 8
# Bits per dimension of the codes: 4 (192 bytes per 384-d entry; 8 bits held 384). Measured on real e5
# vectors (banking77 + clinc150 train utterances, 8,081 rows, 362 lists, nprobe 16; 1,000 held-out test
# utterances, the 923 whose nearest row is at cosine >= 0.9): that row is among the top 4 after exact
# re-ranking at 0.989 with 8-, 6- and 4-bit codes when ``Replica`` re-ranks 8 candidates (4-bit codes and
# only 4 candidates: 0.985); the misses are IVF's lists, not the codes. 4 bits are what brought a 1M-entry
# cache under 2 KB per entry (bench/cache_scale.py). Indexes saved with other codes keep theirs.
CODE_BITS = 4
# Training sample per list: k-means on 2 cores must take seconds, not minutes, at 1M entries.
_POINTS_PER_LIST = 32


def lists_for(rows: int) -> int:
    """How many lists for ``rows`` vectors: ~2 sqrt(n), so a probe scans a few thousand codes."""
    return max(16, int(2 * math.sqrt(rows)))


def build(faiss: Any, dim: int, sample: np.ndarray, rows: int, *, nprobe: int = NPROBE) -> Any:
    """An empty IVF index with ``CODE_BITS`` codes (inner product), trained on ``sample`` for a scope of ``rows`` vectors."""
    nlist = min(lists_for(rows), max(1, len(sample) // 4))
    quantizer = faiss.IndexFlatIP(dim)
    qtype = {4: faiss.ScalarQuantizer.QT_4bit, 6: faiss.ScalarQuantizer.QT_6bit, 8: faiss.ScalarQuantizer.QT_8bit}[CODE_BITS]
    index = faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist, qtype,
                                          faiss.METRIC_INNER_PRODUCT, False)
    index.cp.max_points_per_centroid = _POINTS_PER_LIST
    index.cp.seed = 1234  # the same vectors give the same lists: reproducible benches
    index.train(np.ascontiguousarray(sample, dtype=np.float32))
    index.nprobe = nprobe
    _keep(index, quantizer)
    return index


def needs_retrain(index: Any, live: int, trained_rows: int) -> bool:
    return live > RETRAIN_GROWTH * max(trained_rows, 1) and index.nlist < lists_for(live)


def live_mask(labels: np.ndarray, live: Any) -> np.ndarray:
    """Which of ``labels`` are still live (not tombstoned), as a boolean mask.

    ``live``: a set or dict of live labels, or an object answering a whole array with ``mask``
    (``_rowbook.ScopeRows``: an index labelled by store rows).
    """
    if hasattr(live, "mask"):
        return np.asarray(live.mask(labels), dtype=bool)
    return np.fromiter((label in live for label in labels.tolist()), dtype=bool, count=len(labels))


def spare_adds(index: Any) -> int:
    """Adds a freshly laid out index takes before it is laid out again (half its spare room, on average per list)."""
    return max(int(index.ntotal * SPARE / 2), index.nlist)


def copy_live(faiss: Any, index: Any, live: set[int] | dict[int, str]) -> Any:
    """A new index with the same training holding only the codes whose label is in ``live``.

    Each list is allocated once at its length plus ``SPARE`` (a list grown from empty by one
    ``add_entries`` is allocated exactly; shrinking its length keeps the allocation), so the
    next adds fill that room instead of doubling the list.
    """
    fresh = _empty_like(faiss, index)
    invlists, size = fresh.invlists, index.code_size
    for list_no, labels, codes in _lists(faiss, index):
        keep = live_mask(labels, live)
        n = int(keep.sum())
        if n:
            room = n + max(_MIN_SPARE, int(n * SPARE))
            ids = np.full(room, -1, dtype=np.int64)
            ids[:n] = labels[keep]
            kept = np.zeros((room, size), dtype=np.uint8)
            kept[:n] = codes[keep]
            invlists.add_entries(list_no, room, faiss.swig_ptr(ids), faiss.swig_ptr(kept))
            invlists.resize(list_no, n)
            fresh.ntotal += n
    return fresh


def live_vectors(faiss: Any, index: Any, live: set[int] | dict[int, str]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(labels, decoded float32 vectors) of the live codes, one list at a time (bounded memory)."""
    for _list_no, labels, codes in _lists(faiss, index):
        keep = live_mask(labels, live)
        if keep.any():
            yield np.ascontiguousarray(labels[keep]), index.sq.decode(np.ascontiguousarray(codes[keep]))


def _lists(faiss: Any, index: Any) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    invlists, size = index.invlists, index.code_size
    for list_no in range(index.nlist):
        n = invlists.list_size(list_no)
        if n:
            labels = faiss.rev_swig_ptr(invlists.get_ids(list_no), n).copy()
            codes = faiss.rev_swig_ptr(invlists.get_codes(list_no), n * size).copy().reshape(n, size)
            yield list_no, labels, codes


def _empty_like(faiss: Any, index: Any) -> Any:
    quantizer = faiss.IndexFlatIP(index.d)
    quantizer.add(index.quantizer.reconstruct_n(0, index.nlist))
    fresh = faiss.IndexIVFScalarQuantizer(quantizer, index.d, index.nlist, index.sq.qtype,  # codes copied as they are
                                          faiss.METRIC_INNER_PRODUCT, False)
    fresh.sq.trained = index.sq.trained
    fresh.is_trained = True
    fresh.nprobe = index.nprobe
    _keep(fresh, quantizer)
    return fresh


def _keep(index: Any, quantizer: Any) -> None:
    # the index owns (and frees) its quantizer, as one read back by ``faiss.read_index`` does
    quantizer.this.disown()
    index.own_fields = True
