"""Labelled (query, cached question) pairs for training the pair verifier, source by source.

Every source yields pairs tagged with its name, so a whole source can be left out (the
leave-one-source-out evaluation in ``bench/loso.py``): banking77 and clinc150 (same intent = hit,
the nearest other intents = misses), TQP (paraphrases = hit, the nearest question of another
group = miss), xSID (slot swaps = misses), STSb-TR (its two ends only, see
``minimal_pairs.stsb_pairs``), the COVID FAQ's labelled rewordings, the traffic FAQ's tuning split
and ``written`` (the question families, word swaps, negations, scope insertions and surface
variants generated in ``minimal_pairs``; always included). ``scale`` shrinks the samples: a
multilingual embedder on a small CPU embeds a few dozen sentences a second.
Not here: fitting (``semroute.training.verifier``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import numpy as np

from . import minimal_pairs as mp
from .sources import SharedData, TrafficSet, groups
from .verifier import LabelledPair

__all__ = ["SOURCES", "collect"]

SOURCES = ("banking77", "clinc150", "covid_faq", "tqp", "xsid", "traffic", "stsb_tr")
"""Sources a run may leave out; ``written`` (generated pairs) is always in."""

Row = tuple[str, str, str, int, str]  # query, cached, answer, label, source
Embed = Callable[[Sequence[str]], np.ndarray]


def _n(count: int, scale: float) -> int:
    return max(1, int(count * scale))


def _intent_pairs(rows, vec, rng, n, source) -> list[Row]:
    """For n sampled rows: nearest + random same-intent (hits) and the two nearest other-intent (misses)."""
    labels = np.asarray([r[1] for r in rows])
    out = []
    for i in rng.sample(range(len(rows)), min(n, len(rows))):
        sims = vec @ vec[i]
        same = np.flatnonzero(labels == labels[i])
        same = same[same != i]
        other = np.flatnonzero(labels != labels[i])
        if len(same) == 0:
            continue
        picks = [(int(same[np.argmax(sims[same])]), 1), (int(rng.choice(list(same))), 1)]
        picks += [(int(j), 0) for j in other[np.argsort(-sims[other])[:2]]]
        out += [(rows[i][0], rows[j][0], "", lab, source) for j, lab in picks]
    return out


def _tqp(data: SharedData, rng, n, embed: Embed) -> list[Row]:
    pairs = data.tqp_pairs("train")
    group = groups(pairs)
    sample = rng.sample(pairs, n)
    texts = sorted({t for p in sample for t in p})
    vec = embed(texts)
    out = [(a, b, "", 1, "tqp") for a, b in sample]
    for i in rng.sample(range(len(texts)), min(n, len(texts))):
        sims = vec @ vec[i]
        for j in np.argsort(-sims)[1:4]:
            if group[texts[j]] != group[texts[i]]:
                out.append((texts[i], texts[int(j)], "", 0, "tqp"))
                break
    return out


def _traffic(traffic: TrafficSet, embed: Embed) -> list[Row]:
    """Tuning-split rewordings: hit with their FAQ question, miss with the two nearest others."""
    faq = [q for q, _, _ in traffic.faq]
    vf = embed(faq)
    tune = traffic.split("tune")
    vq = embed([t for t, _ in tune])
    out = []
    for (text, target), v in zip(tune, vq):
        if target is not None:
            out.append((text, target, "", 1, "traffic"))
        others = [faq[j] for j in np.argsort(-(vf @ v)) if faq[j] != target][:2]
        out += [(text, o, "", 0, "traffic") for o in others]
    return out


def _covid(data: SharedData) -> list[Row]:
    return [(q2, q1, "", int(s), "covid_faq") for q1, q2, s in data.covid_pairs()]


def _surface(texts, rng) -> list[Row]:
    """Hits that differ only in surface form (case, punctuation, filler words)."""
    forms = [str.lower, lambda t: t.rstrip("?.!"), lambda t: "Please, " + t[0].lower() + t[1:],
             lambda t: "Can you tell me " + t[0].lower() + t[1:], lambda t: t + " please"]
    return [(rng.choice(forms)(t), t, "", 1, "written:surface") for t in texts]


def _written(data: SharedData, b77, clinc, seed, scale, include: Callable[[str], bool]) -> list[Row]:
    """Generated minimal pairs over real sentences (the sentences' own sources may be left out)."""
    rng = random.Random(f"{seed}:written")
    rows: list[Row] = [(q, c, a, lab, f"written:family:{kind}:{lang}")
                       for q, c, a, lab, kind, lang in mp.family_pairs(heldout=False, rng=rng)]
    real = [(t, "en") for t, _ in rng.sample(b77, min(len(b77), _n(3000, scale)))] if include("banking77") else []
    real += [(t, "en") for t, _ in clinc[: _n(3000, scale)]] if include("clinc150") else []
    if include("tqp"):
        real += [(a, "tr") for a, _ in random.Random(f"{seed}:written:tqp").sample(data.tqp_pairs("train"), _n(3000, scale))]
    swaps = mp.word_swaps(real, rng, limit=_n(2000, scale))
    rows += [(q, c, a, lab, f"written:swap:{kind}") for q, c, a, lab, kind, _ in swaps]
    rng.shuffle(real)
    rows += [(q, c, a, lab, "written:negation") for q, c, a, lab, _, _ in mp.negation_swaps(real, rng, limit=_n(700, scale))]
    rng.shuffle(real)
    rows += [(q, c, a, lab, "written:scope") for q, c, a, lab, _, _ in mp.scope_insertions(real, rng, limit=_n(700, scale))]
    surface = [c for _, c, _, _, _, _ in swaps[: _n(600, scale)]]
    surface += [t for t, _ in rng.sample(b77, min(len(b77), _n(400, scale)))] if b77 else []
    return rows + _surface(surface, rng)


def collect(data: SharedData, traffic: TrafficSet | None, embed: Embed, *, seed: int = 0,
            exclude: frozenset[str] = frozenset(), scale: float = 1.0, covid: bool = False) -> list[LabelledPair]:
    """Every training pair with its cosine under ``embed``; sources in ``exclude`` left out.

    Each source samples with its own seeded generator, so leaving one out does not change what
    the others contribute (and their embeddings are reused across leave-one-out runs).

    The COVID FAQ and the traffic tuning split are benchmark material: COVID pairs are only
    trained on when ``covid`` is set (leave-one-source-out runs); the traffic tuning split is
    trained on (its test split and the demo rows never are).
    """
    def include(source: str) -> bool:
        return source not in exclude

    def rng(source: str) -> random.Random:
        return random.Random(f"{seed}:{source}")

    r77, rcl = rng("banking77"), rng("clinc150")
    b77 = r77.sample(data.banking77("train"), _n(6000, scale))
    clinc = rcl.sample(data.clinc150("train"), _n(4000, scale))
    rows: list[Row] = []
    if include("banking77"):
        rows += _intent_pairs(b77, embed([t for t, _ in b77]), r77, _n(2400, scale), "banking77")
    if include("clinc150"):
        rows += _intent_pairs(clinc, embed([t for t, _ in clinc]), rcl, _n(1600, scale), "clinc150")
    if include("tqp"):
        rows += _tqp(data, rng("tqp"), _n(1500, scale), embed)
    if include("xsid"):
        for lang in ("en", "tr"):
            rows += [(q, c, a, lab, f"xsid:{lang}") for q, c, a, lab, _, _ in
                     mp.xsid_swaps(data.xsid(lang, "valid"), lang, rng(f"xsid:{lang}"))]
    if include("stsb_tr"):
        rows += [(q, c, a, lab, "stsb_tr") for q, c, a, lab, _, _ in mp.stsb_pairs(data.stsb_tr("train"))][: _n(1500, scale)]
    if include("traffic") and traffic is not None:
        rows += _traffic(traffic, embed)
    if covid and include("covid_faq"):
        rows += _covid(data)
    rows += _written(data, b77 if include("banking77") else [], clinc if include("clinc150") else [], seed, scale, include)
    vq, vc = embed([r[0] for r in rows]), embed([r[1] for r in rows])
    sims = np.einsum("ij,ij->i", vq, vc)
    return [LabelledPair(q, c, a, float(s), lab, src) for (q, c, a, lab, src), s in zip(rows, sims)]
