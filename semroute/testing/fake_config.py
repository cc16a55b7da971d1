"""Value objects that configure and observe a ``FakeOllama``: speed, capacity, faults, counters.

``Timing`` says how slow the fake is, ``Capacity`` how many requests it runs at once and queues
(Ollama's ``OLLAMA_NUM_PARALLEL`` and ``OLLAMA_MAX_QUEUE``), ``Fault`` what goes wrong and for
how many requests; ``Counters`` records what the fake sees and ``FakeStats`` is a frozen
snapshot of it. No sockets and no threads here; the server lives in ``fake_ollama``.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, replace
from typing import Literal

from ..errors import ConfigError

__all__ = ["Timing", "Capacity", "Fault", "FaultKind", "FaultSchedule", "FakeStats", "Counters", "INFERENCE_ENDPOINTS", "ENDPOINTS"]

FaultKind = Literal["refuse", "error", "hang", "drop", "busy"]
FAULT_KINDS: tuple[str, ...] = ("refuse", "error", "hang", "drop", "busy")
# Endpoints that run the model (and so take a parallel slot); the others are metadata.
INFERENCE_ENDPOINTS = frozenset({"chat", "generate", "embed"})
ENDPOINTS = INFERENCE_ENDPOINTS | {"tags", "ps", "version", "root"}


@dataclass(frozen=True, slots=True)
class Timing:
    """How slow the fake is, in milliseconds.

    A streamed answer takes ``latency_ms + ttft_ms`` to its first token, then ``token_delay_ms``
    between tokens; a non-streamed answer arrives after the same total time.

    ``parallel_speedup`` makes streams share one GPU as Ollama's do: entry ``k-1`` is the total
    token throughput with ``k`` requests holding slots, as a multiple of one stream's (so it
    starts at 1.0; the last entry holds for more streams). Each stream then waits
    ``token_delay_ms * k / parallel_speedup[k-1]`` per token, re-evaluated as requests come and
    go. Empty (the default): every stream runs at full speed however many run.
    """

    latency_ms: float = 0.0
    ttft_ms: float = 0.0
    token_delay_ms: float = 0.0
    parallel_speedup: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        for name in ("latency_ms", "ttft_ms", "token_delay_ms"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"Timing.{name} must be a number >= 0, got {value!r}")
        curve = tuple(self.parallel_speedup)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in curve):
            raise ConfigError(f"Timing.parallel_speedup must be numbers > 0, got {self.parallel_speedup!r}")
        object.__setattr__(self, "parallel_speedup", curve)

    def slowdown(self, streams: int) -> float:
        """How much slower one stream runs with ``streams`` requests in slots (1.0 without a curve)."""
        curve = self.parallel_speedup
        if not curve or streams <= 1:
            return 1.0
        return streams / curve[min(streams, len(curve)) - 1]

    def scaled(self, factor: float) -> Timing:
        """The same profile ``factor`` times slower (a fleet's slow and fast instances)."""
        if factor < 0:
            raise ConfigError(f"a speed factor must be >= 0, got {factor!r}")
        return Timing(
            self.latency_ms * factor, self.ttft_ms * factor, self.token_delay_ms * factor, self.parallel_speedup
        )


@dataclass(frozen=True, slots=True)
class Capacity:
    """Concurrency like Ollama's: ``max_parallel`` generate at once, ``queue`` more wait.

    Beyond both the fake answers 503 (with ``Retry-After`` when ``retry_after_s`` is set;
    real Ollama sends none).
    """

    max_parallel: int = 4
    queue: int = 512
    retry_after_s: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.max_parallel, int) or self.max_parallel < 1:
            raise ConfigError(f"Capacity.max_parallel must be an int >= 1, got {self.max_parallel!r}")
        if not isinstance(self.queue, int) or self.queue < 0:
            raise ConfigError(f"Capacity.queue must be an int >= 0, got {self.queue!r}")
        if self.retry_after_s is not None and self.retry_after_s < 0:
            raise ConfigError(f"Capacity.retry_after_s must be >= 0 or None, got {self.retry_after_s!r}")


@dataclass(frozen=True, slots=True)
class Fault:
    """Something that goes wrong, for ``count`` matching requests (None: until cleared).

    Kinds: ``refuse`` (stop listening: connections are refused; ignores count/endpoints),
    ``error`` (answer ``status``, 500 by default), ``busy`` (answer 503 as a full Ollama does),
    ``hang`` (read the request, never answer until the client leaves or the fake stops),
    ``drop`` (close the connection after ``after_chunks`` streamed chunks; before any response
    for a non-streamed request). ``after`` lets that many matching requests through first.
    """

    kind: FaultKind
    count: int | None = None
    after: int = 0
    after_chunks: int = 1
    status: int = 500
    endpoints: frozenset[str] = INFERENCE_ENDPOINTS

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ConfigError(f"Fault.kind must be one of {FAULT_KINDS}, got {self.kind!r}")
        if self.count is not None and (not isinstance(self.count, int) or self.count < 1):
            raise ConfigError(f"Fault.count must be an int >= 1 or None, got {self.count!r}")
        if self.kind == "refuse" and (self.count is not None or self.after):
            raise ConfigError("a 'refuse' fault stops listening; it cannot count requests")
        if not isinstance(self.after, int) or self.after < 0:
            raise ConfigError(f"Fault.after must be an int >= 0, got {self.after!r}")
        if not isinstance(self.after_chunks, int) or self.after_chunks < 0:
            raise ConfigError(f"Fault.after_chunks must be an int >= 0, got {self.after_chunks!r}")
        if not 400 <= self.status <= 599:
            raise ConfigError(f"Fault.status must be an HTTP error status, got {self.status!r}")
        endpoints = frozenset((self.endpoints,) if isinstance(self.endpoints, str) else self.endpoints)
        if not endpoints or not endpoints <= ENDPOINTS:
            raise ConfigError(f"Fault.endpoints must be a non-empty subset of {sorted(ENDPOINTS)}")
        object.__setattr__(self, "endpoints", endpoints)

    def with_count(self, count: int | None) -> Fault:
        return replace(self, count=count)


