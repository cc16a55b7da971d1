"""Old code vs new code, following the same RedisStore: lookup latency interleaved in one run.

``cache_scale.py --redis`` measures one code base at a time, on a host whose load moves by the
minute. This bench fills a private ``redis-server`` once (N entries as in ``cache_scale.py``),
then starts two follower processes over the same Redis and the same saved index: one runs the
source tree given as ``--baseline-src`` (e.g. ``git archive <rev> semroute | tar -x -C DIR``),
without ``hiredis`` unless ``--baseline-hiredis``; the other runs this tree. The parent hands them
rounds of paraphrase lookups (the same questions to both, which one goes first alternating), so
both see the same load. Each lookup is ``cache_scale.lookup`` (exact tier, table embedding drawn
before the clock starts, semantic tier); reported per side: wall and thread-CPU p50/p99, the
ratio new/old, and the 1-minute load average around the rounds.

    python bench/follower_ab.py --entries 200000 --baseline-src /tmp/old [--rounds 20 --batch 100] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def child(data_dir: str, redis_url: str, entries: int, hiredis: bool) -> None:
    """A follower answering rounds: reads ``<seed> <batch>`` lines, writes one JSON line of timings each."""
    if not hiredis:  # redis-py picks its reply parser at import: make hiredis unimportable first
        sys.modules["hiredis"] = None  # type: ignore[assignment]
    src = Path(os.environ["SEMROUTE_AB_SRC"])
    if src != HERE.parent:  # an editable install's finder would import this tree's semroute instead
        sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__]
    sys.path[:0] = [str(src), str(HERE)]
    import cache_scale as cs
    import semroute

    if Path(semroute.__file__).resolve().parent != (src / "semroute").resolve():
        raise RuntimeError(f"imported {semroute.__file__}, not the tree under {src}")

    router = cs.make_router(Path(data_dir), "float16", redis_url)
    first = cs.lookup(router, "q1 ~")
    import redis.utils

    print(json.dumps({"ready": first is not None, "hiredis": redis.utils.HIREDIS_AVAILABLE}), flush=True)
    for line in sys.stdin:
        seed, batch = (int(x) for x in line.split())
        picks = np.random.default_rng(seed).integers(0, entries, batch)
        texts = [f"q{i} ~" for i in picks]
        router.pipeline.embedder.prepare(texts)
        wall, cpu, hits = [], [], 0
        for text in texts:
            t0, c0 = time.perf_counter(), time.thread_time()
            answer = cs.lookup(router, text)
            wall.append(time.perf_counter() - t0)
            cpu.append(time.thread_time() - c0)
            hits += answer is not None and answer.source == "semantic"
        print(json.dumps({"wall": wall, "cpu": cpu, "hits": hits}), flush=True)
    router.close()


def fill(data_dir: Path, redis_url: str, entries: int) -> float:
    sys.path.insert(0, str(HERE))
    import cache_scale as cs

    router = cs.make_router(data_dir, "float16", redis_url)
    router.pipeline.prepare()
    took = cs.fill(router, entries)
    router.close()  # writes the index snapshot both followers start from
    return took


def start(src: Path, data_dir: Path, redis_url: str, entries: int, hiredis: bool) -> subprocess.Popen[str]:
    env = dict(os.environ, SEMROUTE_AB_SRC=str(src))
    proc = subprocess.Popen([sys.executable, __file__, "--child", str(data_dir), redis_url, str(entries),
                             "1" if hiredis else "0"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    ready = json.loads(proc.stdout.readline())
    if not ready["ready"]:
        raise RuntimeError(f"the follower from {src} did not answer its first lookup from the cache")
    return proc


def summary(wall: list[float], cpu: list[float]) -> dict[str, float]:
    w, c = np.asarray(wall) * 1e3, np.asarray(cpu) * 1e3
    return {"lookup_p50_ms": round(float(np.median(w)), 3), "lookup_p99_ms": round(float(np.percentile(w, 99)), 3),
            "lookup_cpu_p50_ms": round(float(np.median(c)), 3),
            "lookup_cpu_p99_ms": round(float(np.percentile(c, 99)), 3),
            "lookups": len(w)}


def interleave(procs: dict[str, subprocess.Popen[str]], rounds: int, batch: int) -> tuple[dict, list[float]]:
    """Each round's lookups to both followers in turn (which goes first alternating): timings, loads."""
    got: dict[str, dict[str, list]] = {name: {"wall": [], "cpu": [], "hits": []} for name in procs}
    loads = [os.getloadavg()[0]]
    for r in range(rounds):
        for name in (["old", "new"] if r % 2 == 0 else ["new", "old"]):
            proc = procs[name]
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(f"{1000 + r} {batch}\n")
            proc.stdin.flush()
            reply = json.loads(proc.stdout.readline())
            for key in ("wall", "cpu"):
                got[name][key].extend(reply[key])
            got[name]["hits"].append(reply["hits"])
        loads.append(os.getloadavg()[0])
    return got, loads


