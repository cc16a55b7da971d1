"""``FakeFleet``: several ``FakeOllama`` servers with different speeds, capacities and faults.

For tests and load benchmarks of the balancing pool: a fleet of N instances where, say, one is
three times slower, one takes two requests at a time and one fails its fifth request. The fleet
only starts, stops and lists its servers; it does not balance anything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from ..errors import ConfigError
from .fake_config import Capacity, FakeStats, Fault, Timing
from .fake_ollama import DEFAULT_MODELS, FakeOllama

__all__ = ["FakeFleet", "InstanceSpec"]


@dataclass(frozen=True, slots=True)
class InstanceSpec:
    """One fleet member: ``speed`` multiplies the fleet's ``Timing`` (2.0 is twice as slow)."""

    speed: float = 1.0
    capacity: Capacity = Capacity()
    fault: Fault | None = None
    models: tuple[str, ...] | None = None  # None: the fleet's models

    def __post_init__(self) -> None:
        if isinstance(self.speed, bool) or not isinstance(self.speed, (int, float)) or self.speed < 0:
            raise ConfigError(f"InstanceSpec.speed must be a number >= 0, got {self.speed!r}")
        if self.fault is not None and self.fault.kind == "refuse":
            raise ConfigError("start a fleet member refusing with fleet[i].set_fault('refuse') after start")


class FakeFleet:
    """N fake Ollama servers on loopback. Use as a context manager.

    ``FakeFleet(3)`` makes three identical instances; ``FakeFleet([InstanceSpec(speed=1),
    InstanceSpec(speed=3, capacity=Capacity(max_parallel=1))], timing=Timing(token_delay_ms=5))``
    makes a fast and a slow one. ``reply`` scripts every member's answers (see ``FakeOllama``).
    """

    def __init__(
        self,
        specs: int | Sequence[InstanceSpec],
        *,
        models: Iterable[str] = DEFAULT_MODELS,
        timing: Timing = Timing(),
        extra_words: int = 8,
        reply: Callable[[str, str], str | None] | None = None,
    ) -> None:
        if isinstance(specs, int) and not isinstance(specs, bool):
            if specs < 1:
                raise ConfigError(f"a fleet needs at least one instance, got {specs}")
            specs = [InstanceSpec()] * specs
        specs = list(specs)
        if not specs or not all(isinstance(s, InstanceSpec) for s in specs):
            raise ConfigError("FakeFleet takes a count or a non-empty sequence of InstanceSpec")
        models = tuple(models)
        self.specs = tuple(specs)
        self.instances = tuple(
            FakeOllama(
                spec.models or models,
                timing=timing.scaled(spec.speed),
                capacity=spec.capacity,
                extra_words=extra_words,
                reply=reply,
            )
            for spec in specs
        )

    @property
    def urls(self) -> list[str]:
        return [fake.url for fake in self.instances]

    def start(self) -> FakeFleet:
        started: list[FakeOllama] = []
        try:
            for fake, spec in zip(self.instances, self.specs):
                fake.start()
                started.append(fake)
                if spec.fault is not None:
                    fake.set_fault(spec.fault)
        except BaseException:
            for fake in started:
                fake.stop()
            raise
        return self

    def stop(self) -> None:
        for fake in self.instances:
            fake.stop()

    def __enter__(self) -> FakeFleet:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __len__(self) -> int:
        return len(self.instances)

    def __iter__(self) -> Iterator[FakeOllama]:
        return iter(self.instances)

    def __getitem__(self, index: int) -> FakeOllama:
        return self.instances[index]

    def stats(self) -> tuple[FakeStats, ...]:
        return tuple(fake.stats() for fake in self.instances)

    def count(self, endpoint: str | None = None, model: str | None = None, *, completed: bool = False) -> int:
        """Requests received (or completed) across the fleet."""
        return sum(s.count(endpoint, model, completed=completed) for s in self.stats())