class FaultSchedule:
    """The fault in force and what is left of it: requests still spared (``after``) and still
    hit (``count``). Touched only on the fake's loop, so it needs no lock."""

    def __init__(self) -> None:
        self.fault: Fault | None = None
        self._spare = 0
        self._left: int | None = None

    @property
    def refusing(self) -> bool:
        """A "refuse" fault is in force: the fake stops listening and drops its connections."""
        return self.fault is not None and self.fault.kind == "refuse"

    def install(self, fault: Fault | None) -> None:
        self.fault = fault
        self._spare = fault.after if fault is not None else 0
        self._left = fault.count if fault is not None else None

    def take(self, endpoint: str) -> Fault | None:
        """The fault that hits this request, if any; consumes ``after`` and ``count``."""
        fault = self.fault
        if fault is None or fault.kind == "refuse" or endpoint not in fault.endpoints:
            return None
        if self._spare > 0:
            self._spare -= 1
            return None
        if self._left is not None:
            self._left -= 1
            if self._left <= 0:
                self.install(None)
        return fault


@dataclass(frozen=True, slots=True)
class FakeStats:
    """What a ``FakeOllama`` has seen. ``requests``/``completed`` are (endpoint, model, n) rows.

    ``completed`` counts answers sent in full; ``rejected`` counts 503s for a full queue;
    ``faults`` counts injected faults by kind; ``max_concurrency`` is the most requests that
    generated at once, ``max_pending`` the most that were running or queued; ``connections``
    counts TCP connections accepted and ``open_connections`` those still open.
    """

    requests: tuple[tuple[str, str, int], ...] = ()
    completed: tuple[tuple[str, str, int], ...] = ()
    rejected: int = 0
    faults: tuple[tuple[str, int], ...] = ()
    max_concurrency: int = 0
    max_pending: int = 0
    active: int = 0
    pending: int = 0
    connections: int = 0
    open_connections: int = 0
    tokens: int = 0

    def count(self, endpoint: str | None = None, model: str | None = None, *, completed: bool = False) -> int:
        """Requests received (or completed) for an endpoint and/or model; None means any."""
        rows = self.completed if completed else self.requests
        return sum(n for e, m, n in rows if endpoint in (None, e) and model in (None, m))

    def fault_count(self, kind: str | None = None) -> int:
        return sum(n for k, n in self.faults if kind in (None, k))


class Counters:
    """Thread-safe counters: written on the server loop, read by tests in other threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active = self._pending = self._open = 0  # live gauges: a reset keeps them
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._requests: Counter[tuple[str, str]] = Counter()
            self._completed: Counter[tuple[str, str]] = Counter()
            self._faults: Counter[str] = Counter()
            self._rejected = self._max_active = self._max_pending = self._connections = self._tokens = 0

    def request(self, endpoint: str, model: str) -> None:
        with self._lock:
            self._requests[(endpoint, model)] += 1

    def completed(self, endpoint: str, model: str, tokens: int = 0) -> None:
        with self._lock:
            self._completed[(endpoint, model)] += 1
            self._tokens += tokens

    def fault(self, kind: str) -> None:
        with self._lock:
            self._faults[kind] += 1

    def connection(self) -> None:
        with self._lock:
            self._connections += 1
            self._open += 1

    def disconnection(self) -> None:
        with self._lock:
            self._open -= 1

    def try_enter(self, limit: int) -> bool:
        """Count a request as pending unless ``limit`` are already running or queued."""
        with self._lock:
            if self._pending >= limit:
                self._rejected += 1
                return False
            self._pending += 1
            self._max_pending = max(self._max_pending, self._pending)
            return True

    def leave(self) -> None:
        with self._lock:
            self._pending -= 1

    @property
    def active(self) -> int:
        """Requests holding a parallel slot right now."""
        with self._lock:
            return self._active

    def start(self) -> None:
        with self._lock:
            self._active += 1
            self._max_active = max(self._max_active, self._active)

    def finish(self) -> None:
        with self._lock:
            self._active -= 1

    def snapshot(self) -> FakeStats:
        with self._lock:
            return FakeStats(
                requests=tuple(sorted((e, m, n) for (e, m), n in self._requests.items())),
                completed=tuple(sorted((e, m, n) for (e, m), n in self._completed.items())),
                rejected=self._rejected,
                faults=tuple(sorted(self._faults.items())),
                max_concurrency=self._max_active,
                max_pending=self._max_pending,
                active=self._active,
                pending=self._pending,
                connections=self._connections,
                open_connections=self._open,
                tokens=self._tokens,
            )
