"""One process, many entries: RSS per entry, restart time, recall@1 and lookup latency of the embedded cache.

N entries (random 384-d unit vectors, 400-character answers) are stored through a
``Router(data_dir=...)`` (the embedded ``MemoryStore`` journaled to SQLite, the default index).
Then, in this process: RSS growth per entry, recall@1 of each sampled entry's own vector (is
the entry itself the nearest?), and lookup latency p50/p99 of ``Router.ask``'s cache steps for paraphrases of cached questions
(a table embedder returns each question's vector, drawn before the clock starts, so the cache is what
is measured). Restart:
a new process opens the same directory the way ``Router(data_dir=...)`` does, and the clock
stops when its first semantic lookup is answered (``restart_with_close_s`` also counts its close,
which writes the snapshots again; ``restart_rss_bytes_per_entry`` is that process's resident growth per entry,
where each entry holds its own answer string, while the filling process's entries share one). Lookup latency is reported as wall time and as the lookup
thread's CPU time: on a shared host the difference is time spent waiting for a core. The baseline in the same run is the same
measurement at N/10 entries (how the numbers grow with N).

``--redis`` runs the same measurement with the entries in a ``RedisStore``: the bench starts a
private ``redis-server`` (``semroute.testing.redis_server``, append-only, ``everysec``) on a free
loopback port, the filling process is a ``Router(redis_url=..., data_dir=...)`` that follows it,
and the restart is a new process building that same Router over the same Redis and data
directory. RSS per entry is the following process's; ``redis_used_memory_bytes_per_entry`` is the
server's ``used_memory`` growth per entry, reported separately.

    python bench/cache_scale.py --entries 100000 [--json] [--sample 1000] [--redis]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DIM = 384
ANSWER = ("Cached answer text. " * 25)[:400]


def answer_of(i: int) -> str:
    """Entry i's own 400-character answer: one string per entry, as in a real cache (one shared
    string would hide ~450 B per entry from the filling process's RSS)."""
    return (f"{i}: " + ANSWER)[:400]


def vector_of(i: int) -> np.ndarray:
    v = np.random.default_rng(i).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


class TableEmbedder:
    """``"q<i>"`` -> entry i's vector; ``"q<i> ~"`` -> slightly perturbed (a paraphrase).

    ``prepare(texts)`` draws those texts' vectors ahead, so a timed lookup reads its vector from a
    dict (as a table embedder should) instead of paying the random draw (~0.05 ms) on the clock.
    """

    name = "bench-table"
    dim = DIM

    def __init__(self) -> None:
        self.table: dict[str, np.ndarray] = {}

    def prepare(self, texts) -> None:
        self.table.update(zip(texts, self._draw(texts)))

    def embed(self, texts):
        if all(text in self.table for text in texts):
            return np.stack([self.table[text] for text in texts])
        return self._draw(texts)

    def _draw(self, texts):
        rows = []
        for text in texts:
            v = vector_of(int(text.split()[0][1:]))
            if text.endswith("~"):
                i = int(text.split()[0][1:])
                v = v + 0.15 / np.sqrt(DIM) * np.random.default_rng(10**9 + i).standard_normal(DIM).astype(np.float32)
            rows.append(v / np.linalg.norm(v))
        return np.stack(rows)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def make_router(data_dir: Path, vectors: str = "float32", redis_url: str | None = None):
    from semroute import FixedTier, Router, RouterSettings, ThresholdVerifier, Tier
    from semroute.settings import CacheSettings

    settings = RouterSettings(cache=CacheSettings(consensus=False, max_entries=10**8, vectors=vectors))
    return Router(tiers={"small": Tier("m", ("http://127.0.0.1:9",))}, classifier=FixedTier("small"),
                  verifier=ThresholdVerifier(0.9), embedder=TableEmbedder(), settings=settings, data_dir=data_dir,
                  redis_url=redis_url)


def fill(router, entries: int) -> float:
    t0 = time.perf_counter()
    for start in range(0, entries, 5000):
        router.warm([(f"q{i}", answer_of(i)) for i in range(start, min(entries, start + 5000))], batch_size=5000)
    return time.perf_counter() - t0


def lookup(router, question: str):
    """The cache part of ``Router.ask`` (exact tier, embedding, semantic tier); None on a miss."""
    pipeline = router.pipeline
    plan = pipeline.plan(question, namespace=None, system=None, tier=None)
    return pipeline.exact(plan) or pipeline.semantic(plan, pipeline.embed(plan))


