"""``semroute serve`` against calling FakeOllama directly, in the same run, over loopback.

Starts FakeOllama (zero model latency) in its own process and ``semroute serve`` (the real
command, real MiniLM behind the micro-batcher) as a subprocess in front of it, then:

1. baselines: an HTTP round trip to FakeOllama (``/api/version``, the loopback floor), a model
   call to FakeOllama (``/api/chat``) back to back and after an idle pause as long as a miss's
   embedding (``direct_model_call_after_idle``: a miss's model call always follows one, and both
   processes run slower after idling), MiniLM embedding one text, and MiniLM's throughput in
   batches of 64 (texts/s) — all measured here, in this run;
2. added latency per path, one request at a time: exact hit (minus the loopback floor),
   semantic lookup (minus one embedding), miss (minus one embedding of the miss texts themselves,
   with the gateway's torch thread count, and the direct model call; ``added_p50_ms_fastest_threads``
   subtracts the faster thread count's embedding instead, ``added_p50_ms_idle_model`` the model
   call after an idle pause instead of the back-to-back one; ``added_p50_ms_own_embed`` pairs each
   miss with its own embedding, the gateway's ``Server-Timing`` embed step, instead of the bench
   process's). These miss texts are made up and nearly identical to one another, so the pair
   model judges four stored misses for every one: the dearest miss. ``miss_held_out`` is the
   everyday miss: real questions of a source the warm-up never saw (clinc150's test split,
   ``held_out_questions``), one at a time as a live stream, each paired with its own embedding
   step; the ones the cache answers are left out of its figures;
3. cached answers per second (64 concurrent clients) and per core (divided by the server
   process's CPU seconds, read from /proc);
4. concurrent semantic lookups per second (128 clients, banking77 test questions against a cache
   warmed with train questions: a held-out split) as a share of the embedder's batch-64 throughput
   (the faster thread count's, and ``share_of_batch64_gateway_threads``: at the gateway's own).
   About two thirds of these requests miss and go on to the model and the store.
   ``semantic_hits_throughput`` then sends the same questions reworded (``reworded``), which the
   semantic tier answers: lookups alone, no model call, no store;
5. 1,000 concurrent streaming clients, straight to a second FakeOllama process (20 ms between
   tokens) and through a second gateway in front of it (the proxy path: a named model with
   ``cache_models = false``), and cached answers from the first gateway: errors, lost streams,
   p50/p99 of each stream's total time, the added p99, and the gateway's CPU seconds per stream.
   The streaming clients run in a child process of their own (``--stream-client``), so neither
   the fake nor the gateway shares a process with them.

Every phase records the load average beside its numbers: other work on the machine skews them.
Loopback only, bounded in count and time. Prints a table, writes bench/results/serve.json.

    nice -n 10 .venv/bin/python bench/serve.py [--quick]
"""

from __future__ import annotations

import argparse
import functools
import socket
import asyncio
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shared_data import banking77, clinc150, first_per_intent  # noqa: E402


SMALL, LARGE = "llama3.2:3b", "llama3.1:8b"
MINILM = "all-MiniLM-L6-v2"
RESULTS = Path(__file__).resolve().parent / "results"


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def summary(ms: list[float]) -> dict[str, float]:
    return {"n": len(ms), "p50_ms": round(pct(ms, 50), 3), "p99_ms": round(pct(ms, 99), 3)}


# -- the gateway subprocess -------------------------------------------------------------------


def gateway_config(fake_url: str, cache_lines: list[str] | None = None, embed_threads: int | None = None,
                   embedder: str = MINILM) -> str:
    """The TOML file ``start_gateway`` gives ``semroute serve`` (its parameters as there)."""
    return (
        ("".join(f"{line}\n" for line in ["[cache]", *cache_lines]) if cache_lines else "") +
        "[server]\naccess_log = false\ncache_models = false\nmax_inflight = 8192\nthreads = 256\nkeep_alive_s = 300\n"
        + (f"embed_threads = {embed_threads}\n" if embed_threads else "") +
        f'[embedder]\nmodel = "{embedder}"\n'  # the embedder whose batch-64 throughput is the baseline
        f'[tiers.small]\nmodel = "{SMALL}"\nhosts = ["{fake_url}"]\nlimit = 4096\n'
        f'[tiers.large]\nmodel = "{LARGE}"\nhosts = ["{fake_url}"]\nlimit = 4096\n'
    )


