"""Routers in several OS processes sharing one cache, one set of limits and one flight through Redis."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from redis_child import make_router
from semroute.testing import FakeOllama

CHILD = str(Path(__file__).with_name("redis_child.py"))
SMALL = "llama3.2:3b"


class Child:
    """One worker process (``redis_child.py``) talking JSON lines."""

    def __init__(self, redis_url: str, ollama_url: str) -> None:
        self.proc = subprocess.Popen([sys.executable, CHILD, redis_url, ollama_url], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)

    def ready(self) -> None:
        assert self.proc.stdout.readline().strip() == "ready"

    def send(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def reply(self):
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        if self.proc.poll() is None:
            self.send("quit")
            self.proc.wait(timeout=30)
        self.proc.stdin.close()
        self.proc.stdout.close()


@pytest.fixture
def children(redis_url):
    made: list[Child] = []

    def spawn(ollama_url: str, n: int) -> list[Child]:
        batch = [Child(redis_url, ollama_url) for _ in range(n)]
        for child in batch:  # all start loading at once; then wait for each
            child.ready()
        made.extend(batch)
        return batch

    yield spawn
    for child in made:
        child.close()


def test_a_hit_stored_by_one_process_is_served_by_another(redis_url, children, fake_ollama):
    (other,) = children(fake_ollama.url, 1)  # synced (empty) before anything is stored
    with make_router(redis_url, fake_ollama.url) as router:
        first = router.ask("what is the speed limit in town")
        assert first.source == "small"
        other.send("ask what is the speed limit in town?")
        exact = other.reply()
        other.send("ask what is the speed limit in town please")
        semantic = other.reply()
    assert exact["source"] == "exact" and exact["text"] == first.text
    assert semantic["source"] == "semantic" and semantic["text"] == first.text
    assert fake_ollama.stats().count("chat") == 1


def test_concurrent_identical_misses_across_processes_make_one_call(redis_url, redis_server, children):
    with FakeOllama((SMALL,)) as fake:
        procs = children(fake.url, 4)
        fake.pause()  # the leader's call waits until every process is waiting for it
        for child in procs:
            child.send("burst 50 how long is a driving licence valid")
        fake.wait_until(lambda s: s.count("chat") >= 1, timeout=20)
        client = redis.Redis.from_url(redis_server.url)
        # the three other processes' flight leaders block on the leader's result stream
        deadline_ok = _until(lambda: int(client.info("clients")["blocked_clients"]) >= 3)
        fake.resume()
        results = [child.reply() for child in procs]
        client.close()
        answers = [a for r in results for a in r["answers"]]
        assert deadline_ok and len(answers) == 200
        assert fake.stats().count("chat") == 1
        assert len({a["text"] for a in answers}) == 1
        assert sum(r["coalesced"] for r in results) + sum(a["source"] == "exact" for a in answers) == 199
        assert sum(r["coalesced"] for r in results) >= 150  # most waited on the one call (measured: 199)


def _until(predicate, timeout: float = 20.0) -> bool:
    """Poll an observable condition (not a sleep standing in for synchronisation)."""
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def test_redis_killed_and_restarted_fails_open_and_keeps_entries(redis_url, redis_server, fake_ollama, caplog):
    from semroute.cache.redis import RedisStore
    from semroute.redis_conn import Outage

    class Monotonic:
        now = 0.0

        def __call__(self) -> float:
            return self.now

    clock = Monotonic()
    store = RedisStore.from_url(redis_url, outage=Outage("test", clock=clock), monotonic=clock)
    with make_router(redis_url, fake_ollama.url, store=store) as router:
        before = router.ask("can I park on the pavement")
        assert before.source == "small"
        redis_server.kill()
        clock.now += 1.0  # past the store's staleness bound: the next read catches up with Redis first
        during = [router.ask("can I park on the pavement"), router.ask("a question asked during the outage")]
        assert [a.source for a in during] == ["small", "small"]
        assert router.metrics.count("store.errors.lookup") >= 2
        redis_server.start()
        clock.now += 10.0  # past the back-off: the store tries Redis again
        after = router.ask("can I park on the pavement")
    assert after.source == "exact" and after.text == before.text
    errors = [r for r in caplog.records if "without the cache" in r.getMessage()]
    assert len(errors) == 1  # logged once per outage


@pytest.mark.reliability
def test_a_follower_across_redis_stops_at_its_own_deadline(redis_url):
    import threading

    from semroute.errors import DeadlineExceeded

    with FakeOllama((SMALL,)) as fake, make_router(redis_url, fake.url) as leader, \
            make_router(redis_url, fake.url) as follower:
        fake.pause()  # the leader's call waits at the fake until resume()
        answers = []
        lead = threading.Thread(target=lambda: answers.append(leader.ask("how long is a passport valid")))
        lead.start()
        try:
            fake.wait_until(lambda s: s.count("chat") >= 1, timeout=20)
            with pytest.raises(DeadlineExceeded):  # not the flight's own 600 s wait
                follower.ask("how long is a passport valid", deadline_s=0.3)
        finally:
            fake.resume()
            lead.join(30)
        assert [a.source for a in answers] == ["small"] and fake.stats().count("chat") == 1
