"""Test kit for load tests: client threads that call at once, counting answers and errors."""

from __future__ import annotations

import threading
from collections.abc import Callable


def closed_loop(call: Callable[[], object], clients: int, each: int) -> tuple[int, list[BaseException]]:
    """``clients`` threads calling ``call`` ``each`` times; (answers, errors)."""
    answers: list[object] = []
    errors: list[BaseException] = []
    start = threading.Barrier(clients)

    def client() -> None:
        start.wait()
        for _ in range(each):
            try:
                answers.append(call())
            except BaseException as exc:  # noqa: BLE001 - collected and asserted by the caller
                errors.append(exc)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return len(answers), errors
