"""What one tier's pool can take at once, live: the numbers of the README's sizing rule.

``slots`` requests run at once, ``queue_max`` more wait up to ``queue_timeout_s``; beyond
``admits_at_once`` concurrent requests ``Overloaded`` comes at once. ``answers_per_s`` is slots
over the instances' mean EWMA latency (None until measured). ``Router.stats()["sizing"]``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .pool import Pool

__all__ = ["sizing"]


def sizing(pool: Pool, model: str) -> dict[str, float | int | None]:
    """The capacity of ``pool``'s instances that serve ``model``, and what is in use now."""
    states = pool.states(model)
    queue = pool.settings.queue
    slots = sum(s.limit for s in states)
    latencies = [s.ewma_latency_s for s in states if s.ewma_latency_s]
    return {
        "instances": len(states),
        "slots": slots,
        "queue_max": queue.max_length,
        "queue_timeout_s": queue.timeout_s,
        "admits_at_once": slots + queue.max_length,
        "in_flight": sum(s.in_flight for s in states),
        "queued": pool.queue_length,
        "answers_per_s": slots / (sum(latencies) / len(latencies)) if latencies else None,
    }
