"""The standing reliability suite (issue 12): faults under load with recovery, SIGKILL durability
of the memory store's journal, cross-namespace isolation. Credential redaction, fuzzing, the
recovery defect and deadlines have their own files, all marked ``reliability``; long versions
(minutes of load, tens of thousands of fuzzed calls, a soak with RSS tracking) are in
``bench/reliability.py``.

Faults run against a ``FakeFleet`` over real HTTP with the pool's clock injected, so cooldowns
pass by ``advance`` and nothing here waits on wall-clock time for a decision.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable

import pytest

from reliability_helpers import SMALL, light_router
from semroute.backends.ollama import OllamaBackend
from semroute.backends.pool import Instance, Pool
from semroute.cache import MemoryStore
from semroute.errors import BackendError, SemrouteError
from semroute.settings import Timeout
from load_kit import closed_loop
from semroute.testing import FakeFleet, FakeOllama, Timing, answer_text, ManualClock
from semroute.types import Message

pytestmark = pytest.mark.reliability

ASK = [Message("user", "What is the speed limit in a city?")]
FAST = Timing(latency_ms=3.0, ttft_ms=1.0, token_delay_ms=0.5)




def inject(fleet: FakeFleet, kind: str) -> Callable[[], None]:
    """Break instance 1 in one of the ways a real one breaks; returns how to heal it."""
    fake = fleet[1]
    if kind == "restart":
        fake.stop()
        return fake.start  # same port: the pool finds it where it was
    options = {"error": {"status": 500}, "drop": {"after_chunks": 0}}.get(kind, {})
    fake.set_fault(kind, **options)
    return fake.clear_fault


@pytest.mark.parametrize("kind", ["refuse", "error", "busy", "hang", "drop", "restart"])
def test_a_fault_under_load_loses_nothing_and_the_instance_recovers(kind: str) -> None:
    clock = ManualClock()
    with FakeFleet(3, models=(SMALL,), timing=FAST) as fleet:
        timeout = Timeout(connect=1.0, read=2.0)  # a hung request fails over after 2 s
        pool = Pool([Instance(OllamaBackend(u, timeout=timeout), limit=4) for u in fleet.urls], clock=clock)
        with pool:
            assert closed_loop(lambda: pool.chat(SMALL, ASK), 12, 2) == (24, [])
            heal = inject(fleet, kind)
            answered, errors = closed_loop(lambda: pool.chat(SMALL, ASK), 12, 4)
            assert (answered, errors) == (48, []), errors  # every request failed over: none lost
            state = pool.states(SMALL)[1]
            assert state.breaker == "open" and state.reopens_in_s <= 1.0, state  # one incident, one trip
            heal()
            # The half-open probe closes it; on a machine loaded enough to time the probe out, the
            # next cooldown (2 s) gets another probe: it must be closed within a few cooldowns.
            for _ in range(3):
                clock.advance(pool.states(SMALL)[1].reopens_in_s)
                assert closed_loop(lambda: pool.chat(SMALL, ASK), 12, 1) == (12, [])
                if pool.states(SMALL)[1].breaker == "closed":
                    break
            for fake in fleet:
                fake.reset_stats()
            assert closed_loop(lambda: pool.chat(SMALL, ASK), 12, 15) == (180, [])
            served = [s.count("chat", completed=True) for s in fleet.stats()]
            assert served[1] >= 0.8 * sum(served) / 3, served  # its fair share again
            assert pool.states(SMALL)[1].breaker == "closed"


def test_a_stream_dropped_mid_answer_surfaces_and_is_never_stored(tmp_path) -> None:
    with FakeOllama([SMALL], timing=FAST) as fake, light_router([fake.url], tmp_path) as router:
        router.ask("warm up")
        fake.set_fault("drop", after_chunks=2, count=1)
        got: list[str] = []
        with pytest.raises(BackendError):
            for chunk in router.stream("What is the speed limit on a motorway?"):
                got.append(chunk.text)
        assert got  # text reached the caller, then the error (never repeated text)
        answer = router.ask("What is the speed limit on a motorway?")
        assert answer.source == "small"  # a miss: the partial answer was not stored
        assert answer.text == answer_text(SMALL, "What is the speed limit on a motorway?")


# ----------------------------------------------------------------------- SIGKILL durability

WRITER = r"""
import sys, hashlib
import numpy as np
from semroute.cache import MemoryStore
from semroute.types import CacheEntry
store = MemoryStore(sys.argv[1])
start = int(sys.argv[2])
print("ready", flush=True)
i = start
while True:
    v = np.frombuffer(hashlib.blake2b(str(i).encode(), digest_size=64).digest(), dtype=np.uint32).astype(np.float32)
    v -= 2.0**31
    entry = CacheEntry(id=f"id{i}", key=f"k{i}", scope="ns|p", namespace="ns", question=f"q{i}",
                       answer=f"a{i}", vector=v / np.linalg.norm(v), created_at=1.0)
    store.put_many([entry])
    print(f"id{i}", flush=True)  # printed only once put_many returned: a confirmed write
    i += 1
