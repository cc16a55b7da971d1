"""Warm-up: turning many known question/answer rows into cache entries, at scale.

``warm_rows`` takes any iterable of rows (``(question, answer)`` pairs, mappings with
``question``, ``answer`` and optional ``namespace``, ``ttl_s``, ``metadata``, or ``WarmRow``)
and, in this order:

1. validates every row (``on_bad="raise"``: the first bad row raises before anything is stored;
   ``"skip"``: it is reported with where it came from and skipped, never half-written);
2. drops exact repeats (same scope and normalised question): the same answer is a duplicate,
   another answer a conflict (the first row wins, the conflict is reported);
3. per batch, skips rows whose exact key is already stored with the same answer: one store
   read, no embedding, which is what makes an interrupted run resumable at the cost of a
   key lookup per row (embedding is the expensive step, bench/warmup.py);
4. embeds the rest as one batch, optionally drops near-duplicates (cosine >= ``near_duplicates``
   to an entry stored earlier in the same scope or to an earlier row of the batch; a conflict
   when the answers differ; a neighbour in another language is none while the cache keeps hits
   in the asker's language, as it never serves one for the other), and stores the batch all-or-nothing.

It returns a ``WarmReport`` (added, updated, skipped and why, conflicts, bad rows, seconds).
It is not a file reader (``semroute.warm_files``) nor the CLI (``semroute warm``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np

from .cache.memory import check_tags
from .errors import InvalidRequest

if TYPE_CHECKING:
    from .pipeline import Pipeline, Plan

__all__ = ["WarmRow", "BadRow", "WarmConflict", "WarmReport", "WarmOptions", "warm_rows"]


@dataclass(frozen=True, slots=True)
class WarmRow:
    """One question/answer to store; ``None`` fields take the call's defaults. ``where`` names its origin."""

    question: str
    answer: str
    namespace: str | None = None
    ttl_s: float | None = None
    tags: tuple[tuple[str, str], ...] = ()
    where: str = ""


@dataclass(frozen=True, slots=True)
class BadRow:
    """A row that was not stored and why (``where``: ``file:line`` or ``item N``)."""

    where: str
    reason: str


@dataclass(frozen=True, slots=True)
class WarmConflict:
    """Two (near-)identical questions with different answers: ``where``'s row was not stored."""

    where: str
    other: str
    question: str
    other_question: str
    similarity: float


@dataclass(slots=True, eq=False)
class WarmReport:
    """What one warm-up did. ``stored`` = added + updated (a changed answer replaces the old one).

    ``Router.warm`` returned the stored count before it returned this report, so the report still
    acts as that count where a script used it as a number: ``int(report)``, ``report == 3``,
    ``range(report)``, ``"%d" % report``.
    """

    added: int = 0
    updated: int = 0
    already_stored: int = 0
    duplicates: int = 0
    near_duplicates: int = 0
    conflicts: list[WarmConflict] = field(default_factory=list)
    bad: list[BadRow] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def stored(self) -> int:
        return self.added + self.updated

    @property
    def skipped(self) -> int:
        return self.already_stored + self.duplicates + self.near_duplicates + len(self.conflicts) + len(self.bad)

    def __index__(self) -> int:
        return self.stored

    __int__ = __index__

    def __eq__(self, other: object) -> bool:
        if isinstance(other, WarmReport):
            return self.as_dict() == other.as_dict()
        if isinstance(other, int) and not isinstance(other, bool):
            return self.stored == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclass it was

    def as_dict(self) -> dict[str, object]:
        out = asdict(self)
        out.update(stored=self.stored, skipped=self.skipped)
        return out


@dataclass(frozen=True, slots=True)
class WarmOptions:
    """Defaults for rows that do not say, and how to treat bad rows and near-duplicates."""

    namespace: str | None = None
    system: str | None = None
    batch_size: int = 64
    ttl_s: float | None = None
    tags: tuple[tuple[str, str], ...] = ()
    near_duplicates: float | None = None
    on_bad: Literal["raise", "skip"] = "raise"

    def __post_init__(self) -> None:
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise InvalidRequest(f"batch_size must be an int >= 1, got {self.batch_size!r}")
        _check_ttl(self.ttl_s)
        near = self.near_duplicates
        if near is not None and (isinstance(near, bool) or not isinstance(near, int | float) or not 0 < near <= 1):
            raise InvalidRequest(f"near_duplicates is a cosine similarity in (0, 1], got {near!r}")
        if self.on_bad not in ("raise", "skip"):
            raise InvalidRequest(f"on_bad must be 'raise' or 'skip', got {self.on_bad!r}")


