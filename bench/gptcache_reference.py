"""GPTCache 0.1.44's similar cache, set up as its README does, as the reference for bench/cache_latency.py.

Its embedding function (GPTCache's ``SBERT`` adapter over the same MiniLM semroute uses) and
its LLM call are timed on their own, and the time of its internal steps is read from its own
``Report`` counters, so a lookup splits into embedding, faiss search, sqlite fetch and the rest
(evaluation, LRU bookkeeping and the hit report it writes to sqlite). It keeps GPTCache's
defaults except two: ``max_size`` (the default 1000 would evict most of a 10k cache) and the
similarity threshold, set to the one equivalent to semroute's cosine ``min_similarity``.
It is not a wrapper to use GPTCache with; it exists only to time it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

__all__ = ["GPTCacheRef"]

_STEPS = {"search": "op_search", "fetch": "op_data", "evaluate": "op_evaluation", "save": "op_save"}


class _Closed:
    """Stands in for the data manager after ``close``: GPTCache's atexit hook closes it again."""

    def close(self) -> None:
        pass


class GPTCacheRef:
    """GPTCache on its own ``Cache`` object (not the global one), sqlite + faiss in ``data_dir``."""

    def __init__(
        self, data_dir: str, *, model_dir: str, entries: int, min_similarity: float, llm: Callable[[str], str]
    ) -> None:
        from gptcache import Cache, Config
        from gptcache.embedding import SBERT
        from gptcache.manager import CacheBase, VectorBase, get_data_manager
        from gptcache.processor.pre import get_prompt
        from gptcache.similarity_evaluation import SearchDistanceEvaluation

        self.sbert = SBERT(model_dir)
        self.embed_ms = self.embed_cpu_ms = self.llm_ms = 0.0
        self.steps: dict[str, float] = {}
        self._llm = llm
        manager = get_data_manager(
            CacheBase("sqlite", sql_url=f"sqlite:///{data_dir}/sqlite.db"),
            VectorBase("faiss", dimension=384, index_path=f"{data_dir}/faiss.index"),
            max_size=2 * entries,
        )
        # faiss L2 on unit vectors: rank = 4 - |a-b|^2 = 2 + 2 cos, accepted when rank >= 4 t,
        # so cos >= min_similarity  <=>  t = (1 + min_similarity) / 2.
        config = Config(similarity_threshold=(1 + min_similarity) / 2)
        self.cache = Cache()
        self.cache.init(
            pre_embedding_func=get_prompt,
            embedding_func=self._embed,
            data_manager=manager,
            similarity_evaluation=SearchDistanceEvaluation(),
            config=config,
        )

    def _embed(self, data, **kwargs):
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            return self.sbert.to_embeddings(data, **kwargs)
        finally:
            self.embed_ms = (time.perf_counter() - t0) * 1000
            self.embed_cpu_ms = (time.thread_time() - c0) * 1000

    def _totals(self) -> dict[str, float]:
        report = self.cache.report
        return {step: getattr(report, attr).total_time for step, attr in _STEPS.items()}

    def _timed(self, call: Callable[[], object]) -> object:
        before = self._totals()
        result = call()
        after = self._totals()
        self.steps = {step: (after[step] - before[step]) * 1000 for step in _STEPS}
        return result

    def load(self, pairs: list[tuple[str, str]], vectors: np.ndarray) -> None:
        """Bulk import with vectors already computed by the same model."""
        questions, answers = [q for q, _ in pairs], [a for _, a in pairs]
        self.cache.data_manager.import_data(questions, answers, list(vectors), [None] * len(pairs))

    def get(self, question: str):
        """A lookup (GPTCache's ``api.get``): the cached answer or None."""
        from gptcache.adapter.api import get

        return self._timed(lambda: get(question, cache_obj=self.cache))

    def ask(self, question: str) -> bool:
        """Look up; on a miss call the LLM and save its answer. True when the LLM was called."""
        from gptcache.adapter.adapter import adapt

        called: list[bool] = []

        def llm(*_args, prompt: str, **_kwargs) -> str:
            t0 = time.perf_counter()
            text = self._llm(prompt)
            self.llm_ms = (time.perf_counter() - t0) * 1000
            called.append(True)
            return text

        def save(data, update_cache, *_args, **_kwargs):
            update_cache(data)
            return data

        self._timed(lambda: adapt(llm, lambda data: data, save, prompt=question, cache_obj=self.cache))
        return bool(called)

    def close(self) -> None:
        self.cache.data_manager.close()
        self.cache.data_manager = _Closed()