def measure(data_dir: Path, entries: int, sample: int, vectors: str, redis_url: str | None = None) -> dict[str, float]:
    router = make_router(data_dir, vectors, redis_url)
    router.pipeline.prepare()  # imports and an empty index: not per-entry cost
    before = rss_bytes()
    fill_s = fill(router, entries)
    rss = rss_bytes() - before
    cache = router.pipeline.cache
    rng = np.random.default_rng(1)
    picks = rng.integers(0, entries, sample)
    scope = router.pipeline.plan("q0", namespace=None, system=None, tier=None).scope
    found = 0
    for i in picks:
        own = cache.store.get_by_key(router.pipeline.plan(f"q{i}", namespace=None, system=None, tier=None).key, now=0.0)
        top = cache.index.search(vector_of(int(i)), scope=scope, k=1)
        found += bool(top) and own is not None and top[0][0] == own.id
    settled_s = None if redis_url is None else settle_redis(redis_url)
    times, cpu, hits = [], [], 0
    router.pipeline.embedder.prepare([f"q{i} ~" for i in picks])  # vectors drawn before the clock starts
    for i in picks:
        t0, c0 = time.perf_counter(), time.thread_time()
        answer = lookup(router, f"q{i} ~")
        times.append(time.perf_counter() - t0)
        cpu.append(time.thread_time() - c0)  # wall minus this: waiting for a core on a shared host
        hits += answer is not None and answer.source == "semantic"
    router.close()
    ms, cpu_ms = np.asarray(times) * 1e3, np.asarray(cpu) * 1e3
    return {"entries": entries, "load_avg_1m_lookups": round(os.getloadavg()[0], 2), "rss_bytes_per_entry": round(rss / entries), "fill_s": round(fill_s, 1),
            "recall_at_1": found / sample, "paraphrase_hit_rate": hits / sample, "lookup_p50_ms": round(float(np.median(ms)), 3),
            "lookup_p99_ms": round(float(np.percentile(ms, 99)), 3),
            "lookup_cpu_p50_ms": round(float(np.median(cpu_ms)), 3), "lookup_cpu_p99_ms": round(float(np.percentile(cpu_ms, 99)), 3),
            **({} if settled_s is None else {"redis_aof_rewrite_wait_s": settled_s})}


def settle_redis(redis_url: str, limit_s: float = 300.0) -> float:
    """Wait until the AOF rewrite the fill set off is done; the seconds waited.

    A bulk fill grows the append-only file past ``auto-aof-rewrite-percentage``, so Redis forks and
    rewrites it (seconds of CPU and disk at 1M entries on the bench's cores). That is a one-off
    after loading, not the steady state a lookup percentile describes; the wait is reported.
    """
    import redis

    client = redis.Redis.from_url(redis_url)
    t0 = time.perf_counter()
    try:
        while time.perf_counter() - t0 < limit_s:
            info = client.info("persistence")
            if not info.get("aof_rewrite_in_progress") and not info.get("aof_rewrite_scheduled"):
                break
            time.sleep(0.2)
    finally:
        client.close()
    return round(time.perf_counter() - t0, 1)


