"""``SemanticCache``: the exact and semantic tiers, deciding which cached answer is a hit.

The cache (``semroute.cache.Replica``: store + the index following its feed) says which live
entries are nearest; this module decides whether one of them really answers the question: the
verifier judges the ``top_k`` nearest, the best *accepted* one wins (highest verdict score, then
similarity), and with an ``AnswerConsensus`` the ``k`` nearest also vote by answer (a
well-supported answer is served even below the verifier's cosine floor, and a verified hit that
contradicts one is not). With a ``LanguageGuard`` no hit is served across languages: an accepted
candidate whose question is in another language than the query is refused, and an answer whose
best phrasing is in another language neither is served by the consensus nor vetoes a hit. No
embedding, no LLM call and no I/O of its own beyond the replica's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..cache.base import CountsKnownAnswers, Index, Store
from ..cache.replica import Replica
from ..errors import ConfigError, InvalidRequest
from ..types import CacheEntry, Candidate, Hit, Verdict
from .consensus import REASON, AnswerConsensus, answer_group, group_key, votes
from .verify import Verifier, in_memory, nearest_accepted_wins

if TYPE_CHECKING:
    from .language import LanguageGuard

__all__ = ["SemanticCache"]


class SemanticCache:
    """Exact and semantic lookups over a ``Replica``, with verifier reranking and consensus."""

    def __init__(
        self,
        store: Store,
        index: Index,
        verifier: Verifier,
        *,
        top_k: int = 4,
        clock: Callable[[], float] = time.time,
        consensus: AnswerConsensus | None = None,
        language: LanguageGuard | None = None,
    ) -> None:
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ConfigError(f"top_k must be a positive int, got {top_k!r}")
        self.replica = Replica(store, index)
        self._known_answers = store.known_answers if isinstance(store, CountsKnownAnswers) else None
        self.verifier = verifier
        self._nearest_wins = nearest_accepted_wins(verifier)
        self.top_k = top_k
        self.consensus = consensus
        self.language = language
        self._clock = clock
        self._verifier_in_memory: tuple[Verifier | None, bool] = (None, False)  # (verifier, in_memory of it)
        # Lookups the consensus decided: served by agreement, or a verified hit vetoed by it.
        self.consensus_hits = 0
        self.consensus_vetoes = 0

    @property
    def store(self) -> Store:
        return self.replica.store

    @property
    def index(self) -> Index:
        return self.replica.index

    @property
    def rebuilds(self) -> int:
        return self.replica.rebuilds

    def sync(self) -> int:
        """Bring the index up to date with the store (see ``Replica.sync``)."""
        return self.replica.sync()

    @property
    def holdable(self) -> bool:
        """Whether ``try_hold`` can ever succeed: an in-memory store and index (``base.HoldsIfFree``)
        and a built-in verifier (a caller's own may do I/O)."""
        known = self._verifier_in_memory
        if known[0] is not self.verifier:
            known = self._verifier_in_memory = (self.verifier, in_memory(self.verifier))
        return known[1] and self.replica.holdable

    def try_hold(self) -> bool:
        """``Replica.try_hold`` for a lookup in this thread, if ``holdable``. Release with ``release_hold``."""
        return self.holdable and self.replica.try_hold()

    def release_hold(self) -> bool:
        """End a ``try_hold``; True when the store wants ``purge_expired`` run off this thread."""
        return self.replica.release_hold()

    def exact(self, key: str, now: float | None = None) -> Hit | None:
        """The live entry stored under this exact-tier key, as an ``exact`` hit."""
        entry = self.store.get_by_key(key, now=self._clock() if now is None else now)
        return None if entry is None else Hit(entry=entry, source="exact", similarity=1.0)

    def semantic(
        self, query_text: str, vector: np.ndarray, scope: str, now: float | None = None
    ) -> tuple[Hit | None, list[tuple[Candidate, Verdict]]]:
        """The best verifier-accepted entry among the ``top_k`` nearest in ``scope``, and all judged."""
        if not isinstance(query_text, str):
            raise InvalidRequest(f"query_text must be str, got {type(query_text).__name__}")
        now = self._clock() if now is None else now
        k = max(self.top_k, self.consensus.k) if self._may_vote(scope) else self.top_k
        scored = self.replica.scored(vector, scope, k, now)
        # The consensus votes with known answers only (``consensus.votes``) and speaks only when
        # one of them repeats among its ``k``: otherwise only the ``top_k`` the verifier judges are
        # read from the store (a lookup among model-written or all-different answers reads 4, not 12).
        if self.consensus is not None and self.consensus.repeats(
                [answer_group(s.answer, s.key) for s in scored if not s.generated]):
            nearest = self.replica.read(scored, now)
        else:
            nearest = self.replica.read(scored[: self.top_k], now)
        judged = self._judge(query_text, nearest)
        best = max(
            (pair for pair in judged if pair[1].accepted),
            key=lambda pair: (pair[1].score, pair[0].similarity),
            default=None,
        )
        if self.consensus is not None:
            return self._with_consensus(query_text, vector, nearest, best, judged), judged
        if best is None:
            return None, judged
        candidate, verdict = best
        return Hit(entry=candidate.entry, source="semantic", similarity=candidate.similarity, verdict=verdict), judged

    def _may_vote(self, scope: str) -> bool:
        """Whether the consensus could speak in ``scope``: it votes with known answers only and needs
        two, so a scope of model-written answers (a gateway's, unless warmed) is searched for the
        ``top_k`` alone (measured, MiniLM, 433 entries: 93 against 129 µs warm per lookup)."""
        if self.consensus is None:
            return False
        return self._known_answers is None or self._known_answers(scope) >= 2

    def insert(self, entries: Sequence[CacheEntry]) -> None:
        """Store the entries (the truth first), then bring the index up to date."""
        self.replica.insert(entries)

    def delete(self, entry_ids: Iterable[str]) -> int:
        """Delete entries from the store (and so, via the feed, from every index)."""
        return self.replica.delete(entry_ids)

    def __len__(self) -> int:
        return len(self.replica)

    def _judge(self, query_text: str, nearest: list[Candidate]) -> list[tuple[Candidate, Verdict]]:
        """The verifier's verdicts on the ``top_k`` nearest candidates.

        A verifier whose ``nearest_accepted_wins`` is true (``RanksByCosine``) ranks accepted candidates by cosine, so
        judging stops at the first accepted one (the verifier is most of a semantic hit's cost).
        Only accepted candidates meet the language guard: a miss pays nothing for it.
        """
        judged: list[tuple[Candidate, Verdict]] = []
        for candidate in nearest[: self.top_k]:
            verdict = self.verifier.accept(query_text, candidate)
            if verdict.accepted:
                verdict = self._in_query_language(query_text, candidate, verdict)
            judged.append((candidate, verdict))
            if verdict.accepted and self._nearest_wins:
                break  # candidates come nearest first, so nothing later can outrank it
        return judged

    def _in_query_language(self, query_text: str, candidate: Candidate, verdict: Verdict) -> Verdict:
        """``verdict``, or a refusal when the guard sees the cached question in another language."""
        why = None if self.language is None else self.language.mismatch(query_text, candidate.entry.question)
        return verdict if why is None else Verdict(False, 0.0, why)

    def _with_consensus(
        self, query_text: str, vector: np.ndarray, nearest: list[Candidate], best: tuple[Candidate, Verdict] | None,
        judged: list[tuple[Candidate, Verdict]],
    ) -> Hit | None:
        """Serve a supported answer, else the verified hit unless a supported answer contradicts it.

        Only known answers vote (``consensus.votes``); model-written entries can still be the
        verified hit, and one much nearer than the winning answer keeps the vote from serving.
        """
        assert self.consensus is not None
        pair_hit = None if best is None else Hit(best[0].entry, "semantic", best[0].similarity, best[1])
        voters = sorted((c for c in nearest if votes(c)), key=lambda c: -c.similarity)
        generated = max((c.similarity for c in nearest if not votes(c)), default=None)
        if not self.consensus.may_speak(voters):  # every answer differs: the pair verifier alone decides
            return pair_hit
        near = self.consensus.neighbours(vector, voters)
        group = self.consensus.vote(near)
        if group is None:  # no answer has two votes: the pair verifier alone decides
            return pair_hit
        if best is not None and best[1].tentative:
            # Accepted below the cosine floor on the pair model's confidence alone: measured on
            # the consensus tuning sets, such hits let precision slip where answers repeat, so
            # there the vote decides (the confident gate is for caches whose answers all differ).
            best = pair_hit = None
        top = near.ranked[group.members[0]]
        winner = top.entry
        if best is not None and group_key(best[0]) == group_key(top):
            return pair_hit  # verified and in agreement with the neighbourhood: nothing to add
        # A model-written entry much nearer than the winning answer: the vote serves nothing, but
        # its veto still holds (measured: serving the verified hit there cost precision).
        silenced = self.consensus.silenced(near, group, generated)
        p, serves = (0.0, False) if silenced else self.consensus.score(query_text, near, group)
        vetoes = pair_hit is not None and group.share >= 0.5  # most of the neighbourhood's weight says another answer
        if not (serves or vetoes):
            return pair_hit
        served = Candidate(winner, near.raw[winner.id])
        ruled = self._in_query_language(query_text, served, Verdict(True, p, ""))
        if not ruled.accepted:  # the winning answer is in another language: it neither serves nor vetoes
            judged.append((served, ruled))
            return pair_hit
        if vetoes and not serves:
            self.consensus_vetoes += 1
            return None
        self.consensus_hits += 1
        why = (f"{REASON}: {group.support} of {len(near.ranked)} nearest share this "
               f"answer (vote share {group.share:.2f}, margin {group.margin:.3f}), P {p:.3f} >= "
               f"{self.consensus.threshold:.3f}")
        return Hit(winner, "semantic", served.similarity, Verdict(True, p, why))
