"""Tuning caches: small simulated caches the verifier's gates and the consensus threshold are chosen on.

Each set is a cache (rows of text and label, the label standing for the answer) and labelled
queries (a label, or None when the query must miss). They are built only from training or
validation splits, never from what ``bench/cache_quality.py`` reports on:
- banking77: cache = every 10th train utterance, queries = other train utterances;
- clinc150: cache = 10 train utterances per intent, queries = every 2nd validation utterance plus
  the out-of-scope validation and train queries (must miss);
- tqp: cache = one question of each sampled train paraphrase group, queries = the others;
- traffic: cache = the traffic FAQ, queries = the rewordings and near misses of its tuning split.
In the first three, every 5th intent (group) is left out of the cache, so its queries must miss:
questions of the same domain whose answer is not cached are the hard negatives.
"""

from __future__ import annotations

import random

from .sources import SharedData, TrafficSet, groups

__all__ = ["TuningSet", "tuning_sets"]

TuningSet = tuple[str, list[tuple[str, str]], list[tuple[str, str | None]]]


def _every_fifth(labels) -> set[str]:
    return set(sorted(set(labels))[::5])


def _first_per_intent(rows: list[tuple[str, str]], n: int) -> list[tuple[str, str]]:
    per: dict[str, list[str]] = {}
    for text, intent in rows:
        per.setdefault(intent, []).append(text)
    return [(t, i) for i, ts in per.items() for t in ts[:n]]


def _banking77(data: SharedData, scale: float) -> TuningSet:
    b77 = data.banking77("train")
    held = _every_fifth(label for _, label in b77)
    cache = [r for r in b77[::10] if r[1] not in held]
    others = [r for n, r in enumerate(b77) if n % 10][1::3][: max(1, int(3000 * scale))]
    return "banking77", cache, [(t, None if i in held else i) for t, i in others]


def _clinc150(data: SharedData, scale: float) -> TuningSet:
    clinc = data.clinc150("train")
    held = _every_fifth(i for _, i in clinc)
    per = max(2, int(10 * min(1.0, scale * 2)))
    cache = [(t, i) for t, i in _first_per_intent(clinc, per) if i not in held]
    val = data.clinc150("val")[::2]
    oos = data.clinc150("oos_val") + data.clinc150("oos_train")
    k = max(1, int(len(val) * scale))
    queries = [(t, None if i in held else i) for t, i in val[:: max(1, len(val) // k)]]
    return "clinc150", cache, queries + [(t, None) for t, _ in oos[: max(1, int(len(oos) * scale))]]


def _tqp(data: SharedData, scale: float) -> TuningSet:
    group = groups(data.tqp_pairs("train"))
    members: dict[str, list[str]] = {}
    for text in sorted(group):
        members.setdefault(group[text], []).append(text)
    rng = random.Random(0)
    chosen = rng.sample(sorted(g for g, m in members.items() if len(m) >= 2), max(5, int(1500 * scale)))
    held = set(chosen[::5])
    cache = [(members[g][0], g) for g in chosen if g not in held]
    queries = [(t, None if g in held else g) for g in chosen for t in members[g][1:3]]
    return "tqp", cache, queries


def _traffic(traffic: TrafficSet) -> TuningSet:
    return "traffic", [(q, q) for q, _, _ in traffic.faq], traffic.split("tune")


def tuning_sets(data: SharedData, traffic: TrafficSet | None, *, exclude: frozenset[str] = frozenset(),
                scale: float = 1.0) -> list[TuningSet]:
    """The tuning sets of every source not in ``exclude``."""
    out = []
    if "banking77" not in exclude:
        out.append(_banking77(data, scale))
    if "clinc150" not in exclude:
        out.append(_clinc150(data, scale))
    if "tqp" not in exclude:
        out.append(_tqp(data, scale))
    if traffic is not None and "traffic" not in exclude:
        out.append(_traffic(traffic))
    return out