def restart(data_dir: Path, entries: int, vectors: str, redis_url: str | None = None) -> tuple[float, float, int]:
    """(seconds until the new process's first semantic lookup is answered, seconds until it has exited, RSS per entry).

    The clock for ``restart_s`` stops when the child prints its answer, as the issue defines it;
    its close (which writes the snapshots again) is reported separately as ``restart_with_close_s``.
    The child's resident growth per entry once it has answered is ``restart_rss_bytes_per_entry``:
    unlike the filling process, whose entries all share one answer string, each entry read back
    holds its own copy of its answer, as in a real cache.
    """
    t0 = time.perf_counter()
    with subprocess.Popen([sys.executable, __file__, "--child", str(data_dir), str(entries), vectors]
                          + ([] if redis_url is None else [redis_url]),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as child_process:
        assert child_process.stdout is not None and child_process.stderr is not None
        first = child_process.stdout.readline()
        answered = time.perf_counter() - t0
        # read through the same buffered file: its first readline may already hold the second line,
        # which communicate() (reading the raw pipe) would then never see
        resident_line = child_process.stdout.readline()
        rest, err = child_process.communicate()
        rest = resident_line + rest
    total = time.perf_counter() - t0
    if first.strip() != "semantic" or child_process.returncode != 0:
        raise RuntimeError(f"the restarted process did not answer from the cache: {first + rest!r} {err[-500:]}")
    return answered, total, int(rest.split()[0])


def child(data_dir: str, entries: int, vectors: str, redis_url: str | None = None) -> None:
    import faiss  # noqa: F401 - imported before the baseline: not per-entry cost

    before = rss_bytes()
    router = make_router(Path(data_dir), vectors, redis_url)
    answer = lookup(router, f"q{entries // 2} ~")
    print("miss" if answer is None else answer.source, flush=True)
    print(round((rss_bytes() - before) / entries), flush=True)
    router.close()


def run(entries: int, sample: int, vectors: str, redis: bool = False) -> dict[str, float]:
    if redis:
        return run_redis(entries, sample, vectors)
    with tempfile.TemporaryDirectory(prefix="semroute-scale-") as tmp:
        return measure_and_restart(Path(tmp), entries, sample, vectors)


def measure_and_restart(tmp: Path, entries: int, sample: int, vectors: str,
                        redis_url: str | None = None) -> dict[str, float]:
    """The filling process's numbers, then a restart over the same directory (and Redis, if any)."""
    result = measure(Path(tmp), entries, sample, vectors, redis_url)
    result["vectors"] = vectors
    result["load_avg_1m_before_restart"] = round(os.getloadavg()[0], 2)
    answered, total, resident = restart(Path(tmp), entries, vectors, redis_url)
    result["restart_s"], result["restart_with_close_s"] = round(answered, 2), round(total, 2)
    result["restart_rss_bytes_per_entry"] = resident
    # journal, index snapshot and store snapshot (with --redis only the index snapshot: the AOF is counted apart)
    result["disk_bytes_per_entry"] = round(sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file()) / entries)
    return result


def run_redis(entries: int, sample: int, vectors: str) -> dict[str, float]:
    """``measure_and_restart`` with the entries in a private ``redis-server`` (stopped at the end)."""
    import redis

    from semroute.testing.redis_server import RedisServer

    with tempfile.TemporaryDirectory(prefix="semroute-scale-") as tmp, RedisServer(appendfsync="everysec") as server:
        client = redis.Redis.from_url(server.url)
        before = int(client.info("memory")["used_memory"])
        result = measure_and_restart(Path(tmp), entries, sample, vectors, server.url)
        result["store"] = "redis"
        import redis.utils

        result["redis_reply_parser"] = "hiredis" if redis.utils.HIREDIS_AVAILABLE else "python"
        grown = int(client.info("memory")["used_memory"]) - before
        result["redis_used_memory_bytes_per_entry"] = round(grown / entries)
        result["redis_aof_bytes_per_entry"] = round(
            sum(p.stat().st_size for p in Path(server.directory).rglob("*") if p.is_file()) / entries)
        client.close()
    return result


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5] if len(sys.argv) > 5 else None)
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--sample", type=int, default=1000, help="entries queried for recall and latency")
    parser.add_argument("--no-baseline", action="store_true", help="skip the N/10 run")
    parser.add_argument("--vectors", choices=("float32", "float16"), default="float32",
                        help="CacheSettings.vectors (float16: half the vector memory in store and index)")
    parser.add_argument("--redis", action="store_true",
                        help="entries in a RedisStore on a private redis-server this bench starts (and stops)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "cache_scale.json")
    args = parser.parse_args()
    result = run(args.entries, args.sample, args.vectors, args.redis)
    if not args.no_baseline:  # in a fresh process: RSS growth must not reuse memory this run freed
        out = subprocess.run([sys.executable, __file__, "--entries", str(max(1, args.entries // 10)), "--sample",
                              str(args.sample), "--vectors", args.vectors, "--no-baseline", "--json",
                              *(["--redis"] if args.redis else []),
                              "--out", str(args.out.with_suffix(".tenth.json"))],
                             stdout=subprocess.PIPE, text=True, check=True)  # its stderr shows a failure
        result["baseline_tenth"] = json.loads(out.stdout.strip().splitlines()[-1])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>22}: {value}")


if __name__ == "__main__":
    main()
