"""Several processes sharing one cache through Redis, next to the embedded MemoryStore in the same run.

A private ``redis-server`` (appendonly, ``appendfsync everysec``: the recommended production
setting) holds N entries (random 384-d unit vectors, 400-character answers). Then 1, 2 and 4
worker processes each run ``Router.ask`` lookups at once (exact hits on the stored questions
and semantic hits on perturbed vectors; a table embedder returns each question's vector so
the cache is what is measured, and a note adds the MiniLM embedding cost for scale). Reported:

* lookups/s over all processes; hit latency p50/p99 per kind, and the ratio to the same
  lookups over a ``MemoryStore`` in one process of the same run;
* cross-process visibility: one process inserts entries, another (following the feed) times
  how long until its index holds each one (p50/p99);
* Redis memory per entry (``used_memory`` delta / N).

``--embedder minilm`` pays a real MiniLM embedding per lookup (hit latency as a user sees it).

    python bench/redis_scale.py [--entries 20000] [--lookups 2000] [--procs 1,2,4] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

DIM = 384
ANSWER = ("Cached answer text. " * 25)[:400]
EMBEDDER: dict[str, type] = {}


class TableEmbedder:
    """``"q<i>"`` -> entry i's vector; ``"q<i> ~"`` -> that vector slightly perturbed (a paraphrase)."""

    name = "bench-table"
    dim = DIM

    def embed(self, texts):
        rows = []
        for text in texts:
            i = int(text.split()[0][1:])
            vector = np.random.default_rng(i).standard_normal(DIM).astype(np.float32)
            if text.endswith("~"):
                vector = vector + 0.15 * np.random.default_rng(10**9 + i).standard_normal(DIM).astype(np.float32)
            rows.append(vector / np.linalg.norm(vector))
        return np.stack(rows)


class PaidTableEmbedder(TableEmbedder):
    """The table's vectors, after paying for a real MiniLM embedding of the same text (``--embedder minilm``)."""

    def __init__(self) -> None:
        from semroute import SentenceTransformerEmbedder

        self.model = SentenceTransformerEmbedder()

    def embed(self, texts):
        self.model.embed(list(texts))
        return super().embed(texts)


EMBEDDER.update(table=TableEmbedder, minilm=PaidTableEmbedder)


def make_router(store=None, redis_url=None):
    from semroute import FixedTier, Router, RouterSettings, ThresholdVerifier, Tier
    from semroute.settings import CacheSettings

    settings = RouterSettings(cache=CacheSettings(consensus=False, max_entries=10**7))
    return Router(tiers={"small": Tier("m", ("http://127.0.0.1:9",))}, classifier=FixedTier("small"),
                  verifier=ThresholdVerifier(0.9), embedder=EMBEDDER[os.environ.get("BENCH_EMBEDDER", "table")](),
                  settings=settings, store=store,
                  redis_url=redis_url)


def fill(router, entries: int) -> float:
    t0 = time.perf_counter()
    for start in range(0, entries, 1000):
        pairs = [(f"q{i}", ANSWER) for i in range(start, min(entries, start + 1000))]
        router.warm(pairs, batch_size=1000)
    return time.perf_counter() - t0


def lookups(router, entries: int, count: int, seed: int) -> dict[str, list[float]]:
    """Latency of ``Router.ask``'s cache steps (exact tier, embedding, semantic tier) per hit kind.

    A semantic lookup the approximate index misses is counted under ``misses`` (it would go to
    a model), not timed.
    """
    rng = np.random.default_rng(seed)
    out: dict[str, list[float]] = {"exact": [], "semantic": [], "misses": []}
    pipeline = router.pipeline
    for n in range(count):
        kind = "exact" if n % 2 else "semantic"
        question = f"q{int(rng.integers(entries))}" + (" ~" if kind == "semantic" else "")
        t0 = time.perf_counter()
        plan = pipeline.plan(question, namespace=None, system=None, tier=None)
        answer = pipeline.exact(plan) or pipeline.semantic(plan, pipeline.embed(plan))
        elapsed = time.perf_counter() - t0
        out[kind if answer is not None and answer.source == kind else "misses"].append(elapsed)
    return out


