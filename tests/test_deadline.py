"""A per-request deadline on Router calls, honoured while queued, across retries and tiers, while
an instance hangs and while streaming (issue 12, item 6); the sizing shown in ``stats()``."""

from __future__ import annotations

import asyncio
import time

import pytest

from reliability_helpers import SMALL, light_router
from semroute.errors import DeadlineExceeded, InvalidRequest, Overloaded
from semroute.settings import PoolSettings, QueueSettings, Timeout
from semroute.testing import FakeFleet, FakeOllama, Timing

pytestmark = pytest.mark.reliability

# Without a deadline these calls would wait for the read timeout (30 s) or the stream's end.
SLOW = {"timeout": Timeout(connect=1.0, read=30.0)}


@pytest.fixture
def hanging(tmp_path):
    """A router over two instances that accept requests and never answer."""
    with FakeFleet(2, models=(SMALL,)) as fleet:
        with light_router(fleet.urls, tmp_path, tier=SLOW) as router:
            router.ask("warm up: cache built, instances known")
            for fake in fleet:
                fake.set_fault("hang")
                fake.reset_stats()
            yield router, fleet
        for fake in fleet:
            fake.clear_fault()


def test_ask_gives_up_at_its_deadline_while_instances_hang(hanging) -> None:
    router, fleet = hanging
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        router.ask("What is the speed limit?", deadline_s=0.3)
    assert time.monotonic() - started < 10  # not the 30 s read timeout
    assert fleet.count("chat") >= 1


def test_aask_gives_up_at_its_deadline_and_frees_the_slot(hanging) -> None:
    router, fleet = hanging
    with pytest.raises(DeadlineExceeded):
        asyncio.run(router.aask("What is the speed limit?", deadline_s=0.3))
    # cancelled: the pool gave the slot back at once
    assert all(s["in_flight"] == 0 for s in router.stats()["instances"]["small"])


def test_a_deadline_is_not_a_reason_to_try_the_other_tier(hanging) -> None:
    router, fleet = hanging
    with pytest.raises(DeadlineExceeded):
        router.ask("Does the large tier get asked?", deadline_s=0.3)
    assert router.metrics.count("tier.fallback") == 0


def test_a_request_queued_behind_a_hung_one_gives_up_at_its_deadline(tmp_path) -> None:
    with FakeOllama([SMALL]) as fake:
        tier = {**SLOW, "limit": 1, "pool": PoolSettings(queue=QueueSettings(max_length=4, timeout_s=30.0))}
        with light_router([fake.url], tmp_path, tier=tier) as router:
            router.ask("warm up")
            fake.set_fault("hang", count=1)

            async def main() -> None:
                first = asyncio.create_task(router.aask("first question", deadline_s=2.0))
                # It holds the only slot once the fake has it (hung); before that, the second
                # question could win the slot and the hang.
                await asyncio.to_thread(fake.wait_until, lambda s: s.fault_count("hang") == 1)
                with pytest.raises(DeadlineExceeded):  # not Overloaded: the queue would wait 30 s
                    await router.aask("second question", deadline_s=0.3)
                with pytest.raises(DeadlineExceeded):
                    await first

            asyncio.run(main())
            assert router.stats()["sizing"]["small"]["queued"] == 0
            fake.clear_fault()
            assert router.ask("third question", deadline_s=5.0).text


def test_streams_stop_at_the_deadline(tmp_path) -> None:
    slow_tokens = Timing(token_delay_ms=50.0)  # 80 extra words: about 4 s per answer
    with FakeOllama([SMALL], timing=slow_tokens, extra_words=80) as fake:
        with light_router([fake.url], tmp_path) as router:
            router.pipeline.prepare()
            got: list[str] = []
            with pytest.raises(DeadlineExceeded):
                for chunk in router.stream("a long answer please", deadline_s=1.0):
                    got.append(chunk.text)
            assert got  # some text came, then the deadline

            async def main() -> list[str]:
                parts: list[str] = []
                with pytest.raises(DeadlineExceeded):
                    async for chunk in router.astream("another long answer", deadline_s=1.0):
                        parts.append(chunk.text)
                return parts

            assert asyncio.run(main())
            assert router.stats()["counters"].get("answers.small", 0) == 0  # nothing partial stored
            fake.timing = Timing()  # answer at once now
            assert router.ask("a long answer please").source == "small"  # a miss: nothing was cached


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), "1", True])
def test_a_bad_deadline_is_invalid(tmp_path, bad) -> None:
    with FakeOllama([SMALL]) as fake, light_router([fake.url], tmp_path) as router:
        with pytest.raises(InvalidRequest):
            router.ask("q", deadline_s=bad)
        assert fake.stats().count("chat") == 0


def test_stats_show_the_sizing(tmp_path) -> None:
    with FakeFleet(3, models=(SMALL,)) as fleet:
        tier = {"limit": 2, "pool": PoolSettings(queue=QueueSettings(max_length=10, timeout_s=5.0))}
        with light_router(fleet.urls, tmp_path, tier=tier) as router:
            router.ask("warm up")
            sizing = router.stats()["sizing"]["small"]
            assert sizing["instances"] == 3 and sizing["slots"] == 6 and sizing["queue_max"] == 10
            assert sizing["admits_at_once"] == 16 and sizing["queue_timeout_s"] == 5.0
            assert sizing["answers_per_s"] is not None and sizing["answers_per_s"] > 0


def test_beyond_slots_plus_queue_is_overloaded_at_once(tmp_path) -> None:
    """The sizing rule: more concurrent requests than slots + queue_max are refused at once."""
    with FakeOllama([SMALL]) as fake:
        tier = {**SLOW, "limit": 1, "pool": PoolSettings(queue=QueueSettings(max_length=1, timeout_s=30.0))}
        with light_router([fake.url], tmp_path, tier=tier) as router:
            router.ask("warm up")
            fake.pause()  # accepted requests wait at the fake until resume()

            async def main() -> list[object]:
                tasks = [asyncio.create_task(router.aask(f"question {i}")) for i in range(3)]
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                assert isinstance(next(iter(done)).exception(), Overloaded)
                fake.resume()
                return await asyncio.gather(*tasks, return_exceptions=True)

            results = asyncio.run(main())
            assert sum(isinstance(r, Overloaded) for r in results) == 1


def test_await_before_tells_its_own_deadline_from_a_timeout_inside() -> None:
    """The deadline's expiry is ``DeadlineExceeded``; a ``TimeoutError`` the awaited code raises
    itself (a backend's own read timeout) is not the deadline's and passes through unchanged."""
    from semroute.backends.deadline import Deadline, await_before

    async def raises_timeout() -> None:
        raise TimeoutError("the backend's own")

    async def run() -> None:
        with pytest.raises(DeadlineExceeded, match="while streaming"):
            await await_before(asyncio.sleep(5), Deadline(0.05, time.monotonic), where="while streaming")
        with pytest.raises(TimeoutError, match="the backend's own") as caught:
            await await_before(raises_timeout(), Deadline(5.0, time.monotonic))
        assert not isinstance(caught.value, DeadlineExceeded)
        assert await await_before(asyncio.sleep(0, result=7), Deadline(5.0, time.monotonic)) == 7
        assert await await_before(asyncio.sleep(0, result=8), Deadline(None, time.monotonic)) == 8

    asyncio.run(run())
