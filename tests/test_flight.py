"""Single-flight for answers and streams: one call per key, every caller gets all of it.

Synchronised with events only: a call or a producer waits on an event the test sets once every
caller has joined, so nothing depends on how fast the machine is.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from semroute.flight import AsyncSingleFlight, AsyncStreamFlight, Broadcast, StreamFlight

pytestmark = pytest.mark.timeout(30)


async def _until(predicate, *, limit: int = 10_000) -> None:
    """Yield to the loop until ``predicate()`` holds (bounded: a bug fails instead of hanging)."""
    for _ in range(limit):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


class Call:
    """An async call that waits for ``release`` and counts its starts, ends and cancellations."""

    def __init__(self, result: object = "answer", error: BaseException | None = None) -> None:
        self.release = asyncio.Event()
        self.started = self.finished = self.cancelled = 0
        self.result, self.error = result, error

    async def __call__(self) -> object:
        self.started += 1
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        self.finished += 1
        if self.error is not None:
            raise self.error
        return self.result


async def test_concurrent_calls_with_one_key_make_one_call():
    flight: AsyncSingleFlight[object] = AsyncSingleFlight()
    call = Call()
    tasks = [asyncio.create_task(flight.do("k", call)) for _ in range(5)]
    await _until(lambda: flight.waiting("k") == 5)
    other = Call("not shared")
    other.release.set()
    assert await flight.do("other key", other) == ("not shared", False)  # another key: its own call
    call.release.set()
    results = await asyncio.gather(*tasks)
    assert [r[0] for r in results] == ["answer"] * 5
    assert sorted(shared for _, shared in results) == [False, True, True, True, True]
    assert call.started == 1 and call.finished == 1
    assert flight.in_flight == 0
    again = Call("second")
    again.release.set()
    assert await flight.do("k", again) == ("second", False)  # a finished call is not reused


async def test_a_cancelled_leader_does_not_fail_its_followers():
    flight: AsyncSingleFlight[object] = AsyncSingleFlight()
    call = Call()
    leader = asyncio.create_task(flight.do("k", call))
    await _until(lambda: call.started == 1)
    followers = [asyncio.create_task(flight.do("k", call)) for _ in range(3)]
    await _until(lambda: flight.waiting("k") == 4)
    leader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leader
    call.release.set()
    assert [await f for f in followers] == [("answer", True)] * 3
    assert (call.started, call.finished, call.cancelled) == (1, 1, 0)


async def test_the_call_is_cancelled_when_every_caller_left():
    flight: AsyncSingleFlight[object] = AsyncSingleFlight()
    call = Call()
    tasks = [asyncio.create_task(flight.do("k", call)) for _ in range(2)]
    await _until(lambda: call.started == 1 and flight.waiting("k") == 2)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await _until(lambda: call.cancelled == 1)
    assert call.finished == 0 and flight.in_flight == 0


async def test_an_error_reaches_every_caller():
    flight: AsyncSingleFlight[object] = AsyncSingleFlight()
    call = Call(error=ValueError("model said no"))
    tasks = [asyncio.create_task(flight.do("k", call)) for _ in range(3)]
    await _until(lambda: call.started == 1 and flight.waiting("k") == 3)
    call.release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert [type(r) for r in results] == [ValueError] * 3 and call.started == 1


# -- streams --------------------------------------------------------------------------------


class Producer:
    """A stream of ``n`` items; item ``i`` waits for ``gates[i]``; records whether it was closed."""

    def __init__(self, n: int, error_at: int | None = None) -> None:
        self.gates = [threading.Event() for _ in range(n)]
        self.started = 0
        self.produced: list[str] = []
        self.closed = threading.Event()
        self.error_at = error_at

    def __call__(self):
        self.started += 1
        try:
            for i, gate in enumerate(self.gates):
                assert gate.wait(10), "the test never opened this gate"
                if i == self.error_at:
                    raise ConnectionError(f"broken at {i}")
                self.produced.append(f"chunk{i}")
                yield f"chunk{i}"
        finally:
            self.closed.set()


def test_a_late_reader_gets_the_whole_stream_from_one_producer():
    flight: StreamFlight[str] = StreamFlight()
    producer = Producer(3)
    first, shared_first = flight.join("k", producer)
    producer.gates[0].set()
    assert next(first) == "chunk0"
    late, shared_late = flight.join("k", producer)  # joins after a chunk went out
    for gate in producer.gates[1:]:
        gate.set()
    assert list(first) == ["chunk1", "chunk2"]
    assert list(late) == ["chunk0", "chunk1", "chunk2"]
    assert (shared_first, shared_late, producer.started) == (False, True, 1)


def test_a_producer_error_reaches_every_reader_after_the_chunks_before_it():
    flight: StreamFlight[str] = StreamFlight()
    producer = Producer(3, error_at=1)
    readers = [flight.join("k", producer)[0] for _ in range(3)]
    for gate in producer.gates:
        gate.set()
    for reader in readers:
        got = []
        with pytest.raises(ConnectionError, match="broken at 1"):
            for item in reader:
                got.append(item)
        assert got == ["chunk0"]


def test_the_producer_stops_when_every_reader_left():
    flight: StreamFlight[str] = StreamFlight()
    producer = Producer(3)
    reader, _ = flight.join("k", producer)
    producer.gates[0].set()
    assert next(reader) == "chunk0"
    reader.close()  # the only reader leaves
    producer.gates[1].set()  # the producer publishes once more, sees nobody, and stops
    assert producer.closed.wait(10)
    assert producer.started == 1 and producer.produced == ["chunk0", "chunk1"]  # chunk2 never asked for


async def test_async_streams_share_one_producer_and_the_first_reader_may_leave():
    flight: AsyncStreamFlight[str] = AsyncStreamFlight()
    gate = asyncio.Event()
    runs = []

    async def produce():
        runs.append(1)
        yield "a"
        await gate.wait()
        yield "b"
        yield "c"

    first, shared_first = flight.join("k", produce)
    assert await anext(first) == "a"
    second, shared_second = flight.join("k", produce)
    await first.aclose()  # the first reader (the leader) goes away mid-stream
    gate.set()
    assert [item async for item in second] == ["a", "b", "c"]
    assert (shared_first, shared_second, len(runs)) == (False, True, 1)


async def test_async_stream_producer_is_cancelled_when_every_reader_left():
    flight: AsyncStreamFlight[str] = AsyncStreamFlight()
    gate = asyncio.Event()
    cancelled = asyncio.Event()

    async def produce():
        yield "a"
        try:
            await gate.wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        yield "b"

    reader, _ = flight.join("k", produce)
    assert await anext(reader) == "a"
    await reader.aclose()
    await asyncio.wait_for(cancelled.wait(), 10)


def test_broadcast_replays_from_the_first_item_across_threads():
    broadcast: Broadcast[int] = Broadcast()
    broadcast.join()
    got: list[int] = []
    reader = threading.Thread(target=lambda: got.extend(broadcast.read()))
    reader.start()
    for i in range(5):
        broadcast.publish(i)
    broadcast.finish()
    reader.join(10)
    assert got == [0, 1, 2, 3, 4] and not broadcast.wanted