def worker(redis_url: str, entries: int, count: int, seed: int, start_at: float) -> None:
    from semroute.cache.redis import RedisStore

    # the store a Router(redis_url=...) builds, with the local view's size under test
    store = RedisStore.from_url(redis_url, max_entries=10**7, local_entries=int(os.environ["BENCH_LOCAL_ENTRIES"]))
    router = make_router(store=store, redis_url=redis_url)
    router.pipeline.prepare()
    router.pipeline.cache.sync()  # load the index from the snapshot before the clock starts
    lookups(router, entries, 50, seed + 1)  # warm-up
    while time.time() < start_at:  # all workers start together
        time.sleep(0.001)
    t0 = time.perf_counter()
    view = router.pipeline.store._local  # the store's local view (None when turned off)
    before = (0, 0) if view is None else (view.hits, view.misses)
    samples = lookups(router, entries, count, seed)
    wall = time.perf_counter() - t0
    local = {} if view is None else {"local_hits": view.hits - before[0], "local_misses": view.misses - before[1]}
    router.close()
    store.close()
    print(json.dumps({"wall_s": wall, **local, **samples}), flush=True)


def visibility(redis_url: str, trials: int) -> list[float]:
    """Seconds from a write in this process until another process's index holds the entry."""
    code = (
        "import sys, time, json; sys.path.insert(0, sys.argv[3]); import redis_scale as b;"
        "r = b.make_router(redis_url=sys.argv[1]); r.pipeline.prepare(); c = r.pipeline.cache;"
        "c.sync(); print('ready', flush=True); pending = {f'vis{k}' for k in range(int(sys.argv[2]))}; seen = {}\n"
        "while pending:\n"
        "    c.sync()\n"
        "    now = time.time()\n"
        "    for e in [e for e in pending if e in c.index]:\n"
        "        seen[e] = now; pending.discard(e)\n"
        "print(json.dumps(seen), flush=True)"
    )
    follower = subprocess.Popen([sys.executable, "-c", code, redis_url, str(trials), str(Path(__file__).parent)],
                                stdout=subprocess.PIPE, text=True)
    assert follower.stdout.readline().strip() == "ready"
    from semroute.cache.redis import RedisStore
    from semroute.types import CacheEntry

    router = make_router(redis_url=redis_url)
    scope = router.pipeline.plan("q0", namespace=None, system=None, tier=None).scope
    store = RedisStore.from_url(redis_url, max_entries=10**7)
    written: dict[str, float] = {}
    rng = np.random.default_rng(7)
    for t in range(trials):
        vector = rng.standard_normal(DIM).astype(np.float32)
        entry_id = f"vis{t}"
        written[entry_id] = time.time()
        store.put_many([CacheEntry(id=entry_id, key=f"vis-key-{t}", scope=scope, namespace="default",
                                   question=f"vis {t}", answer=ANSWER, vector=vector, created_at=written[entry_id],
                                   embedder=TableEmbedder.name)])
        time.sleep(0.005)  # a write every ~5 ms: steady traffic, not one burst
    seen = json.loads(follower.stdout.readline())
    follower.wait()
    store.close()
    router.close()
    return [seen[i] - written[i] for i in written]


def pct(samples: list[float]) -> dict[str, float]:
    ms = np.asarray(samples) * 1e3
    return {"p50_ms": round(float(np.median(ms)), 4), "p99_ms": round(float(np.percentile(ms, 99)), 4)}


def memory_baseline(entries: int, count: int) -> dict[str, object]:
    from semroute.cache import MemoryStore

    router = make_router(store=MemoryStore(max_entries=10**7))
    fill(router, entries)
    lookups(router, entries, 50, 99)
    samples = lookups(router, entries, count, 1)
    router.close()
    return {"exact": pct(samples["exact"]), "semantic": pct(samples["semantic"]), "semantic_misses": len(samples["misses"]),
            "load_avg_1m": round(os.getloadavg()[0], 2)}


