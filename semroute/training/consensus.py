"""Training the answer consensus (``semroute.hits.consensus``) for one embedder.

Rows: for every query of the tuning caches (``tuning``; every answer there stands for a label,
so several cached phrasings share one answer, as in a cache warmed from a FAQ) the ``k`` nearest
cached entries are voted; a query whose winning answer has support >= 2 becomes a row (label: the
winning answer is the right one). A logistic regression over the winning group's shape is fitted
on them, the vote runs in the space of a small linear adapter learned from intent-labelled
sentences (no tuning query, no left-out intent), and the threshold is the lowest at which every
tuning set reaches the target precision through the real ``SemanticCache``.
Not here: the model itself (``semroute.hits.consensus``), reading files (``semroute.cli``).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np

from ..hits.consensus import FEATURE_NAMES, FORMAT, AnswerConsensus, Space, features, neighbourhood
from ..types import CacheEntry, Candidate
from .sources import SharedData, TrafficSet, groups
from .tuning import TuningSet, tuning_sets

__all__ = ["THRESHOLDS", "adapter_data", "fit_adapter", "precision_recall", "train_consensus"]

K, POWER, MIN_PAIR = 12, 10.0, 0.1  # K: 8, 12 and 16 tried on MiniLM's tuning sets; 12 best
THRESHOLDS = (0.8, 0.85, 0.88, 0.9, 0.92, 0.93, 0.94, 0.95, 0.96, 0.97, 0.98)


def entries(cache_rows, vectors) -> list[CacheEntry]:
    return [CacheEntry(id=str(i), key=str(i), scope="s", namespace="s", question=q, answer=f"answer for {label}",
                       vector=vectors[i], created_at=0.0) for i, (q, label) in enumerate(cache_rows)]


def adapter_data(data: SharedData, sets: Sequence[TuningSet], *, exclude: frozenset[str], scale: float,
                 seed: int = 0, limit: int | None = None) -> list[tuple[str, str]]:
    """Intent- (or group-) labelled sentences the adapter may learn from: no tuning query or cached
    row, no intent left out of a tuning cache, no excluded source."""
    tuning = {t for _, cache, queries in sets for t, _ in list(cache) + list(queries)}
    rng = random.Random(seed)
    rows: list[tuple[str, str]] = []
    if "banking77" not in exclude:
        b77 = data.banking77("train")
        held = set(sorted({i for _, i in b77})[::5])
        rows += [(t, "b:" + i) for t, i in b77 if i not in held and t not in tuning]
    if "clinc150" not in exclude:
        clinc = data.clinc150("train")
        held = set(sorted({i for _, i in clinc})[::5])
        rows += [(t, "c:" + i) for t, i in clinc if i not in held and t not in tuning]
    rng.shuffle(rows)
    rows = rows[: min(limit or len(rows), max(100, int(len(rows) * scale)))]
    if "tqp" not in exclude:  # Turkish paraphrase groups, as many sentences as a tenth of the intent data
        group = groups(data.tqp_pairs("train"))
        tqp = sorted((t, "t:" + g) for t, g in group.items() if t not in tuning)
        rows += rng.sample(tqp, min(len(tqp), max(100, len(rows) // 10)))
    return rows


def fit_adapter(vectors, labels, steps=1500, seed=0, reg=1e-3) -> np.ndarray:
    """A linear map trained with a supervised contrastive loss (same label = positives), kept near
    the identity so the embedding's general knowledge survives."""
    import torch

    torch.manual_seed(seed)
    x = torch.tensor(vectors, dtype=torch.float32)
    ids = {lab: n for n, lab in enumerate(sorted(set(labels)))}
    y = torch.tensor([ids[lab] for lab in labels])
    eye = torch.eye(x.shape[1])
    w = torch.nn.Parameter(eye.clone())
    opt = torch.optim.Adam([w], lr=1e-3)
    for _ in range(steps):
        batch = torch.randint(0, len(x), (512,))
        z = torch.nn.functional.normalize(x[batch] @ w, dim=1)
        logits = (z @ z.T / 0.05).fill_diagonal_(-1e9)
        pos = (y[batch, None] == y[None, batch]).float().fill_diagonal_(0.0)
        keep = pos.sum(1) > 0
        if not bool(keep.any()):
            continue
        loss = -((logits.log_softmax(1) * pos).sum(1)[keep] / pos.sum(1)[keep]).mean()
        loss = loss + reg * ((w - eye) ** 2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return w.detach().numpy().astype(np.float32)


def rows_for(cache_rows, queries, vc, vq, pair, k=K, power=POWER, adapter=None):
    """(features, label) for every query whose winning answer has support >= 2."""
    cached = entries(cache_rows, vc)
    sims = vq @ vc.T
    space = Space(adapter)
    xs, ys = [], []
    for (text, label), row, vq_row in zip(queries, sims, vq):
        top = np.argsort(-row)[:k]
        near = space.rescore(vq_row, [Candidate(cached[j], float(row[j])) for j in top])
        group = neighbourhood(near.ranked, power)
        if group is None or group.support < 2:
            continue
        best = near.ranked[group.members[0]]
        p = pair.probability(text, best.entry.question, near.raw[best.entry.id])
        if p < MIN_PAIR:
            continue  # vetoed whatever the model says: not a training row
        xs.append(features(near, group, k, p, space))
        ys.append(int(cache_rows[int(best.entry.id)][1] == label))
    return np.array(xs).reshape(-1, len(FEATURE_NAMES)), np.array(ys, dtype=int)


def precision_recall(cache_rows, queries, vc, vq, pair, consensus) -> tuple[float, float]:
    """Precision and recall of the real ``SemanticCache`` (top 4, pair verifier, ``consensus``)."""
    from ..cache import FaissIndex, MemoryStore
    from ..hits import SemanticCache

    cache = SemanticCache(MemoryStore(max_entries=len(cache_rows) + 1), FaissIndex(vc.shape[1], kind="flat"), pair,
                          top_k=4, clock=lambda: 0.0, consensus=consensus)
    cache.insert(entries(cache_rows, vc))
    hits = correct = 0
    for (text, label), v in zip(queries, vq):
        hit, _ = cache.semantic(text, v, "s")
        if hit is not None:
            hits += 1
            correct += cache_rows[int(hit.entry.id)][1] == label
    must = sum(label is not None for _, label in queries)
    return (correct / hits if hits else 1.0), correct / max(1, must)


def train_consensus(embed, pair, *, data: SharedData, traffic: TrafficSet | None,
                    exclude: frozenset[str] = frozenset(), scale: float = 1.0, target: float = 0.97,
                    adapter: bool = True, adapter_steps: int = 1500, adapter_reg: float = 1e-3,
                    adapter_sentences: int | None = None,
                    tune_on: frozenset[str] | None = None, log=lambda line: None) -> tuple[dict[str, np.ndarray], dict[str, object]]:
    """Train the consensus over ``pair`` (a ``PairVerifier`` for ``embed``); (arrays, card)."""
    import datetime as dt

    from sklearn.linear_model import LogisticRegression

    from .. import __version__

    sets = [(n, c, q, embed([t for t, _ in c]), embed([t for t, _ in q]))
            for n, c, q in tuning_sets(data, traffic, exclude=exclude, scale=scale) if tune_on is None or n in tune_on]
    w = None
    if adapter:
        rows = adapter_data(data, [(n, c, q) for n, c, q, _, _ in sets], exclude=exclude, scale=scale,
                            limit=adapter_sentences)
        w = fit_adapter(embed([t for t, _ in rows]), [lab for _, lab in rows], adapter_steps, reg=adapter_reg)
    parts = [rows_for(c, q, vc, vq, pair, adapter=w) for _, c, q, vc, vq in sets]
    x = np.vstack([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    mean, sd = x.mean(0), x.std(0) + 1e-9
    model = LogisticRegression(C=1.0, max_iter=2000).fit((x - mean) / sd, y)
    arrays = {"mean": mean, "scale": sd, "coef": model.coef_[0], "intercept": model.intercept_}
    if w is not None:
        arrays["adapter"] = w
    card: dict[str, object] = {
        "format": FORMAT, "embedder": embed.name, "dim": embed.dim, "k": K, "power": POWER,
        "min_pair_probability": MIN_PAIR, "features": list(FEATURE_NAMES), "threshold": 0.5,
        "training_rows": {"total": int(len(y)), "right_answer": int(y.sum()),
                          "by_set": {s[0]: int(len(p[1])) for s, p in zip(sets, parts)}},
        "coef": dict(zip(FEATURE_NAMES, np.round(model.coef_[0], 4).tolist())),
        "library_version": __version__, "created": dt.date.today().isoformat(),
        "data": {n: {"cache": len(c), "queries": len(q)} for n, c, q, _, _ in sets}, "left_out": sorted(exclude),
        "adapter": None if w is None else {
            "kind": "linear map, supervised contrastive loss (same intent = positive), near identity",
            "steps": adapter_steps, "identity_pull": adapter_reg, "sentences": len(rows),
            "data": "banking77 and clinc150 train intents, TQP train groups; minus tuning rows and left-out intents"},
    }
    chosen, curve = None, []
    for t in THRESHOLDS:
        cons = AnswerConsensus(arrays, {**card, "threshold": t}, pair.probability)
        got = {n: precision_recall(c, q, vc, vq, pair, cons) for n, c, q, vc, vq in sets}
        curve.append({"threshold": t, **{n: {"precision": round(p, 4), "recall": round(r, 4)} for n, (p, r) in got.items()}})
        log(f"consensus threshold {t}: " + ", ".join(f"{n} P={p:.3f} R={r:.3f}" for n, (p, r) in got.items()))
        if chosen is None and all(p >= target for p, _ in got.values()):
            chosen = t
    card["threshold"] = chosen if chosen is not None else THRESHOLDS[-1]
    card["tuning"] = {"target_precision": target, "curve": curve}
    return arrays, card