def start_gateway(fake_url: str, workdir: Path, source: Path | None = None,
                  extra: list[str] | None = None, cache_lines: list[str] | None = None,
                  embed_threads: int | None = None, embedder: str = MINILM) -> tuple[subprocess.Popen[str], str]:
    """``semroute serve`` in front of ``fake_url``; ``source``: a source tree to run it from
    (``serve_ab.py`` runs another revision beside this one) instead of this repository's;
    ``cache_lines``: TOML lines of its ``[cache]`` table (e.g. ``cross_language = true``);
    ``embed_threads``: its ``[server] embed_threads`` (None: the default, its share of the cores);
    ``embedder``: its ``[embedder] model`` (MiniLM: the embedder of every other phase's baseline)."""
    config = workdir / "serve.toml"
    config.write_text(gateway_config(fake_url, cache_lines, embed_threads, embedder))
    log = open(workdir / "serve.log", "w+")  # a file, not a pipe: a full pipe would block the server
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if source is not None:
        env["PYTHONPATH"] = str(source)
    proc = subprocess.Popen(
        [sys.executable, "-m", "semroute.cli", "serve", "--port", "0", "--data-dir", str(workdir / "data"),
         "--config", str(config), *(extra or [])], stderr=log, text=True, env=env, cwd=source)
    deadline = time.monotonic() + 600  # a loaded machine can take minutes to import torch
    while not (found := re.search(r"running on (http://127\.0\.0\.1:\d+)", (workdir / "serve.log").read_text())):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("semroute serve did not start: " + (workdir / "serve.log").read_text()[-2000:])
        time.sleep(0.05)
    url = found.group(1)
    deadline = time.monotonic() + 600  # a loaded machine can take minutes to import torch
    while not _ready(url):  # the embedding model loads in the background
        if time.monotonic() > deadline:
            raise RuntimeError("semroute serve never became ready")
        time.sleep(0.1)
    return proc, url


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz").status_code == 200
    except httpx.ConnectError:  # --workers: the parent logs its URL before the workers listen
        return False


def start_fake(token_delay_ms: float) -> tuple[subprocess.Popen[str], str]:
    """FakeOllama in a process of its own (``python -m semroute.testing.fake_ollama``)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "semroute.testing.fake_ollama", "--models", f"{SMALL},{LARGE}",
         "--token-delay-ms", str(token_delay_ms), "--max-parallel", "4096", "--queue", "8192"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()  # it prints its URL first


def stop(*procs: subprocess.Popen[str] | None) -> None:
    for proc in procs:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=60)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- measurements -----------------------------------------------------------------------------


def sequential(client: httpx.Client, url: str, bodies: list[dict],
               pause_s: float = 0.0) -> tuple[list[float], dict[str, object]]:
    """Each request's time here, and who answered (with the gateway's ``Server-Timing`` steps'
    p50 under ``"steps_p50_ms"``: where the time inside the gateway went); ``pause_s`` of idling
    before each request."""
    times, sources, steps = [], {}, {}
    for body in bodies:
        if pause_s:
            time.sleep(pause_s)
        t0 = time.perf_counter()
        response = client.post(url, json=body)
        times.append((time.perf_counter() - t0) * 1000)
        response.raise_for_status()
        source = response.headers.get("x-semroute-source", "direct")
        sources[source] = sources.get(source, 0) + 1
        for name, duration in timing_steps(response).items():
            steps.setdefault(name, []).append(duration)
    if steps:
        sources["steps_p50_ms"] = {name: round(pct(values, 50), 3) for name, values in steps.items()}
    if len(steps.get("embed", ())) == len(times):  # each request's time less its own embedding, in the gateway
        sources["wall_minus_embed_p50_ms"] = round(pct([t - e for t, e in zip(times, steps["embed"])], 50), 3)
    return times, sources


def timing_steps(response: httpx.Response) -> dict[str, float]:
    """The gateway's ``Server-Timing`` header as {step: ms} (none: empty)."""
    out = {}
    for part in filter(None, response.headers.get("server-timing", "").split(",")):
        name, _, duration = part.strip().partition(";dur=")
        out[name] = float(duration)
    return out


