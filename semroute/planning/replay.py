"""A scaled-time replay of a request list through the real ``Router`` and ``Pool`` against a
``FakeFleet`` that behaves like Ollama under parallel load, to check ``simulate`` end to end.

Each tier gets its own fleet of fake servers (in a child process, so the fakes and the router
do not share one interpreter lock): ``slots`` parallel requests each (``Capacity``; 503 past
the fake's queue), per-token delay ``1 / tokens_per_s`` slowed by the server's throughput curve
as slots fill (``Timing.parallel_speedup``), and a fixed time to the first token for prompt
processing (the mean prompt: the fake does not vary it per request). The router in this
process has an exact cache warmed with the hit questions, a hash embedder (no model load) and
one ``Pool`` per tier (least outstanding, slot limit = the server's slots, central queue).
Requests are sent at their arrival times divided by ``time_scale``; latencies are multiplied
back, so results are in the profile's seconds and include the router's real overhead.

It is a check of the model and the simulation, not a benchmark of semroute: real time on a
shared machine adds scheduling noise, more so at high ``time_scale``. Only this module of
``semroute.planning`` imports ``semroute.testing`` and ``semroute.router``.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import tempfile
import time
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import ConfigError, SemrouteError
from .profile import PlanProfile, ServerProfile
from .simulate import SimRequest, SimResult, summarise

__all__ = ["replay", "drive", "HashEmbedder", "fleet_timing"]


class HashEmbedder:
    """A deterministic stand-in embedder (no model): a unit vector seeded by the text's CRC."""

    name = "replay-hash"
    dim = 16

    def embed(self, texts: Sequence[str]) -> Any:
        import numpy as np

        rows = [np.random.default_rng(zlib.crc32(t.encode())).normal(size=self.dim) for t in texts]
        out = np.array(rows, dtype=np.float32).reshape(len(texts), self.dim)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def _reply(model: str, prompt: str) -> str:
    """The fake's answer: ``n=K`` in the question asks for K + 1 words (K tokens after the first)."""
    for part in prompt.split():
        if part.startswith("n="):
            return " ".join(["w"] * (int(part[2:]) + 1))
    return "ok"


def fleet_timing(server: ServerProfile, fixed_s: float, time_scale: float) -> Any:
    """The fake's ``Timing`` for ``server`` at ``time_scale`` (real seconds = model seconds / scale)."""
    from ..testing import Timing

    return Timing(ttft_ms=1000.0 * fixed_s / time_scale, token_delay_ms=1000.0 / (server.tokens_per_s * time_scale),
                  parallel_speedup=server.throughput_curve)


def _fleets_main(conn: Any, specs: list[tuple[str, str, int, int, Any]]) -> None:
    """Child process: one FakeFleet per tier; send the URLs, serve until told to stop."""
    from ..testing import Capacity, FakeFleet, InstanceSpec

    fleets = []
    try:
        urls: dict[str, list[str]] = {}
        for tier, model, count, slots, timing in specs:
            spec = InstanceSpec(capacity=Capacity(max_parallel=slots, queue=64))
            fleet = FakeFleet([spec] * count, models=(model,), timing=timing, reply=_reply).start()
            fleets.append(fleet)
            urls[tier] = fleet.urls
        conn.send(urls)
        conn.recv()  # stop
    finally:
        for fleet in fleets:
            fleet.stop()
        conn.close()


async def drive(router: Any, questions: list[tuple[float, str, str | None]], time_scale: float, *,
                warm_up: bool = True, on_answer: Any = None):
    """Ask each ``(arrival_s, question, tier)`` at ``arrival_s / time_scale`` from now (``aask``);
    (latencies by hit/tier as (arrival, seconds), errors by type). ``on_answer(at, question,
    answer, error)`` sees every outcome (``semroute replay`` records them)."""
    loop = asyncio.get_running_loop()
    # One call per tier first: the first call builds clients and learns each instance's models,
    # work that would otherwise hold up the event loop inside the measured schedule.
    for tier in sorted({t for _, _, t in questions if t is not None}) if warm_up else ():
        await router.aask(f"warm-up {tier} n=1", tier=tier)
    start = loop.time() + 0.2
    latencies: dict[str, list[float]] = {}
    errors: dict[str, int] = {}

    async def one(at: float, question: str, tier: str | None) -> None:
        due = start + at / time_scale
        await asyncio.sleep(max(0.0, due - loop.time()))
        try:
            answer = await router.aask(question, tier=tier)
        except SemrouteError as exc:
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            if on_answer is not None:
                on_answer(at, question, None, exc)
            return
        key = "hit" if answer.source in ("exact", "semantic") else (tier or answer.source)
        latencies.setdefault(key, []).append((at, (loop.time() - due) * time_scale))
        if on_answer is not None:
            on_answer(at, question, answer, None)

    await asyncio.gather(*(one(*q) for q in questions))
    return latencies, errors


def replay(profile: PlanProfile, requests: Sequence[SimRequest], fleet: Mapping[str, int], *,
           time_scale: float = 10.0, warmup_s: float = 0.0) -> tuple[SimResult, dict[str, int]]:
    """Send ``requests`` through a real router to fake fleets; (latencies, errors by type)."""
    from ..router import Router
    from ..settings import CacheSettings, RouterSettings, Tier
    from .. import ThresholdVerifier  # the public API: semroute.hits is not the planner's to import

    if set(fleet) != set(profile.traffic.tiers) or time_scale <= 0:
        raise ConfigError("replay needs a server count for every tier and time_scale > 0")
    if not set(fleet) <= {"small", "large"}:
        raise ConfigError(f"the router's tiers are small and large, got {sorted(fleet)}")
    specs = []
    for tier, count in fleet.items():
        server, tt = profile.servers[tier], profile.traffic.tiers[tier]
        fixed = server.ttft_s + tt.prompt_tokens.mean / server.prompt_tokens_per_s
        specs.append((tier, server.model, count, server.slots, fleet_timing(server, fixed, time_scale)))
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_fleets_main, args=(child, specs), daemon=True)
    proc.start()
    try:
        if not parent.poll(60):
            raise ConfigError("the fake fleets did not start within 60 s")
        urls = parent.recv()
        tiers = {t: Tier(profile.servers[t].model, tuple(urls[t]), strategy="least_outstanding",
                         limit=profile.servers[t].slots) for t in fleet}
        settings = RouterSettings(cache=CacheSettings(consensus=False, min_similarity=0.99))
        questions = [(r.arrival_s, f"hit {i % 50}" if r.tier is None else f"q{i} n={max(1, round(r.answer_tokens))}",
                      r.tier) for i, r in enumerate(sorted(requests, key=lambda r: r.arrival_s))]
        with tempfile.TemporaryDirectory() as tmp:
            router = Router(tiers=tiers, data_dir=tmp, embedder=HashEmbedder(),
                            verifier=ThresholdVerifier(0.99), settings=settings)
            try:
                router.warm([(f"hit {i}", "a cached answer") for i in range(50)])
                started = time.monotonic()
                latencies, errors = asyncio.run(drive(router, questions, time_scale))
                errors["wall_s"] = round(time.monotonic() - started, 1)  # type: ignore[assignment]
            finally:
                router.close()
    finally:
        parent.send("stop")
        proc.join(timeout=20)
        if proc.is_alive():
            proc.terminate()
    kept = {t: [lat for at, lat in v if at >= warmup_s] for t, v in latencies.items()}
    return summarise(kept), errors