@dataclass(slots=True)
class _Item:
    plan: Plan
    row: WarmRow
    replaces: bool = False


def warm_rows(pipeline: Pipeline, rows: Iterable[object], options: WarmOptions,
              progress: Callable[[int], None] | None = None) -> WarmReport:
    """Store ``rows`` through ``pipeline`` (see the module docstring); ``progress(n)`` after each batch."""
    started = time.perf_counter()
    if isinstance(rows, (str, bytes, Mapping)) or not isinstance(rows, Iterable):
        raise InvalidRequest(f"rows must be an iterable of (question, answer) rows, got {type(rows).__name__}")
    report = WarmReport()
    items = _unique(_valid(pipeline, rows, options, report), report)
    if progress is not None and report.skipped:
        progress(report.skipped)
    if items and options.near_duplicates is not None:
        pipeline.cache.sync()
    for start in range(0, len(items), options.batch_size):
        batch = items[start : start + options.batch_size]
        _store_batch(pipeline, _not_stored(pipeline, batch, report), options, report)
        if progress is not None:
            progress(len(batch))
    pipeline.metrics.incr("cache.warmed", report.stored)
    report.seconds = time.perf_counter() - started
    return report


def coerce_row(item: object, where: str) -> WarmRow:
    """A ``WarmRow`` from a pair, a mapping or a ``WarmRow``; ``InvalidRequest`` says what is wrong."""
    if isinstance(item, WarmRow):
        return item if item.where else WarmRow(item.question, item.answer, item.namespace, item.ttl_s, item.tags, where)
    if isinstance(item, tuple | list):
        if len(item) != 2:
            raise InvalidRequest(f"must be (question, answer), got {item!r}")
        return WarmRow(item[0], item[1], where=where)  # type: ignore[arg-type]
    if isinstance(item, Mapping):
        unknown = set(item) - {"question", "answer", "namespace", "ttl_s", "ttl", "metadata", "tags"}
        if unknown:
            raise InvalidRequest(f"unknown field(s) {', '.join(sorted(map(str, unknown)))}")
        meta = item.get("metadata", item.get("tags")) or {}
        if not isinstance(meta, Mapping):
            raise InvalidRequest(f"metadata must be an object of name: value, got {meta!r}")
        tags = tuple(sorted(check_tags((str(k), _tag_value(v)) for k, v in meta.items())))
        return WarmRow(item.get("question"), item.get("answer"), item.get("namespace"),  # type: ignore[arg-type]
                       item.get("ttl_s", item.get("ttl")), tags, where)  # type: ignore[arg-type]
    raise InvalidRequest(f"must be (question, answer), a mapping or a WarmRow, got {type(item).__name__}")


def _kind(item: object) -> str:
    return "pair" if isinstance(item, tuple | list) else "row"


