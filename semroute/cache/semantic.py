"""``SemanticCache``: the two cache tiers over a ``Store`` (truth) and an ``Index`` (replica).

It answers "is there a cached answer for this key?" (exact tier) and "which cached answer,
among the nearest questions in this scope, does the verifier accept best?" (semantic tier),
and keeps its index in step with the store by following the store's change feed. It does no
embedding, no LLM call and no I/O of its own, so several instances (threads, processes with a
shared ``RedisStore``) stay consistent by calling ``sync()`` before searching.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ConfigError, DimensionMismatch, InvalidRequest
from ..types import CacheEntry, Candidate, Hit, Verdict
from ..verify import Verifier
from .base import Change, Index, Store

if TYPE_CHECKING:
    from ..consensus import AnswerConsensus

__all__ = ["SemanticCache"]

# ``changes(since)`` with ``since`` at or past the newest sequence number returns the newest
# number and nothing else: that is how a follower learns where the feed is before a rebuild.
_HEAD = 2**62


class SemanticCache:
    """Exact and semantic lookups with verifier reranking; inserts go to the store, then the index.

    ``top_k`` nearest candidates are judged per semantic lookup; the best *accepted* one wins
    (highest verdict score, then highest similarity), not merely the nearest. With an
    ``AnswerConsensus`` its ``k`` nearest also vote by answer: a well-supported answer is served
    even below the verifier's cosine floor, and a verified hit that contradicts one is not.
    """

    def __init__(
        self,
        store: Store,
        index: Index,
        verifier: Verifier,
        *,
        top_k: int = 4,
        clock: Callable[[], float] = time.time,
        consensus: AnswerConsensus | None = None,
    ) -> None:
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ConfigError(f"top_k must be a positive int, got {top_k!r}")
        self.store = store
        self.index = index
        self.verifier = verifier
        self._nearest_wins = bool(getattr(verifier, "nearest_accepted_wins", False))
        self.top_k = top_k
        self.consensus = consensus
        self._clock = clock
        self._sync_lock = threading.Lock()
        self._cursor: int | None = None  # last store sequence number applied to the index
        # id -> fingerprint of what the index holds for it, so a rebuild or a replayed change
        # touches only what differs (re-adding everything would double a flat index's size)
        self._indexed: dict[str, int] = {}
        self.rebuilds = 0
        # Lookups the consensus decided: served by agreement, or a verified hit vetoed by it.
        self.consensus_hits = 0
        self.consensus_vetoes = 0

    def sync(self) -> int:
        """Apply the store's changes since the last sync to the index; returns how many.

        Cheap when nothing changed (one ``changes`` call). Rebuilds from ``entries()`` on the
        first call, when the feed no longer reaches back far enough, or when it went backwards.
        """
        with self._sync_lock:
            if self._cursor is not None:
                result = self.store.changes(self._cursor)
                if result is not None and result[0] >= self._cursor:
                    newest, changes = result
                    self._apply(changes)
                    self._cursor = newest
                    return len(changes)
            return self._rebuild()

    def exact(self, key: str, now: float | None = None) -> Hit | None:
        """The live entry stored under this exact-tier key, as an ``exact`` hit."""
        entry = self.store.get_by_key(key, now=self._clock() if now is None else now)
        return None if entry is None else Hit(entry=entry, source="exact", similarity=1.0)

    def semantic(
        self, query_text: str, vector: np.ndarray, scope: str, now: float | None = None
    ) -> tuple[Hit | None, list[tuple[Candidate, Verdict]]]:
        """The best verifier-accepted entry among the ``top_k`` nearest in ``scope``, and all judged.

        Candidates gone or expired in the store are dropped from the index and the search runs
        once more, so dead entries never crowd live ones out of the ``top_k``.
        """
        if not isinstance(query_text, str):
            raise InvalidRequest(f"query_text must be str, got {type(query_text).__name__}")
        now = self._clock() if now is None else now
        self.sync()
        judged: list[tuple[Candidate, Verdict]] = []
        nearest: list[Candidate] = []
        seen: set[str] = set()
        k = max(self.top_k, self.consensus.k) if self.consensus is not None else self.top_k
        for _attempt in range(2):
            found = self.index.search(vector, scope=scope, k=k)
            stale = self._judge(query_text, found, scope, now, seen, judged, nearest)
            if not stale:
                break
            self._drop_dead(stale, now)
        best = max(
            (pair for pair in judged if pair[1].accepted),
            key=lambda pair: (pair[1].score, pair[0].similarity),
            default=None,
        )
        if self.consensus is not None:
            return self._with_consensus(query_text, vector, nearest, best), judged
        if best is None:
            return None, judged
        candidate, verdict = best
        return Hit(entry=candidate.entry, source="semantic", similarity=candidate.similarity, verdict=verdict), judged

    def _with_consensus(
        self, query_text: str, vector: np.ndarray, nearest: list[Candidate], best: tuple[Candidate, Verdict] | None
    ) -> Hit | None:
        """Serve a supported answer, else the verified hit unless a supported answer contradicts it.

        Only known answers vote (``consensus.votes``); model-written entries can still be the
        verified hit, and one much nearer than the winning answer keeps the vote from serving.
        """
        from ..consensus import REASON, group_key, votes

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
        p, accepted = (0.0, False) if silenced else self.consensus.score(query_text, near, group)
        if accepted:
            self.consensus_hits += 1
            why = (f"{REASON}: {group.support} of {len(near.ranked)} nearest share this "
                   f"answer (vote share {group.share:.2f}, margin {group.margin:.3f}), P {p:.3f} >= "
                   f"{self.consensus.threshold:.3f}")
            return Hit(winner, "semantic", near.raw[winner.id], Verdict(True, p, why))
        if pair_hit is not None and group.share >= 0.5:
            self.consensus_vetoes += 1  # most of the neighbourhood's weight says another answer
            return None
        return pair_hit

    def _judge(
        self, query_text: str, found: list[tuple[str, float]], scope: str, now: float,
        seen: set[str], judged: list[tuple[Candidate, Verdict]], nearest: list[Candidate],
    ) -> list[str]:
        """Ask the verifier about the ``top_k`` nearest new candidates; returns ids the store lost.

        Every live candidate found is appended to ``nearest`` (the consensus votes over them).
        A verifier whose ``nearest_accepted_wins`` is true ranks accepted candidates by cosine, so
        judging stops at the first accepted one (the verifier is most of a semantic hit's cost).
        """
        stale: list[str] = []
        done = any(v.accepted for _, v in judged) and self._nearest_wins
        for entry_id, similarity in found:
            if entry_id in seen:
                continue
            seen.add(entry_id)
            entry = self.store.get(entry_id, now=now)
            if entry is None:
                stale.append(entry_id)
                continue
            if entry.scope != scope:  # isolation must not rest on the index alone
                continue
            candidate = Candidate(entry=entry, similarity=similarity)
            nearest.append(candidate)
            if done or len(judged) >= self.top_k:
                continue
            verdict = self.verifier.accept(query_text, candidate)
            judged.append((candidate, verdict))
            # candidates come nearest first, so nothing later can outrank an accepted one
            done = verdict.accepted and self._nearest_wins
        return stale

    def insert(self, entries: Sequence[CacheEntry]) -> None:
        """Store the entries (the truth first), then bring the index up to date."""
        entries = list(entries)
        for entry in entries:
            shape = np.shape(entry.vector) if isinstance(entry, CacheEntry) else None
            if shape is not None and shape != (self.index.dim,):
                raise DimensionMismatch(
                    f"entry {entry.id!r} vector has shape {shape}; the index expects ({self.index.dim},)"
                )
        self.store.put_many(entries)
        self.sync()

    def delete(self, entry_ids: Iterable[str]) -> int:
        """Delete entries from the store (and so, via the feed, from every index)."""
        removed = self.store.delete(entry_ids)
        self.sync()
        return removed

    def __len__(self) -> int:
        return len(self.store)

    # -- internals (callers hold the sync lock) ------------------------------------------------

    def _apply(self, changes: Sequence[Change]) -> None:
        final: dict[str, CacheEntry | None] = {}  # each id ends in its last state
        for change in changes:
            final[change.entry_id] = change.entry if change.op == "put" else None
        self._reconcile(final)

    def _rebuild(self) -> int:
        head = self.store.changes(_HEAD)
        newest = head[0] if head is not None else 0
        final: dict[str, CacheEntry | None] = dict.fromkeys(self._indexed)
        final.update((entry.id, entry) for entry in self.store.entries())
        self._reconcile(final)
        # Changes made while we read entries() are replayed by the next sync (puts and deletes
        # are idempotent), because the cursor was taken before the snapshot.
        self._cursor = newest
        self.rebuilds += 1
        return len(self._indexed)

    def _reconcile(self, final: dict[str, CacheEntry | None]) -> None:
        """Make the index hold exactly ``final``'s entries for those ids (``None``: absent)."""
        gone: list[str] = []
        fresh: list[tuple[CacheEntry, int]] = []
        for entry_id, entry in final.items():
            mark = _fingerprint(entry) if entry is not None and self._fits(entry) else None
            if mark is None:
                if entry_id in self._indexed:
                    gone.append(entry_id)
            elif self._indexed.get(entry_id) != mark:
                fresh.append((entry, mark))
        if gone:
            self.index.remove(gone)
            for entry_id in gone:
                del self._indexed[entry_id]
        if fresh:
            self.index.add([entry for entry, _ in fresh])
            self._indexed.update((entry.id, mark) for entry, mark in fresh)

    def _drop_dead(self, entry_ids: list[str], now: float) -> None:
        """Remove ids the store no longer has, so they stop taking ``top_k`` places."""
        with self._sync_lock:
            # re-checked under the lock: a sync may have just re-added one of them
            dead = [i for i in entry_ids if i in self._indexed and self.store.get(i, now=now) is None]
            if dead:
                self.index.remove(dead)
                for entry_id in dead:
                    del self._indexed[entry_id]

    def _fits(self, entry: CacheEntry) -> bool:
        # Entries of another embedder (another dimension) live in other scopes and cannot be
        # searched with this index; the store still serves them to their own caches.
        return np.shape(entry.vector) == (self.index.dim,)


def _fingerprint(entry: CacheEntry) -> int:
    return hash((entry.scope, np.ascontiguousarray(entry.vector).tobytes()))