def run(args) -> dict[str, object]:
    import redis

    from semroute.testing.redis_server import RedisServer

    result: dict[str, object] = {"entries": args.entries, "lookups_per_process": args.lookups,
                                 "machine": platform.machine(), "cpus": os.cpu_count()}
    result["memory_store"] = memory_baseline(args.entries, args.lookups)
    with RedisServer(appendfsync="everysec") as server:
        client = redis.Redis.from_url(server.url)
        before = int(client.info("memory")["used_memory"])
        writer = make_router(redis_url=server.url)
        result["fill_s"] = round(fill(writer, args.entries), 2)
        writer.close()
        result["redis_bytes_per_entry"] = round((int(client.info("memory")["used_memory"]) - before) / args.entries)
        runs = []
        for procs in args.procs:
            start_at = time.time() + 3.0 + procs  # time for every worker to load its index
            workers = [subprocess.Popen([sys.executable, __file__, "--worker", server.url, str(args.entries),
                                         str(args.lookups), str(p), str(start_at)], stdout=subprocess.PIPE, text=True)
                       for p in range(procs)]
            outs = [json.loads(w.communicate()[0].strip().splitlines()[-1]) for w in workers]
            merged = {kind: [s for o in outs for s in o[kind]] for kind in ("exact", "semantic")}
            misses = sum(len(o["misses"]) for o in outs)
            row = {"processes": procs, "lookups_per_s": round(procs * args.lookups / max(o["wall_s"] for o in outs), 1),
                   "semantic_misses": misses, "load_avg_1m": round(os.getloadavg()[0], 2)}
            reads = sum(o.get("local_hits", 0) + o.get("local_misses", 0) for o in outs)
            if reads:  # share of store reads the local view answered without a round trip
                row["local_view_hit_rate"] = round(sum(o.get("local_hits", 0) for o in outs) / reads, 3)
            for kind, values in merged.items():
                row[kind] = pct(values)
                row[f"{kind}_p50_vs_memory"] = round(row[kind]["p50_ms"] / result["memory_store"][kind]["p50_ms"], 3)
                row[f"{kind}_p99_vs_memory"] = round(row[kind]["p99_ms"] / result["memory_store"][kind]["p99_ms"], 3)
            runs.append(row)
        result["runs"] = runs
        result["visibility"] = pct(visibility(server.url, args.trials))
        client.close()
    return result


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        url, entries, count, seed, start_at = sys.argv[2:7]
        worker(url, int(entries), int(count), int(seed), float(start_at))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=20_000)
    parser.add_argument("--lookups", type=int, default=2_000)
    parser.add_argument("--procs", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 4])
    parser.add_argument("--trials", type=int, default=300, help="writes timed for cross-process visibility")
    parser.add_argument("--json", action="store_true", help="print only the JSON result")
    parser.add_argument("--embedder", choices=("table", "minilm"), default="table",
                        help="minilm: pay a real MiniLM embedding per lookup (end-to-end latency); vectors stay the table's")
    parser.add_argument("--local-entries", type=int, default=10_000,
                        help="RedisStore local_entries of each worker (entries held locally; 0: every read goes to Redis)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "redis_scale.json")
    args = parser.parse_args()
    os.environ["BENCH_EMBEDDER"] = args.embedder  # inherited by the worker processes
    os.environ["BENCH_LOCAL_ENTRIES"] = str(args.local_entries)
    result = run(args)
    result["embedder"] = args.embedder
    result["local_entries"] = args.local_entries
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    if args.json:
        print(json.dumps(result))
        return
    mem = result["memory_store"]
    print(f"{args.entries} entries; Redis {result['redis_bytes_per_entry']} bytes/entry; fill {result['fill_s']} s")
    print(f"MemoryStore (1 process): exact {mem['exact']}  semantic {mem['semantic']}")
    for row in result["runs"]:
        print(f"{row['processes']} proc: {row['lookups_per_s']} lookups/s  exact {row['exact']} "
              f"(x{row['exact_p50_vs_memory']} memory)  semantic {row['semantic']} (x{row['semantic_p50_vs_memory']})")
    print(f"cross-process visibility: {result['visibility']}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