def _tag_value(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidRequest(f"metadata values are strings or numbers, got {value!r}")
    return str(value)


def _check_ttl(ttl_s: object) -> None:
    if ttl_s is not None and (isinstance(ttl_s, bool) or not isinstance(ttl_s, int | float) or not ttl_s > 0):
        raise InvalidRequest(f"ttl_s must be positive (math.inf: never expire), got {ttl_s!r}")


def _valid(pipeline: Pipeline, rows: Iterable[object], options: WarmOptions, report: WarmReport) -> list[_Item]:
    """Every row validated and planned; bad ones raise or are reported (nothing is stored yet)."""
    from .pipeline import _text

    items: list[_Item] = []
    for i, item in enumerate(rows):
        where = item.where if isinstance(item, WarmRow) and item.where else f"{_kind(item)} {i}"
        try:
            row = coerce_row(item, where)
            _check_ttl(row.ttl_s)
            namespace = options.namespace if row.namespace is None else row.namespace
            plan = pipeline.plan(row.question, namespace=namespace, system=options.system, tier=None)
            answer = _text("answer", row.answer, max_chars=1_000_000)  # a plain str, whatever was passed
            tags = tuple(sorted(check_tags(dict([*options.tags, *row.tags]).items())))
        except InvalidRequest as exc:
            if options.on_bad == "raise":
                raise InvalidRequest(f"{where}: {exc}") from None
            report.bad.append(BadRow(where, str(exc)))
            continue
        ttl = options.ttl_s if row.ttl_s is None else row.ttl_s
        items.append(_Item(plan, WarmRow(plan.question, answer, plan.namespace, ttl, tags, where)))
    return items


def _unique(items: list[_Item], report: WarmReport) -> list[_Item]:
    """The first row of each exact key; repeats are duplicates (same answer) or conflicts."""
    first: dict[str, _Item] = {}
    out = []
    for item in items:
        seen = first.get(item.plan.key)
        if seen is None:
            first[item.plan.key] = item
            out.append(item)
        elif _same(seen.row.answer, item.row.answer):
            report.duplicates += 1
        else:
            report.conflicts.append(WarmConflict(item.row.where, seen.row.where, item.row.question,
                                                 seen.row.question, 1.0))
    return out


def _same(a: str, b: str) -> bool:
    return a.strip() == b.strip()


def _not_stored(pipeline: Pipeline, batch: list[_Item], report: WarmReport) -> list[_Item]:
    """Rows whose key is not stored with this answer (a stored one with another answer is replaced)."""
    now = pipeline.clock()
    store = pipeline.store
    todo = []
    for item in batch:
        entry = store.get_by_key(item.plan.key, now=now)
        if entry is not None and _same(entry.answer, item.row.answer):
            report.already_stored += 1
            continue
        item.replaces = entry is not None
        todo.append(item)
    return todo


def _store_batch(pipeline: Pipeline, todo: list[_Item], options: WarmOptions, report: WarmReport) -> None:
    if not todo:
        return
    vectors = np.asarray(pipeline.embedder.embed([item.plan.question for item in todo]), dtype=np.float32)
    if options.near_duplicates is not None:
        keep = _near_filter(pipeline, todo, vectors, options.near_duplicates, report)
        todo, vectors = [todo[i] for i in keep], vectors[keep]
    entries = [
        pipeline.new_entry(item.plan, vector, item.row.answer, model="", tier="",
                           ttl_s=item.row.ttl_s, tags=item.row.tags)
        for item, vector in zip(todo, vectors)
    ]
    if entries:
        pipeline.cache.insert(entries)
    report.updated += sum(1 for item in todo if item.replaces)
    report.added += sum(1 for item in todo if not item.replaces)


def _near_filter(pipeline: Pipeline, todo: list[_Item], vectors: np.ndarray, threshold: float,
                 report: WarmReport) -> list[int]:
    """Indices of rows to keep: none within ``threshold`` of a stored entry or a kept earlier row
    in the same language (a bilingual FAQ keeps both languages' rows: ``hits.language``)."""
    index, store, now = pipeline.cache.index, pipeline.store, pipeline.clock()
    guard = pipeline.cache.language
    sims = vectors @ vectors.T
    keep: list[int] = []
    for j, item in enumerate(todo):

        def same_language(question: str) -> bool:
            return guard is None or guard.mismatch(item.row.question, question) is None

        near = _nearest_stored(index, store, item, vectors[j], now, threshold, same_language)
        earlier = [(float(sims[i, j]), i) for i in keep if todo[i].plan.scope == item.plan.scope
                   and sims[i, j] >= threshold and same_language(todo[i].row.question)]
        best_kept = max(earlier, default=None)
        if best_kept is not None and (near is None or best_kept[0] > near[0]):
            other = todo[best_kept[1]]
            near = (best_kept[0], other.row.where, other.row.question, other.row.answer)
        if near is None:
            keep.append(j)
        elif _same(near[3], item.row.answer):
            report.near_duplicates += 1
        else:
            report.conflicts.append(WarmConflict(item.row.where, near[1], item.row.question, near[2], near[0]))
    return keep


def _nearest_stored(index, store, item: _Item, vector: np.ndarray, now: float, threshold: float,
                    same_language: Callable[[str], bool]) -> tuple[float, str, str, str] | None:
    """(similarity, where, question, answer) of the nearest stored entry in the row's scope within
    ``threshold``, in the row's language and not under its own key; None when there is none."""
    for entry_id, similarity in index.search(vector, scope=item.plan.scope, k=4):
        if similarity < threshold:
            break
        entry = store.get(entry_id, now=now)
        if entry is not None and entry.key != item.plan.key and same_language(entry.question):
            return similarity, f"stored entry {entry_id}", entry.question, entry.answer
    return None