def _own_embed(sources: dict[str, object], direct_ms: float, direct_idle_ms: float) -> dict[str, float]:
    """The added figure against each request's own embedding (the gateway's ``Server-Timing``
    embed step, hand-off to the batcher included), paired request by request: the bench process's
    embedding baseline is measured minutes apart and swings by several ms with the machine's load."""
    paired = sources.get("wall_minus_embed_p50_ms")
    if not isinstance(paired, float):
        return {}
    return {"added_p50_ms_own_embed": round(paired - direct_ms, 3),
            "added_p50_ms_own_embed_idle_model": round(paired - direct_idle_ms, 3)}


def chat(model: str, text: str, stream: bool = False) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": text}], "stream": stream}


async def concurrent(url: str, bodies: list[dict], clients: int) -> tuple[float, dict[str, int], int]:
    """(seconds, sources, errors) for ``bodies`` sent by ``clients`` concurrent keep-alive clients."""
    queue = list(reversed(bodies))
    sources: dict[str, int] = {}
    errors = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=120) as client:
        async def worker() -> None:
            nonlocal errors
            while queue:
                body = queue.pop()
                response = await client.post(url, json=body)
                if response.status_code != 200:
                    errors += 1
                source = response.headers.get("x-semroute-source", "?")
                sources[source] = sources.get(source, 0) + 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return time.perf_counter() - t0, sources, errors


def lean_concurrent(url: str, bodies: list[dict], clients: int, pids: dict[str, int]) -> dict[str, object]:
    """``bench/loadgen.py`` in a process of its own: its summary plus the CPU seconds each of
    ``pids`` (and their children: gateway workers) spent meanwhile, read from /proc."""
    before = {name: tree_cpu_seconds(pid) for name, pid in pids.items()}
    parts = url.split("/", 3)
    done = subprocess.run([sys.executable, str(Path(__file__).with_name("loadgen.py")), "/".join(parts[:3]),
                           "/" + parts[3], str(clients)], input=json.dumps(bodies), capture_output=True,
                          text=True, check=True)
    result = json.loads(done.stdout)
    result["cpu_s"] = {"loadgen": result.pop("cpu_s"),
                       **{name: round(tree_cpu_seconds(pid) - before[name], 3) for name, pid in pids.items()}}
    return result


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid`` and its live children (``--workers`` forks)."""
    total = cpu_seconds(pid)
    for child in Path(f"/proc/{pid}/task").glob("*/children"):
        for cpid in child.read_text().split():
            try:
                total += tree_cpu_seconds(int(cpid))
            except (FileNotFoundError, ProcessLookupError):
                pass
    return total


async def one_stream(host: str, port: int, body: bytes, start: asyncio.Event) -> tuple[float, str]:
    """Total ms of one streamed answer read to the end, and "ok" / "error" / "lost"."""
    await start.wait()
    t0 = time.perf_counter()
    try:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"POST /api/chat HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
                     b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
        data = await reader.read(-1)
        writer.close()
    except OSError:
        return (time.perf_counter() - t0) * 1000, "error"
    ms = (time.perf_counter() - t0) * 1000
    if not data.startswith(b"HTTP/1.1 200"):
        return ms, "error"
    return ms, "ok" if b'"done": true' in data or b'"done":true' in data else "lost"


def streams_elsewhere(url: str, model: str, texts: list[str], server_pid: int | None = None) -> dict[str, object]:
    """``streams`` run by a child process (the clients must not share a process, or a core's
    worth of Python, with what they measure); with the server's CPU seconds when its pid is given."""
    cpu0 = None if server_pid is None else cpu_seconds(server_pid)
    load = os.getloadavg()
    done = subprocess.run([sys.executable, __file__, "--stream-client", url, model], input=json.dumps(texts),
                          capture_output=True, text=True, check=True, timeout=900)
    out: dict[str, object] = {**json.loads(done.stdout), "loadavg_before": load, "loadavg_after": os.getloadavg()}
    if server_pid is not None and cpu0 is not None:
        cpu = cpu_seconds(server_pid) - cpu0
        out.update(server_cpu_s=round(cpu, 3), server_cpu_ms_per_stream=round(cpu * 1000 / len(texts), 3))
    return out


