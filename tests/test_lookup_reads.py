"""A lookup scores its candidates on the store's columns and reads only the entries it needs:
the decisions must be those of reading every one of the ``k`` nearest."""

from __future__ import annotations

import numpy as np
import pytest

from semroute.cache import FaissIndex, MemoryStore
from semroute.cache._vector import as_unit_vector
from semroute.cache.replica import Replica, _similarity
from semroute.hits import SemanticCache
from semroute.hits.consensus import AnswerConsensus
from semroute.hits.verify import PairVerifier
from semroute.types import CacheEntry

FAQ = {
    "card": ["When will my new card arrive?", "How long does card delivery take?", "Where is the card you sent me?"],
    "pin": ["How do I change my PIN?", "Can I reset my card PIN?", "I want a new PIN number"],
    "refund": ["How do I get a refund?", "I want my money back for a purchase"],
}
GENERATED = ["What is the weather tomorrow?", "Will it rain in Paris this weekend?", "Is it cold in Oslo in May?",
             "How hot does Madrid get in summer?", "Do I need an umbrella today?", "What's the forecast for Rome?",
             "Is it snowing in the Alps?", "When does the rainy season start?", "How windy is Chicago?",
             "What is the humidity in Miami?", "Will there be a storm tonight?", "Is it sunny in Lisbon?",
             "How do I change my card's PIN at an ATM?", "My refund never arrived"]
QUERIES = ["How can I change my PIN?", "when does my card get here", "refund please", "Is it going to rain?",
           "weather in Oslo", "forecast for the weekend", "ATM PIN change", "what about my money back"]


def _entry(i: int, question: str, answer: str, vector: np.ndarray, model: str = "") -> CacheEntry:
    return CacheEntry(id=f"{i:032x}", key=f"{i:032x}", scope="s", namespace="s", question=question, answer=answer,
                      vector=np.asarray(vector, dtype=np.float32), created_at=0.0, model=model)


@pytest.fixture(scope="module", params=["mixed", "mostly_generated"])
def cache(request, embedder):
    verifier = PairVerifier.default(embedder=embedder.name, dim=embedder.dim)
    consensus = AnswerConsensus.default(verifier.probability, embedder=embedder.name, dim=embedder.dim)
    cache = SemanticCache(MemoryStore(), FaissIndex(embedder.dim), verifier, top_k=4, clock=lambda: 0.0,
                          consensus=consensus)
    faq = [(q, f"answer about {k}") for k, qs in FAQ.items() for q in qs]
    if request.param == "mostly_generated":
        faq = faq[:1]
    rows = [(q, a, "") for q, a in faq] + [(q, f"model says {n}", "llama3.2:3b") for n, q in enumerate(GENERATED)]
    vectors = embedder.embed([q for q, _, _ in rows])
    cache.insert([_entry(i, q, a, vectors[i], m) for i, (q, a, m) in enumerate(rows)])
    return cache


def _reading_all(cache: SemanticCache, query: str, vector: np.ndarray):
    """The lookup as it was: every one of the ``k`` nearest read as an entry, then judged and voted."""
    assert cache.consensus is not None
    nearest = cache.replica.nearest(vector, "s", max(cache.top_k, cache.consensus.k), 0.0)
    judged = cache._judge(query, nearest)
    best = max((pair for pair in judged if pair[1].accepted), key=lambda pair: (pair[1].score, pair[0].similarity),
               default=None)
    return cache._with_consensus(query, vector, nearest, best, judged), judged


def test_reading_only_the_judged_candidates_decides_as_reading_all(cache, embedder):
    voters = []
    for query in QUERIES:
        vector = embedder.embed([query])[0]
        hit, judged = cache.semantic(query, vector, "s", 0.0)
        want_hit, want_judged = _reading_all(cache, query, vector)
        assert [(c.entry.id, c.similarity, v) for c, v in judged] == \
            [(c.entry.id, c.similarity, v) for c, v in want_judged], query
        assert (None if hit is None else (hit.entry.id, hit.similarity, hit.verdict)) == \
            (None if want_hit is None else (want_hit.entry.id, want_hit.similarity, want_hit.verdict)), query
        voters.append(sum(not s.generated for s in cache.replica.scored(vector, "s", cache.consensus.k, 0.0)))
    assert len(cache.replica.store) > cache.consensus.k
    if len(cache.replica.store) > 20:  # the mixed cache: some lookups vote, so all k are read
        assert max(voters) >= 2 and cache._may_vote("s")
    else:  # one known answer: no vote is possible, only the judged four are read, from the top_k searched
        assert max(voters) < 2 and not cache._may_vote("s")


def test_scores_are_the_stored_vectors_cosines_in_scope_and_alive(embedder):
    texts = ["How do I change my PIN?", "Can I reset my card PIN?", "When will my card arrive?", "refund please"]
    vectors = embedder.embed(texts)
    clock = [0.0]
    store = MemoryStore(clock=lambda: clock[0])
    replica = Replica(store, FaissIndex(embedder.dim))
    entries = [_entry(i, t, "a", vectors[i], model="m" if i % 2 else "") for i, t in enumerate(texts)]
    other = CacheEntry(id=f"{99:032x}", key=f"{99:032x}", scope="other", namespace="other", question=texts[0],
                       answer="a", vector=vectors[0], created_at=0.0)
    dying = CacheEntry(id=f"{98:032x}", key=f"{98:032x}", scope="s", namespace="s", question=texts[0] + "!",
                       answer="a", vector=vectors[0], created_at=0.0, expires_at=5.0)
    replica.insert([*entries, other, dying])
    query = vectors[0]
    unit = as_unit_vector(query, dim=None, what="query")
    found = replica.scored(query, "s", 4, now=1.0)
    assert len(found) == 4
    read = replica.read(found, now=1.0)
    assert [c.entry.id for c in read][0] in (entries[0].id, dying.id)
    for s, candidate in zip(found, read):
        # bit for bit the cosine a lookup takes from an entry (stores followed by id), whatever else
        # was scored with it (a threshold's edge must not move with the company), and the true cosine
        assert s.similarity == _similarity(unit, candidate.entry.vector)
        assert s.similarity == replica._score([s.key], unit, "s", 1.0)[0][0].similarity
        assert s.similarity == pytest.approx(float(np.dot(unit, candidate.entry.vector)), abs=1e-6)
        assert s.generated == bool(candidate.entry.model)
        assert candidate.entry.scope == "s"
    later = replica.scored(query, "s", 5, now=10.0)  # the TTL passed: the entry is gone, not a candidate
    assert dying.id not in {c.entry.id for c in replica.read(later, now=10.0)}
    assert len(later) == 4 and store.get(dying.id, now=10.0) is None
