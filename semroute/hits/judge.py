"""The grey-zone judge: a small chat model asked whether a cached answer answers a query.

The verifier rejects some true paraphrases only because their cosine is low: "How fast can I
drive inside the city?" vs "What is the speed limit in the city?" scores 0.785, under the pair
verifier's 0.86 floor, although its pair model sees nothing that differs (P = 0.81). Such a
rejected but plausible candidate is in the *grey zone*. With ``CacheSettings(judge=JudgeSettings())``
(off by default) the best grey-zone candidate of a missed lookup is shown, with its cached
answer, to the small tier's model in one short yes/no prompt (temperature 0, a few tokens). "yes"
serves it as a semantic hit; anything else (no, a reply that is not yes/no, an error, a timeout)
is a miss and the request goes on to the model as usual. Verdicts are cached in-process.

The judge only *adds* hits. It never sees accepted candidates (a model call on every hit would
cost more than the hit saves) nor candidates the pair model vetoes (city vs highway: a small
model is easily swayed by a fluent answer to a neighbouring question). Calls go through the
tier's ``Pool``, so balancing, health, failover and limits apply. This module is not a verifier
(it does I/O); it does not search, embed or store.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from ..errors import SemrouteError
from ..metrics import Metrics
from ..settings import JudgeSettings
from ..types import Candidate, Completion, Hit, Message, Verdict
from .language import LanguageGuard
from .verify import PLACEHOLDER_ANSWER, Verifier, pair_scorer

__all__ = ["AnswerJudge", "ChatPool", "GreyZone", "Judgement", "judge_prompt", "parse_reply"]


@runtime_checkable
class ChatPool(Protocol):
    """What the judge needs from a tier: one complete answer with Ollama options (a ``Pool``)."""

    def chat(self, model: str, messages: Sequence[Message], *, options: Mapping[str, Any] | None = None) -> Completion: ...

    async def achat(
        self, model: str, messages: Sequence[Message], *, options: Mapping[str, Any] | None = None
    ) -> Completion: ...

log = logging.getLogger("semroute")

Reply = Literal["yes", "no", "unparsed", "error"]

# Deterministic and short: the verdict is cached, and a yes/no needs one token (a few for "**Yes**").
JUDGE_OPTIONS: dict[str, Any] = {"temperature": 0, "num_predict": 4}
_TIMEOUTS = (TimeoutError, asyncio.TimeoutError, concurrent.futures.TimeoutError)
_YES = {"yes", "y", "true", "correct", "evet"}
_NO = {"no", "n", "false", "incorrect", "hayır", "hayir"}
_THINK = re.compile(r"<think>.*?(</think>|$)", re.DOTALL | re.IGNORECASE)
_WORD = re.compile(r"\w+", re.UNICODE)
_PLACEHOLDERS = {"", PLACEHOLDER_ANSWER}  # nothing to judge: eval rows without an answer column


@dataclass(frozen=True, slots=True)
class Judgement:
    """One judge verdict: the model's reply, whether it came from the judge's cache, and its cost."""

    reply: Reply
    cached: bool = False
    latency_ms: float = 0.0

    @property
    def accepted(self) -> bool:
        return self.reply == "yes"


def judge_prompt(query: str, cached_question: str, answer: str) -> str:
    """The one yes/no question the judge asks (without a recorded answer: about the questions)."""
    if answer.strip() in _PLACEHOLDERS:
        return (f"Question: {query}\nStored question: {cached_question}\n"
                "Would a correct answer to the stored question also correctly answer the Question? "
                "Reply with yes or no only.")
    return (f"Question: {query}\nStored question: {cached_question}\nStored answer: {answer}\n"
            "Does the stored answer correctly answer the Question? Reply with yes or no only.")


def parse_reply(text: str) -> bool | None:
    """True for yes, False for no, None for anything else (the first word decides; markup ignored)."""
    words = _WORD.findall(_THINK.sub(" ", text).casefold())
    if words[:1] == ["answer"]:  # "Answer: yes"
        words = words[1:]
    if not words:
        return None
    return True if words[0] in _YES else False if words[0] in _NO else None


class AnswerJudge:
    """Asks ``model`` on ``pool`` one yes/no question per (query, cached question, answer).

    Verdicts (yes, no, unparsed) are kept in a bounded LRU keyed by a hash of the model and the
    three texts, so a repeat costs nothing; errors and timeouts are not kept (the next lookup asks
    again). ``judge`` waits at most ``timeout_s`` (the call runs in a small worker pool, and a late
    reply still fills the cache); ``ajudge`` cancels the call at ``timeout_s``.
    """

    def __init__(
        self, pool: ChatPool, model: str, *, timeout_s: float = 5.0, cache_size: int = 4096,
        metrics: Metrics | None = None, workers: int = 4,
    ) -> None:
        self.pool = pool
        self.model = model
        self.timeout_s = float(timeout_s)
        self.metrics = metrics if metrics is not None else Metrics()
        self._size = cache_size
        self._verdicts: OrderedDict[str, Reply] = OrderedDict()
        self._lock = threading.Lock()
        self._workers = workers
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    def judge(self, query: str, cached_question: str, answer: str) -> Judgement:
        key, prompt = self._key(query, cached_question, answer), judge_prompt(query, cached_question, answer)
        if (hit := self._remembered(key)) is not None:
            return hit
        started = time.perf_counter()
        future = self._pool_of_workers().submit(self._call, key, prompt)
        try:
            reply = future.result(timeout=self.timeout_s)
        except _TIMEOUTS:
            future.cancel()  # still queued behind hung calls: never sent
            return self._failed("timeout", f"no reply within {self.timeout_s:g}s", started)
        except SemrouteError as exc:
            return self._failed("error", str(exc), started)
        return Judgement(reply, False, (time.perf_counter() - started) * 1000)

    async def ajudge(self, query: str, cached_question: str, answer: str) -> Judgement:
        key, prompt = self._key(query, cached_question, answer), judge_prompt(query, cached_question, answer)
        if (hit := self._remembered(key)) is not None:
            return hit
        started = time.perf_counter()
        try:
            reply = await asyncio.wait_for(self._acall(key, prompt), self.timeout_s)
        except _TIMEOUTS:
            return self._failed("timeout", f"no reply within {self.timeout_s:g}s", started)
        except SemrouteError as exc:
            return self._failed("error", str(exc), started)
        return Judgement(reply, False, (time.perf_counter() - started) * 1000)

    def close(self) -> None:
        """Stop the worker threads (a call still hanging ends with its backend's own timeout)."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    # -- internals ------------------------------------------------------------------------

    def _key(self, query: str, cached_question: str, answer: str) -> str:
        raw = f"{self.model}\0{query}\0{cached_question}\0{answer}".encode("utf-8", "surrogatepass")
        return hashlib.sha256(raw).hexdigest()

    def _remembered(self, key: str) -> Judgement | None:
        with self._lock:
            reply = self._verdicts.get(key)
            if reply is not None:
                self._verdicts.move_to_end(key)
        if reply is None:
            return None
        self.metrics.incr("judge.cache_hits")
        return Judgement(reply, True, 0.0)

    def _messages(self, prompt: str) -> tuple[Message, ...]:
        return (Message("user", prompt),)

    def _call(self, key: str, prompt: str) -> Reply:
        started = time.perf_counter()
        completion = self.pool.chat(self.model, self._messages(prompt), options=JUDGE_OPTIONS)
        return self._record(key, completion, started)

    async def _acall(self, key: str, prompt: str) -> Reply:
        started = time.perf_counter()
        completion = await self.pool.achat(self.model, self._messages(prompt), options=JUDGE_OPTIONS)
        return self._record(key, completion, started)

    def _record(self, key: str, completion: Completion, started: float) -> Reply:
        verdict = parse_reply(completion.text)
        reply: Reply = "unparsed" if verdict is None else "yes" if verdict else "no"
        m = self.metrics
        m.observe("judge.call", (time.perf_counter() - started) * 1000)
        m.incr("judge.calls")
        m.incr(f"judge.{reply}")
        m.incr("judge.tokens.prompt", completion.prompt_tokens)
        m.incr("judge.tokens.completion", completion.completion_tokens)
        if verdict is None:
            log.info("judge reply %r is neither yes nor no; counted as no", completion.text[:80])
        if self._size:
            with self._lock:
                self._verdicts[key] = reply
                self._verdicts.move_to_end(key)
                while len(self._verdicts) > self._size:
                    self._verdicts.popitem(last=False)
        return reply

    def _failed(self, kind: str, why: str, started: float) -> Judgement:
        self.metrics.incr("judge.errors")
        if kind == "timeout":
            self.metrics.incr("judge.timeouts")
        log.warning("grey-zone judge failed (%s); treating it as a miss", why)
        return Judgement("error", False, (time.perf_counter() - started) * 1000)

    def _pool_of_workers(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(self._workers, "semroute-judge")
            return self._executor


Verdicts = Sequence[tuple[Candidate, Verdict]]  # the cache's (candidate, verdict) pairs of one lookup


class GreyZone:
    """The router's step: pick a missed lookup's grey-zone candidate and let the judge decide.

    ``pool`` and ``verifier`` are functions returning the tier's pool and the cache's verifier,
    so building this does no I/O. A verifier with a pair model (``PairScorer``, possibly behind
    the cache's similarity gate) also filters by it; so does the cache's ``LanguageGuard``
    (``language``), so the judge is never asked about a cached question in another language.
    """

    def __init__(
        self, settings: JudgeSettings, *, model: str, pool: Callable[[], ChatPool],
        verifier: Callable[[], Verifier] | None = None, metrics: Metrics | None = None,
        language: Callable[[], LanguageGuard | None] | None = None,
    ) -> None:
        self.settings = settings
        self.model = model
        self.metrics = metrics if metrics is not None else Metrics()
        self._pool = pool
        self._verifier = verifier
        self._language = language
        self._judge: AnswerJudge | None = None
        self._lock = threading.Lock()

    @property
    def judge(self) -> AnswerJudge:
        with self._lock:
            if self._judge is None:
                s = self.settings
                self._judge = AnswerJudge(self._pool(), self.model, timeout_s=s.timeout_s,
                                          cache_size=s.cache_size, metrics=self.metrics)
            return self._judge

    def pick(self, query: str, judged: Verdicts) -> tuple[Candidate, Verdict, float | None] | None:
        """The nearest rejected candidate with cosine >= min_similarity, in the query's language,
        that the pair model does not veto."""
        if any(verdict.accepted for _, verdict in judged):
            return None  # a hit: nothing to judge
        probability = self._probability()
        guard = None if self._language is None else self._language()
        for candidate, verdict in sorted(judged, key=lambda pair: -pair[0].similarity):
            if candidate.similarity < self.settings.min_similarity:
                break
            if guard is not None and guard.mismatch(query, candidate.entry.question) is not None:
                continue
            p = None if probability is None else float(
                probability(query, candidate.entry.question, candidate.similarity))
            if p is None or p >= self.settings.min_probability:
                return candidate, verdict, p
        return None

    def run(self, query: str, judged: Verdicts, timings: dict[str, float] | None = None) -> Hit | None:
        """Judge the grey-zone candidate, if any, waiting at most ``timeout_s``."""
        started = time.perf_counter()
        picked = self.pick(query, judged)
        if picked is None:
            return None
        entry = picked[0].entry
        return self._decided(picked, self.judge.judge(query, entry.question, entry.answer), started, timings)

    async def arun(self, query: str, judged: Verdicts, timings: dict[str, float] | None = None) -> Hit | None:
        """``run`` for event loops: the model call never blocks the loop."""
        started = time.perf_counter()
        picked = self.pick(query, judged)
        if picked is None:
            return None
        entry = picked[0].entry
        judgement = await self.judge.ajudge(query, entry.question, entry.answer)
        return self._decided(picked, judgement, started, timings)

    def close(self) -> None:
        if self._judge is not None:
            self._judge.close()

    def _probability(self) -> Callable[[str, str, float], float] | None:
        scorer = pair_scorer(self._verifier() if self._verifier is not None else None)
        return None if scorer is None else scorer.probability

    def _decided(self, picked: tuple[Candidate, Verdict, float | None], judgement: Judgement, started: float,
                 timings: dict[str, float] | None) -> Hit | None:
        candidate, verdict, p = picked
        elapsed = (time.perf_counter() - started) * 1000  # the whole step: picking, cache, model call
        self.metrics.incr("judge.grey")
        self.metrics.observe("step.judge", elapsed)
        if timings is not None:
            timings["judge"] = elapsed
        if not judgement.accepted:
            return None
        self.metrics.incr("judge.hits")
        pair = "" if p is None else f", pair model {p:.3f}"
        cached = " (cached verdict)" if judgement.cached else ""
        reason = (f"judge {self.model}: yes{cached}; grey zone: cosine {candidate.similarity:.3f} "
                  f">= {self.settings.min_similarity:.3f}{pair}; verifier: {verdict.reason}")
        score = max(0.0, min(1.0, candidate.similarity))
        return Hit(entry=candidate.entry, source="semantic", similarity=candidate.similarity,
                   verdict=Verdict(True, score, reason))
