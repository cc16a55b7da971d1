"""Static word vectors: how well the words one question lacks align with the other's words.

A pair feature (``semroute.hits.pairs``), kept apart because it is the one piece of the pair
features that carries learned data (the table ships in the verifier's artifact) while the rest
is token work on the two texts.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

import numpy as np

__all__ = ["WordVectors"]


class WordVectors:
    """Static word vectors, used only to align the words one question has and the other lacks.

    "fast" ~ "speed", "locate" ~ "find": a synonym aligns well, a same-kind swap (city/highway)
    much less. Two kinds of table: whole words embedded one by one with the verifier's own
    embedder (``semroute.training.verifier.word_vectors``; a word not in the table takes the
    entry of its longest known prefix of >= 4 letters, so Turkish suffixes find their root), or,
    in older artifacts, a BERT word-piece table (entries starting ``##``), split greedily longest
    first like WordPiece.
    """

    def __init__(self, vocab: Sequence[str], vectors: np.ndarray) -> None:
        self.ids = {w: i for i, w in enumerate(vocab)}
        self.word_pieces = any(w.startswith("##") for w in vocab)
        norms = np.linalg.norm(vectors.astype(np.float32), axis=1, keepdims=True)
        self.vectors = vectors.astype(np.float32) / np.maximum(norms, 1e-6)
        self._memo: dict[str, np.ndarray] = {}
        self._matrices: dict[tuple[str, ...], np.ndarray] = {}

    def pieces(self, word: str) -> list[int]:
        if not self.word_pieces:
            for end in range(len(word), 3, -1):
                i = self.ids.get(word[:end])
                if i is not None:
                    return [i]
            i = self.ids.get(word)
            return [] if i is None else [i]
        word = "".join(ch for ch in unicodedata.normalize("NFD", word) if unicodedata.category(ch) != "Mn")
        out, start = [], 0
        while start < len(word):
            for end in range(len(word), start, -1):
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.ids:
                    out.append(self.ids[piece])
                    start = end
                    break
            else:
                return out  # an unknown character: keep what was matched
        return out

    def vector(self, word: str) -> np.ndarray:
        v = self._memo.get(word)
        if v is None:
            ids = self.pieces(word)
            v = self.vectors[ids].mean(axis=0) if ids else np.zeros(self.vectors.shape[1], np.float32)
            v = v / max(float(np.linalg.norm(v)), 1e-6)
            if len(self._memo) < 100_000:  # bounded: a memo, not a growing store
                self._memo[word] = v
        return v

    def matrix(self, words: Sequence[str]) -> np.ndarray:
        if not words:
            return np.zeros((0, self.vectors.shape[1]), np.float32)
        key = tuple(words)
        m = self._matrices.get(key)
        if m is None:  # a cached question's words are aligned against every query that finds it
            m = np.stack([self.vector(w) for w in words])
            if len(self._matrices) >= 50_000:
                self._matrices.clear()  # a bound, not an LRU: rebuilding one matrix is cheap
            self._matrices[key] = m
        return m