def run(entries: int, baseline_src: Path, rounds: int, batch: int, baseline_hiredis: bool,
        reuse: tuple[str, Path] | None = None) -> dict:
    from semroute.testing.redis_server import RedisServer

    sides = {"old": (baseline_src, baseline_hiredis), "new": (HERE.parent, True)}
    with tempfile.TemporaryDirectory(prefix="semroute-ab-") as tmp, contextlib.ExitStack() as stack:
        if reuse is None:
            server = stack.enter_context(RedisServer(appendfsync="everysec"))
            url, filled = server.url, Path(tmp) / "filled"
            fill_s = fill(filled, url, entries)
        else:  # a Redis and data directory an earlier fill left (development runs)
            (url, filled), fill_s = reuse, 0.0
        procs = {}
        for name, (src, hiredis) in sides.items():
            shutil.copytree(filled, Path(tmp) / name)  # each follower saves its own snapshot
            procs[name] = start(src, Path(tmp) / name, url, entries, hiredis)
        got, loads = interleave(procs, rounds, batch)
        for proc in procs.values():
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(timeout=120)
    result: dict = {"entries": entries, "fill_s": round(fill_s, 1), "rounds": rounds, "batch": batch,
                    "load_avg_1m_min": round(min(loads), 2), "load_avg_1m_max": round(max(loads), 2),
                    "baseline_hiredis": baseline_hiredis}
    for name in sides:
        result[name] = summary(got[name]["wall"], got[name]["cpu"])
        result[name]["paraphrase_hit_rate"] = sum(got[name]["hits"]) / (rounds * batch)
    keys = ("lookup_p50_ms", "lookup_p99_ms", "lookup_cpu_p50_ms", "lookup_cpu_p99_ms")
    result["ratio_new_over_old"] = {key: round(result["new"][key] / result["old"][key], 3) for key in keys}
    return result


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5] == "1")
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=200_000)
    parser.add_argument("--baseline-src", type=Path, required=True,
                        help="a source tree holding the semroute package to compare with")
    parser.add_argument("--baseline-hiredis", action="store_true", help="let the old side use hiredis too")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--batch", type=int, default=100, help="lookups per side per round")
    parser.add_argument("--reuse", nargs=2, metavar=("REDIS_URL", "DATA_DIR"),
                        help="skip the fill: a Redis holding --entries entries and the data dir that filled it")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "follower_ab.json")
    args = parser.parse_args()
    reuse = None if args.reuse is None else (args.reuse[0], Path(args.reuse[1]))
    result = run(args.entries, args.baseline_src.resolve(), args.rounds, args.batch, args.baseline_hiredis, reuse)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    if args.json:
        print(json.dumps(result))
        return
    for name in ("old", "new"):
        print(f"{name:>4}: " + "  ".join(f"{k} {v}" for k, v in result[name].items()))
    print("new/old:", result["ratio_new_over_old"], " load", result["load_avg_1m_min"], "-", result["load_avg_1m_max"])


if __name__ == "__main__":
    main()