async def streams(url: str, bodies: list[dict]) -> dict[str, object]:
    host, port = url.removeprefix("http://").split(":")
    start = asyncio.Event()
    tasks = [asyncio.create_task(one_stream(host, int(port), json.dumps(b).encode(), start)) for b in bodies]
    await asyncio.sleep(0)
    start.set()
    results = await asyncio.gather(*tasks)
    ms = [m for m, status in results if status == "ok"]
    return {**summary(ms), "errors": sum(s == "error" for _, s in results), "lost": sum(s == "lost" for _, s in results)}


# -- the run ----------------------------------------------------------------------------------


def embedder_baselines(texts: list[str], miss_texts: list[str], rounds: int, workers: int = 1,
                       embed_threads: int | None = None) -> dict[str, object]:
    """MiniLM here, with torch's default threads (every core) and with the gateway's count (its
    process's share of the cores, ``ServerSettings.embed_threads``): on a shared 2-core machine
    one count can be several times slower than the other (OpenMP threads wait on each other). The semantic path is held to the
    faster of the two. The miss path's texts are embedded too, because their length (and so their
    embedding time) differs from the semantic path's: its added latency is reported against the
    gateway's own thread count and, stricter, against the faster one."""
    import torch

    from semroute import SentenceTransformerEmbedder

    model = SentenceTransformerEmbedder()
    model.embed(texts[:64])
    default_threads = torch.get_num_threads()
    gateway_threads = embed_threads or max(1, (os.cpu_count() or 1) // workers)

    def one_p50(sample: list[str]) -> float:
        single = []
        for text in sample[:rounds]:
            t0 = time.perf_counter()
            model.embed([text])
            single.append((time.perf_counter() - t0) * 1000)
        return round(pct(single, 50), 3)

    runs = {}
    for threads in dict.fromkeys((default_threads, gateway_threads)):
        torch.set_num_threads(threads)
        runs[threads] = {"embed_one_p50_ms": one_p50(texts), "embed_miss_p50_ms": one_p50(miss_texts)}
        batch_texts = texts[: 64 * max(4, rounds // 16)]
        t0 = time.perf_counter()
        for i in range(0, len(batch_texts), 64):
            model.embed(batch_texts[i : i + 64])
        runs[threads]["batch64_texts_per_s"] = round(len(batch_texts) / (time.perf_counter() - t0), 1)
    torch.set_num_threads(default_threads)
    return {"embed_one_p50_ms": min(r["embed_one_p50_ms"] for r in runs.values()),
            "embed_miss_p50_ms": runs[gateway_threads]["embed_miss_p50_ms"],
            "embed_miss_p50_ms_fastest": min(r["embed_miss_p50_ms"] for r in runs.values()),
            "batch64_texts_per_s": max(r["batch64_texts_per_s"] for r in runs.values()),
            "batch64_texts_per_s_gateway_threads": runs[gateway_threads]["batch64_texts_per_s"],
            "gateway_torch_threads": gateway_threads, "embedder_by_torch_threads": runs}


def miss_text(i: int) -> str:
    """A question nothing cached resembles."""
    return f"zq{i} xylophone quantum {i * 7919} marmalade"


def held_out_questions() -> list[str]:
    """clinc150's test questions, each once, in a fixed shuffled order: another source than the
    banking77 questions the cache is warmed with, its intents interleaved as live traffic's are."""
    questions = list(dict.fromkeys(t for t, _ in clinc150("test")))
    random.Random(0).shuffle(questions)
    return questions


def live_misses(client: httpx.Client, url: str, texts: list[str], wanted: int, direct_ms: float,
                direct_idle_ms: float) -> dict[str, object]:
    """``texts`` one at a time until ``wanted`` misses: their added p50, each less its own embedding
    step (``Server-Timing``), as ``_own_embed`` gives it; the questions the cache answered are left out."""
    paired: list[float] = []
    served = 0
    for text in texts:
        if len(paired) == wanted:
            break
        t0 = time.perf_counter()
        response = client.post(url, json=chat("semroute", text))
        wall = (time.perf_counter() - t0) * 1000
        response.raise_for_status()
        if response.headers.get("x-semroute-source") not in ("small", "large"):
            served += 1
            continue
        paired.append(wall - timing_steps(response)["embed"])
    return {"misses": len(paired), "served_from_cache_left_out": served,
            **(_own_embed({"wall_minus_embed_p50_ms": round(pct(paired, 50), 3)}, direct_ms, direct_idle_ms)
               if paired else {})}


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run(quick: bool) -> dict[str, object]:
    n_seq, n_warm, n_stream = (40, 150, 300) if quick else (200, 600, 1000)
    train = [t for t, _ in first_per_intent(banking77("train"), 8)][:n_warm]
    test = [t for t, _ in banking77("test")]
    out: dict[str, object] = {"quick": quick, "cores": os.cpu_count(), "loadavg_start": os.getloadavg()}
    fake_proc, fake_url = start_fake(0)
    workdir = Path(tempfile.mkdtemp(prefix="semroute-bench-serve-"))
    proc, url = start_gateway(fake_url, workdir)
    slow_proc = slow_gateway = None
    say(f"gateway ready at {url}; logs in {workdir / 'serve.log'}")
    try:
        with httpx.Client(timeout=120) as client:
            floor: list[float] = []
            for _ in range(n_seq):
                t0 = time.perf_counter()
                client.get(f"{fake_url}/api/version")
                floor.append((time.perf_counter() - t0) * 1000)
            direct, _ = sequential(client, f"{fake_url}/api/chat", [chat(SMALL, f"direct {i}") for i in range(n_seq)])
            out["baseline"] = {"loopback_floor": summary(floor), "direct_model_call": summary(direct),
                               **embedder_baselines(test, [miss_text(i) for i in range(n_seq)], n_seq), "loadavg": os.getloadavg()}
            idle_ms = out["baseline"]["embed_miss_p50_ms"]  # type: ignore[index]
            after_idle = sequential(client, f"{fake_url}/api/chat", [chat(SMALL, f"after idle {i}") for i in range(n_seq)],
                                    pause_s=idle_ms / 1000)[0]
            out["baseline"]["direct_model_call_after_idle"] = {**summary(after_idle), "idle_ms": idle_ms}  # type: ignore[index]
            say("baselines done; warming")
            asyncio.run(concurrent(f"{url}/api/chat", [chat("semroute", q) for q in train], 64))  # warm: misses stored
            exact, exact_src = sequential(client, f"{url}/api/chat", [chat("semroute", q) for q in train[:n_seq]])
            sem, sem_src = sequential(client, f"{url}/api/chat", [chat("semroute", q) for q in test[:n_seq]])
            miss, miss_src = sequential(client, f"{url}/api/chat",
                                        [chat("semroute", miss_text(i)) for i in range(n_seq)])
            held_out = live_misses(client, f"{url}/api/chat", held_out_questions(), n_seq, pct(direct, 50),
                                   pct(after_idle, 50))
        base = out["baseline"]
        embed_ms = base["embed_one_p50_ms"]  # type: ignore[index]
        out["latency"] = {
            "loadavg": os.getloadavg(),
            "exact": {**summary(exact), "sources": exact_src,
                      "added_p50_ms": round(pct(exact, 50) - pct(floor, 50), 3)},
            "semantic": {**summary(sem), "sources": sem_src, "added_p50_ms": round(pct(sem, 50) - embed_ms, 3)},
            "miss": {**summary(miss), "sources": miss_src,
                     "added_p50_ms": round(pct(miss, 50) - base["embed_miss_p50_ms"] - pct(direct, 50), 3),  # type: ignore[index]
                     "added_p50_ms_fastest_threads": round(
                         pct(miss, 50) - base["embed_miss_p50_ms_fastest"] - pct(direct, 50), 3),  # type: ignore[index]
                     "added_p50_ms_idle_model": round(pct(miss, 50) - base["embed_miss_p50_ms"]  # type: ignore[index]
                                                      - base["direct_model_call_after_idle"]["p50_ms"], 3),  # type: ignore[index]
                     **_own_embed(miss_src, pct(direct, 50), base["direct_model_call_after_idle"]["p50_ms"])},  # type: ignore[index]
            "miss_held_out": held_out,
        }
        say(f"latency done: {out['latency']}")
        cpu0 = cpu_seconds(proc.pid)
        secs, src, errs = asyncio.run(concurrent(f"{url}/api/chat", [chat("semroute", q) for q in train] * (2 if quick else 8), 64))
        cpu = cpu_seconds(proc.pid) - cpu0
        total = sum(src.values())
        out["cached_answers"] = {"loadavg": os.getloadavg(), "requests": total, "per_s": round(total / secs, 1),
                                 "server_cpu_s": round(cpu, 2),
                                 "per_cpu_s": round(total / cpu, 1), "sources": src, "errors": errs}
        say(f"cached answers: {out['cached_answers']}")
        pool = test[n_seq : n_seq + (400 if quick else 2000)]
        pids = {"gateway": proc.pid, "fake": fake_proc.pid}
        out["semantic_throughput"] = semantic_throughput(url, pool, base, pids)
        say(f"semantic throughput: {out['semantic_throughput']}")
        out["semantic_hits_throughput"] = semantic_throughput(url, [reworded(q) for q in pool], base, pids)
        say(f"semantic hits throughput: {out['semantic_hits_throughput']}")
        stop(fake_proc)  # the zero-latency fake is done; the streams get a 20 ms-per-token one
        fake_proc = None
        slow_proc, slow_url = start_fake(20)
        slow_gateway, slow_gw_url = start_gateway(slow_url, Path(tempfile.mkdtemp(prefix="semroute-bench-serve-")))
        say("streams")
        texts = [f"stream {i}" for i in range(n_stream)]
        direct_streams = streams_elsewhere(slow_url, SMALL, texts, slow_proc.pid)
        proxied = streams_elsewhere(slow_gw_url, SMALL, texts, slow_gateway.pid)
        cached = streams_elsewhere(url, "semroute", [train[i % len(train)] for i in range(n_stream)], proc.pid)
        out["streams"] = {"clients": n_stream, "token_delay_ms": 20, "direct": direct_streams,
                          "gateway_proxy": proxied, "gateway_cached": cached,
                          "added_p99_ms": round(proxied["p99_ms"] - direct_streams["p99_ms"], 3)}  # type: ignore[operator]
    finally:
        stop(proc, slow_gateway, fake_proc, slow_proc)
        out["server_log_tail"] = (workdir / "serve.log").read_text()[-1500:]
        out["loadavg_end"] = os.getloadavg()  # other work on the machine skews every number above
    return out


def semantic_throughput(url: str, pool: list[str], base: dict, pids: dict[str, int],
                        rate_of: Callable[[list[str], int], dict[int, float]] | None = None) -> dict[str, object]:
    """Lookups/s of 128 keep-alive clients in a process of their own (``bench/loadgen.py``),
    against the embedder's batch-64 throughput, with every process's CPU seconds.

    The batch-64 rate is measured again on the very texts the clients send, right before and
    right after they run (this process, the gateway idle): a rate depends on the texts' lengths
    (146 to 215 texts/s over consecutive slices of 512 banking77 test questions, 2026-12-05), and
    the run's first baseline embeds other texts, minutes earlier. ``share_of_batch64_adjacent``
    divides by the mean of those two rates (the faster thread count's), ``..._gateway_threads`` by
    their rates at the gateway's own thread count; ``share_of_batch64`` keeps the first baseline.
    ``rate_of``: how those rates are measured (default ``batch64_rate``, MiniLM in this process)."""
    rate_of = rate_of or batch64_rate
    threads = base["gateway_torch_threads"]
    before_by = rate_of(pool, threads)
    batches_before = embed_counters(url)
    got = lean_concurrent(f"{url}/api/chat", [chat("semroute", q) for q in pool], 128, pids)
    batches = {k: v - batches_before[k] for k, v in embed_counters(url).items()}
    after_by = rate_of(pool, threads)
    before, after = max(before_by.values()), max(after_by.values())
    same = (before_by[threads] + after_by[threads]) / 2  # at the gateway's own thread count
    rate = len(pool) / got["seconds"]  # type: ignore[operator]
    cpu = got["cpu_s"]
    return {"loadavg": os.getloadavg(), "requests": len(pool), "per_s": round(rate, 1),
            "sources": got["sources"], "errors": got["errors"], "load_generator": "bench/loadgen.py (own process)",
            "share_of_batch64": round(rate / base["batch64_texts_per_s"], 3),
            "share_of_batch64_gateway_threads": round(rate / base["batch64_texts_per_s_gateway_threads"], 3),
            "batch64_texts_per_s_before_after": [before, after],
            "share_of_batch64_adjacent": round(rate / ((before + after) / 2), 3),
            "batch64_texts_per_s_gateway_threads_before_after": [before_by[threads], after_by[threads]],
            "share_of_batch64_adjacent_gateway_threads": round(rate / same, 3),
            "gateway_embedder": {"batches": batches["batches"], "mean_batch": round(batches["texts"] / max(1, batches["batches"]), 1),
                                 "busy_share": round(batches["busy_seconds"] / got["seconds"], 3),  # type: ignore[operator]
                                 "texts_per_busy_s": round(batches["texts"] / max(1e-9, batches["busy_seconds"]), 1)},
            "seconds": round(got["seconds"], 3), "cpu_s": cpu,  # type: ignore[arg-type]
            "cpu_share": {k: round(v / got["seconds"] / (os.cpu_count() or 1), 3) for k, v in cpu.items()}}  # type: ignore[union-attr,operator]


def embed_counters(url: str) -> dict[str, float]:
    """The gateway's embedding batcher counters from ``/metrics``: batches, texts, busy seconds.
    ``texts_per_busy_s`` over a run is the model's own speed inside the gateway (against the
    batch-64 baseline: what sharing the process costs it); ``busy_share`` near 1 says the model,
    not the HTTP side, was the limit."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    found = dict(re.findall(r"^semroute_gateway_embed_(batches|texts|busy_seconds)_total ([0-9.e+-]+)$", text, re.M))
    return {name: float(found.get(name, 0.0)) for name in ("batches", "texts", "busy_seconds")}


def reworded(question: str) -> str:
    """``question`` asked politely: after the mixed phase stored the question itself, the
    gateway serves this from its semantic tier (the pair model sees only a stopword added), so a
    stream of these measures lookups alone, with no model call and no store behind them."""
    return "Please, " + question[:1].lower() + question[1:]


def batch64_rate(texts: list[str], gateway_threads: int) -> dict[int, float]:
    """MiniLM's texts/s here over ``texts`` in batches of 64, per torch thread count: the default
    (every core) and the gateway's (as ``embedder_baselines``)."""
    import torch

    model = _minilm()
    default_threads, rates = torch.get_num_threads(), {}
    for threads in dict.fromkeys((default_threads, gateway_threads)):
        torch.set_num_threads(threads)
        t0 = time.perf_counter()
        for i in range(0, len(texts), 64):
            model.embed(texts[i : i + 64])
        rates[threads] = round(len(texts) / (time.perf_counter() - t0), 1)
    torch.set_num_threads(default_threads)
    return rates


def child_batch64(name: str, threads: int, texts: list[str]) -> float:
    """``name``'s texts/s over ``texts`` in batches of 64 with ``threads`` threads, in a fresh
    process (as the gateway runs it): a packaged embedder's OpenMP reads its thread count once per
    process, so this process cannot measure two counts."""
    done = subprocess.run([sys.executable, str(Path(__file__)), "--batch64", name, str(threads)], input=json.dumps(texts),
                          capture_output=True, text=True, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return float(done.stdout.strip().splitlines()[-1])


def _batch64_here(name: str, threads: int, texts: list[str]) -> float:
    from semroute.embed import make_embedder, with_threads

    model = with_threads(make_embedder(name), threads)
    model.embed(texts[:64])  # loads the engine
    t0 = time.perf_counter()
    for i in range(0, len(texts), 64):
        model.embed(texts[i : i + 64])
    return round(len(texts) / (time.perf_counter() - t0), 1)


@functools.lru_cache(maxsize=1)
def _minilm():
    from semroute import SentenceTransformerEmbedder

    model = SentenceTransformerEmbedder()
    model.embed(["warm up"] * 64)
    return model


def run_throughput(quick: bool, extra: list[str], cache_lines: list[str] | None = None,
                   embed_threads: int | None = None, embedder: str = MINILM) -> dict[str, object]:
    """The semantic-throughput phase alone (about 1-2 minutes): baselines, warm, 128 clients.
    ``embed_threads``: the gateway's torch threads (and the baseline's second thread count); 1 on
    2 cores leaves the event loop a core of its own, as a larger machine would. ``embedder``: the
    gateway's; another than MiniLM has its batch-64 rate measured at the gateway's thread count
    only, each time in a fresh process (``child_batch64``)."""
    train = [t for t, _ in first_per_intent(banking77("train"), 8)][:150 if quick else 600]
    test = [t for t, _ in banking77("test")]
    out: dict[str, object] = {"quick": quick, "cores": os.cpu_count(), "gateway_args": extra, "cache_lines": cache_lines,
                              "embed_threads": embed_threads, "embedder": embedder, "loadavg_start": os.getloadavg()}
    workers = int(extra[extra.index("--workers") + 1]) if "--workers" in extra else 1
    rate_of = None
    if embedder == MINILM:
        out["baseline"] = {**embedder_baselines(test, [miss_text(i) for i in range(40)], 40, workers, embed_threads),
                           "loadavg": os.getloadavg()}
    else:
        threads = embed_threads or max(1, (os.cpu_count() or 1) // workers)
        rate = child_batch64(embedder, threads, test[:512])
        out["baseline"] = {"batch64_texts_per_s": rate, "batch64_texts_per_s_gateway_threads": rate,
                           "gateway_torch_threads": threads, "loadavg": os.getloadavg()}
        rate_of = lambda texts, n: {n: child_batch64(embedder, n, texts)}  # noqa: E731
    fake_proc, fake_url = start_fake(0)
    workdir = Path(tempfile.mkdtemp(prefix="semroute-bench-serve-"))
    proc = None
    try:
        if "--workers" in extra:  # forked workers share one listening port: a fixed free one, not 0
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                extra = [*extra, "--port", str(probe.getsockname()[1])]
        proc, url = start_gateway(fake_url, workdir, extra=extra, cache_lines=cache_lines, embed_threads=embed_threads,
                                  embedder=embedder)
        lean_concurrent(f"{url}/api/chat", [chat("semroute", q) for q in train], 64, {})  # warm: misses stored
        pool = test[200 : 200 + (400 if quick else 2000)]
        pids = {"gateway": proc.pid, "fake": fake_proc.pid}
        out["semantic_throughput"] = semantic_throughput(url, pool, out["baseline"], pids, rate_of)  # type: ignore[arg-type]
        say(f"semantic throughput: {out['semantic_throughput']}")
        out["semantic_hits_throughput"] = semantic_throughput(url, [reworded(q) for q in pool], out["baseline"], pids,  # type: ignore[arg-type]
                                                              rate_of)
        say(f"semantic hits throughput: {out['semantic_hits_throughput']}")
    finally:
        stop(proc, fake_proc)
        out["loadavg_end"] = os.getloadavg()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests (a smoke run)")
    parser.add_argument("--stream-client", nargs=2, metavar=("URL", "MODEL"),
                        help="(internal) stream one chat per question read as JSON from stdin; print the summary")
    parser.add_argument("--throughput-only", action="store_true",
                        help="only the semantic-throughput phase (baselines, warm, 128 clients): 1-2 minutes")
    parser.add_argument("--cache-line", action="append", default=[],
                        help="a line of the gateway's [cache] TOML table, with --throughput-only "
                             "(repeat: --cache-line 'cross_language = true')")
    parser.add_argument("--gateway-arg", action="append", default=[],
                        help="extra argument for `semroute serve` (repeat: --gateway-arg=--workers --gateway-arg=2)")
    parser.add_argument("--embed-threads", type=int, default=None,
                        help="with --throughput-only: the gateway's [server] embed_threads (1 on 2 cores: "
                             "a core for the event loop); the baseline is measured at that count too")
    parser.add_argument("--embedder", default=MINILM,
                        help="with --throughput-only: the gateway's embedder (e.g. multilingual-e5-small, the "
                             "library's default); its batch-64 baseline is measured in fresh processes")
    parser.add_argument("--batch64", nargs=2, metavar=("EMBEDDER", "THREADS"),
                        help="(internal) print EMBEDDER's batch-64 texts/s over the JSON texts on stdin")
    args = parser.parse_args()
    if args.batch64:
        print(_batch64_here(args.batch64[0], int(args.batch64[1]), json.loads(sys.stdin.read())))
        return
    if args.stream_client:
        url, model = args.stream_client
        texts = json.loads(sys.stdin.read())
        print(json.dumps(asyncio.run(streams(url, [chat(model, t, True) for t in texts]))))
        return
    result = run_throughput(args.quick, args.gateway_arg, args.cache_line, args.embed_threads, args.embedder) if args.throughput_only else run(args.quick)
    print(json.dumps(result, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / ("serve_throughput.json" if args.throughput_only else "serve.json")).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