"""


def kill_writer(directory, start: int, confirmed_before_kill: int) -> list[str]:
    """Start a writer, SIGKILL it after some confirmed writes; return every id it confirmed."""
    with subprocess.Popen([sys.executable, "-c", WRITER, str(directory), str(start)], stdout=subprocess.PIPE,
                          text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}) as child:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        confirmed = [child.stdout.readline().strip() for _ in range(confirmed_before_kill)]
        child.send_signal(signal.SIGKILL)
        confirmed += [line.strip() for line in child.stdout if line.strip()]  # confirmed before it died
        child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL
    return confirmed


def test_no_confirmed_write_is_lost_when_the_writer_is_killed(tmp_path) -> None:
    confirmed: list[str] = []
    for round_ in range(3):
        confirmed += kill_writer(tmp_path, start=round_ * 100_000, confirmed_before_kill=60 + 40 * round_)
        with MemoryStore(tmp_path) as store:
            ids = {e.id for e in store.entries()}
        missing = set(confirmed) - ids
        assert not missing, sorted(missing)[:5]
    assert len(confirmed) >= 60 + 100 + 140


# ----------------------------------------------------------------------- isolation


def test_namespaces_and_system_prompts_never_see_each_others_entries(tmp_path) -> None:
    questions = [f"What is the rule number {i} for cyclists?" for i in range(15)]
    with FakeOllama([SMALL]) as fake, light_router([fake.url], tmp_path) as router:
        router.warm([(q, f"SECRET-A-{i}") for i, q in enumerate(questions)], namespace="tenant-a")
        router.warm([(q, f"SECRET-S-{i}") for i, q in enumerate(questions)], namespace="tenant-b",
                    system="answer as a pirate")
        leaked: list[str] = []
        for q in questions:
            for namespace, system in (("tenant-b", None), ("tenant-c", None), ("tenant-a", "answer as a pirate")):
                answer = router.ask(q, namespace=namespace, system=system)
                if "SECRET" in answer.text or answer.source in ("exact", "semantic"):
                    leaked.append(f"{namespace}/{system}: {answer.text}")
        assert not leaked, leaked[:3]
        assert router.ask(questions[0], namespace="tenant-a").text == "SECRET-A-0"  # the owner still hits


def test_errors_under_faults_are_typed(tmp_path) -> None:
    """Every failure a fault produces through the router is a SemrouteError."""
    with FakeFleet(2, models=(SMALL,), timing=FAST) as fleet:
        with light_router(fleet.urls, tmp_path, tier={"timeout": Timeout(connect=0.5, read=0.5)}) as router:
            router.ask("warm up")
            failures: list[BaseException] = []
            for kind in ("refuse", "error", "busy", "drop", "hang"):
                for fake in fleet:
                    fake.set_fault(kind) if kind != "error" else fake.set_fault("error", status=500)
                try:
                    router.ask(f"a question during {kind}")
                except BaseException as exc:  # noqa: BLE001 - asserted below
                    failures.append(exc)
                for fake in fleet:
                    fake.clear_fault()
            assert len(failures) == 5 and all(isinstance(e, SemrouteError) for e in failures), failures
