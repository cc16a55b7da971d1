"""Load balancing benchmark: the pool's strategies against nginx, on one fake fleet.

A fleet of fake Ollama instances with heterogeneous speeds (default 1x, 1x, 2x, 4x slower)
and per-instance parallelism runs in its own process. Requests arrive open-loop (Poisson, the
same seeded schedule for every contender) at 50/70/90/110% of the fleet's nominal capacity,
from at most ``--clients`` concurrent clients; latency runs from a request's scheduled arrival
to its answer, so waiting for a client slot counts. Contenders: each pool strategy (slot
limit = the instance's parallelism, central FIFO queue with a deadline) and nginx
(round-robin and ``least_conn``, started here on a free port with a temporary config in front of
the same fleet, then stopped). Reported per cell: throughput, p50/p95/p99 latency, errors,
lost requests, and ratios against nginx from the same run; plus the balancer's decision
overhead measured in-process.

    PYTHONPATH=. python bench/balance.py                 # ~4.5 minutes on 2 cores
    PYTHONPATH=. python bench/balance.py --json --plot bench/results/balance.png
    PYTHONPATH=. python bench/balance.py --loads 0.9 --strategies latency_aware --duration 4   # ~40 s

Results go to ``bench/results/balance.json`` (``--out``). Loads are fractions of the capacity
measured first through the pool (``--nominal-capacity`` uses parallel / latency instead).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from semroute.backends.balancer import Ask, Balancer, Instance
from semroute.backends.limiter import LocalLimiter
from semroute.backends.ollama import OllamaBackend
from semroute.backends.pool import Pool
from semroute.settings import PoolSettings, QueueSettings, Timeout
from semroute.backends.strategy import resolve_strategy
from semroute.errors import SemrouteError
from semroute.types import Message

MODEL = "llama3.2:3b"
DEFAULT_STRATEGIES = ("round_robin", "least_outstanding", "power_of_two", "latency_aware")
NGINX = ("nginx_round_robin", "nginx_least_conn")
RESULTS = Path(__file__).resolve().parent / "results" / "balance.json"


@dataclass
class Cell:
    """One contender at one load level."""

    contender: str
    load: float
    offered: int = 0
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    lost: int = 0
    elapsed_s: float = 0.0
    rate: float = 0.0
    finished_at: list[float] = field(default_factory=list)  # seconds after the first arrival
    duration_s: float = 0.0

    def summary(self, capacity: float) -> dict:
        lat = sorted(self.latencies)

        def pct(q: float) -> float | None:
            return None if not lat else round(1000 * lat[min(len(lat) - 1, int(q * len(lat)))], 1)

        done = len(lat)
        # Steady-state completion rate: answers finished between 1 s and the end of arrivals
        # (skips the ramp-up; a drain tail after the last arrival is not throughput).
        window = max(1e-9, self.duration_s - 1.0)
        throughput = sum(1 for t in self.finished_at if 1.0 <= t <= self.duration_s) / window
        return {
            "contender": self.contender,
            "load": self.load,
            "offered": self.offered,
            "offered_rps": round(self.rate, 2),
            "completed": done,
            "throughput_rps": round(throughput, 2),
            "throughput_of_offered": round(throughput / self.rate, 3) if self.rate else None,
            "throughput_of_capacity": round(throughput / capacity, 3),
            "p50_ms": pct(0.50),
            "p95_ms": pct(0.95),
            "p99_ms": pct(0.99),
            "errors": dict(self.errors),
            "lost": self.lost,
            "drained_at_s": round(self.elapsed_s, 2),
        }


# ------------------------------------------------------------------ the fleet, in its own process


def _fleet_main(conn, speeds: list[float], parallel: int, latency_ms: float) -> None:  # noqa: ANN001
    from semroute.testing.fake_config import Capacity, Timing
    from semroute.testing.fleet import FakeFleet, InstanceSpec

    specs = [InstanceSpec(speed=s, capacity=Capacity(max_parallel=parallel, queue=4096)) for s in speeds]
    with FakeFleet(specs, models=[MODEL], timing=Timing(latency_ms=latency_ms), extra_words=4) as fleet:
        conn.send(fleet.urls)
        conn.recv()  # any message: stop


def start_fleet(speeds: list[float], parallel: int, latency_ms: float):  # noqa: ANN201
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_fleet_main, args=(child, speeds, parallel, latency_ms), daemon=True)
    proc.start()
    if not parent.poll(30):
        proc.kill()
        raise RuntimeError("the fake fleet did not start")
    return proc, parent, parent.recv()


# ------------------------------------------------------------------ nginx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def nginx_config(tmp: Path, port: int, urls: list[str], method: str) -> str:
    servers = "\n".join(f"    server {u.removeprefix('http://')};" for u in urls)
    temp = " ".join(f"{k}_temp_path {tmp}/{k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log error;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  {temp}
  upstream fleet {{
    {method}
{servers}
    keepalive 256;
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://fleet;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_read_timeout 600s;
    }}
  }}
}}
"""


class Nginx:
    """nginx in the foreground on a free port with a temporary config; stopped on exit."""

    def __init__(self, urls: list[str], method: str) -> None:
        self.urls, self.method = urls, method

    def __enter__(self) -> str:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        self._tmp = tempfile.TemporaryDirectory(prefix="semroute-nginx-")
        tmp, port = Path(self._tmp.name), free_port()
        (tmp / "nginx.conf").write_text(nginx_config(tmp, port, self.urls, self.method))
        self._proc = subprocess.Popen([binary, "-p", str(tmp), "-c", str(tmp / "nginx.conf")], stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return f"http://127.0.0.1:{port}"
            if self._proc.poll() is not None:
                raise RuntimeError(f"nginx failed: {self._proc.stderr.read().decode()}")
            time.sleep(0.02)
        raise RuntimeError("nginx did not start listening")

    def __exit__(self, *exc: object) -> None:
        self._proc.terminate()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
        self._tmp.cleanup()


# ------------------------------------------------------------------ load generation


def arrivals(rate: float, duration: float, seed: int) -> list[float]:
    rng, t, out = random.Random(seed), 0.0, []
    while True:
        t += rng.expovariate(rate)
        if t >= duration:
            return out
        out.append(t)


async def drive(call, schedule: list[float], duration: float, clients: int, cell: Cell, drain_s: float) -> None:  # noqa: ANN001
    """Fire ``call()`` at the scheduled times through at most ``clients`` concurrent clients."""
    slots = asyncio.Semaphore(clients)
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05
    last_done = start

    async def one(at: float) -> None:
        nonlocal last_done
        await asyncio.sleep(max(0.0, start + at - loop.time()))
        async with slots:
            try:
                await call()
            except SemrouteError as exc:
                name = type(exc).__name__
                cell.errors[name] = cell.errors.get(name, 0) + 1
                return
        now = loop.time()
        cell.latencies.append(now - (start + at))
        cell.finished_at.append(now - start)
        last_done = max(last_done, now)

    tasks = [asyncio.create_task(one(at)) for at in schedule]
    window = (schedule[-1] if schedule else 0.0) + drain_s
    done, pending = await asyncio.wait(tasks, timeout=window + 0.1)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    cell.offered, cell.lost = len(schedule), len(pending)
    cell.duration_s = duration
    cell.rate = len(schedule) / duration  # the realised Poisson rate, not its mean
    cell.elapsed_s = max(last_done - start, schedule[-1] if schedule else 0.0)


def make_pool(urls: list[str], speeds: list[float], strategy: str, args: argparse.Namespace) -> Pool:
    timeout = Timeout(connect=2.0, read=120.0)
    instances = [
        Instance(OllamaBackend(u, timeout=timeout), weight=1.0 / s, limit=args.slots or args.parallel + 1, models=(MODEL,))
        for u, s in zip(urls, speeds)
    ]
    settings = PoolSettings(queue=QueueSettings(max_length=args.clients * 4, timeout_s=args.queue_timeout))
    return Pool(instances, strategy=strategy, settings=settings, rng=random.Random(1))


async def run_cell(contender: str, target: str | list[str], load: float, args: argparse.Namespace) -> Cell:
    speeds, capacity = args.speed_list, args.capacity
    messages = [Message("user", "How long may a car park at a bus stop?")]
    rate = load * capacity
    cell = Cell(contender, load, rate=rate)
    if isinstance(target, str):
        backend = OllamaBackend(target, timeout=Timeout(connect=2.0, read=120.0))
        call, closer = (lambda: backend.achat(MODEL, messages)), backend.aclose
    else:
        pool = make_pool(target, speeds, contender, args)
        call, closer = (lambda: pool.achat(MODEL, messages)), pool.aclose
    try:
        warm = arrivals(0.5 * capacity, args.warmup, seed=99)
        await drive(call, warm, args.warmup, args.clients, Cell("warmup", 0.5), args.drain)
        await drive(call, arrivals(rate, args.duration, seed=int(load * 1000)), args.duration, args.clients, cell, args.drain)
    finally:
        await closer()
    return cell


async def measure_capacity(urls: list[str], args: argparse.Namespace, seconds: float = 4.0) -> float:
    """Saturated closed loop through the pool: the fleet's real capacity on this machine.

    The nominal capacity (parallel / latency summed) ignores HTTP and CPU overhead, which on a
    busy 2-core box is several ms per request; loads are fractions of what was measured.
    """
    pool = make_pool(urls, args.speed_list, "least_outstanding", args)
    messages = [Message("user", "How long may a car park at a bus stop?")]
    loop = asyncio.get_running_loop()
    start = loop.time()
    finished: list[float] = []

    async def worker() -> None:
        while loop.time() - start < seconds:
            await pool.achat(MODEL, messages)
            finished.append(loop.time() - start)

    workers = 2 * (args.slots or args.parallel + 1) * len(urls)
    try:
        await asyncio.gather(*(worker() for _ in range(workers)))
    finally:
        await pool.aclose()
    return sum(1 for t in finished if 1.0 <= t <= seconds) / (seconds - 1.0)


# ------------------------------------------------------------------ decision overhead


class _NoBackend:
    def __init__(self, name: str) -> None:
        self.name = name


def decision_overhead(strategy: str, n: int = 20000, instances: int = 8) -> dict:
    """Time one admission decision (candidates, strategy, slot) plus its release, in-process."""
    specs = [Instance(_NoBackend(f"i{k}"), limit=4, models=(MODEL,)) for k in range(instances)]  # type: ignore[arg-type]
    core = Balancer(
        specs, strategy=resolve_strategy(strategy), settings=PoolSettings(), limiter=LocalLimiter(),
        clock=time.monotonic, rng=random.Random(0),
    )
    held: list[int] = []
    samples = []
    for k in range(n):
        t0 = time.perf_counter()
        idx = core.enter(Ask(MODEL), in_loop=False)
        samples.append(time.perf_counter() - t0)
        held.append(idx)  # type: ignore[arg-type]
        if len(held) > 12:  # keep the fleet part-busy so loads differ
            core.succeeded(held.pop(k % len(held)), MODEL, 0.1, None)
    samples.sort()
    return {"strategy": strategy, "p50_us": round(1e6 * samples[n // 2], 1), "p99_us": round(1e6 * samples[int(n * 0.99)], 1)}


# ------------------------------------------------------------------ report


def add_ratios(rows: list[dict]) -> None:
    """p99 and throughput of each row against both nginx methods at the same load."""
    base = {(r["contender"], r["load"]): r for r in rows if r["contender"] in NGINX}
    for r in rows:
        for method in NGINX:
            b = base.get((method, r["load"]))
            if b and b["p99_ms"] and r["p99_ms"]:
                r[f"p99_vs_{method}"] = round(r["p99_ms"] / b["p99_ms"], 3)
            if b and b["throughput_rps"]:
                r[f"throughput_vs_{method}"] = round(r["throughput_rps"] / b["throughput_rps"], 3)


def print_table(report: dict) -> None:
    f = report["fleet"]
    print(
        f"fleet: speeds {f['speeds']} x {f['latency_ms']} ms, parallel {f['parallel']}, capacity {f['capacity_rps']} req/s"
        f" ({'measured' if f['capacity_measured'] else 'nominal'}; nominal {f['nominal_capacity_rps']})"
    )
    head = f"{'contender':26} {'load':>5} {'thru/s':>7} {'of off':>6} {'p50':>7} {'p95':>7} {'p99':>8} {'p99/rr':>7} {'p99/lc':>7}  errors lost"
    print(head)
    for r in report["cells"]:
        errs = ",".join(f"{k}={v}" for k, v in r["errors"].items()) or "-"
        print(
            f"{r['contender']:26} {r['load']:>5.0%} {r['throughput_rps']:>7.1f} {r['throughput_of_offered'] or 0:>6.1%}"
            f" {r['p50_ms'] or 0:>7.0f} {r['p95_ms'] or 0:>7.0f} {r['p99_ms'] or 0:>8.0f}"
            f" {r.get('p99_vs_nginx_round_robin', float('nan')):>7.2f} {r.get('p99_vs_nginx_least_conn', float('nan')):>7.2f}"
            f"  {errs} {r['lost']}"
        )
    print("decision overhead (8 instances, in-process):")
    for d in report["decision_overhead"]:
        print(f"  {d['strategy']:26} p50 {d['p50_us']:6.1f} us  p99 {d['p99_us']:6.1f} us")


def plot(report: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name in dict.fromkeys(r["contender"] for r in report["cells"]):
        rows = [r for r in report["cells"] if r["contender"] == name]
        style = "--" if name in NGINX else "-"
        ax1.plot([r["load"] * 100 for r in rows], [r["p99_ms"] or float("nan") for r in rows], style, marker="o", label=name)
        ax2.plot([r["load"] * 100 for r in rows], [r["throughput_rps"] for r in rows], style, marker="o", label=name)
    ax1.set(xlabel="offered load (% of capacity)", ylabel="p99 latency (ms)", yscale="log", title="p99 latency")
    ax2.set(xlabel="offered load (% of capacity)", ylabel="completed req/s", title="throughput")
    ax2.axhline(report["fleet"]["capacity_rps"], color="grey", lw=0.8)
    ax1.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


async def run_all(args: argparse.Namespace, urls: list[str]) -> list[Cell]:
    cells: list[Cell] = []
    if args.measure_capacity:
        args.capacity = await measure_capacity(urls, args)
        print(f"  measured capacity {args.capacity:.1f} req/s (nominal {args.nominal:.1f})", file=sys.stderr)
    for load in args.load_list:
        for strategy in args.strategy_list:
            cells.append(await run_cell(strategy, urls, load, args))
            print(f"  done {strategy} @ {load:.0%}", file=sys.stderr)
        if not args.no_nginx:
            for name in NGINX:
                method = "least_conn;" if name == "nginx_least_conn" else ""
                with Nginx(urls, method) as url:
                    cells.append(await run_cell(name, url, load, args))
                print(f"  done {name} @ {load:.0%}", file=sys.stderr)
    return cells


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--speeds", default="1,1,2,4", help="slowness factor per instance")
    p.add_argument("--latency-ms", type=float, default=100.0, help="request time on a 1x instance")
    p.add_argument("--parallel", type=int, default=4, help="requests each instance runs at once")
    p.add_argument("--loads", default="0.5,0.7,0.9,1.1", help="offered load as fractions of capacity")
    p.add_argument("--strategies", default=",".join(DEFAULT_STRATEGIES))
    p.add_argument("--duration", type=float, default=7.0, help="seconds of arrivals per cell")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds at 50%% load before each cell")
    p.add_argument("--drain", type=float, default=20.0, help="seconds allowed after the last arrival")
    p.add_argument("--slots", type=int, default=0, help="the pool's slot limit per instance (0: parallelism + 1)")
    p.add_argument("--clients", type=int, default=128, help="most concurrent requests in flight")
    p.add_argument("--queue-timeout", type=float, default=2.0, help="the pool's queue deadline (s)")
    p.add_argument("--no-nginx", action="store_true")
    p.add_argument("--nominal-capacity", dest="measure_capacity", action="store_false",
                   help="take loads as fractions of parallel/latency instead of measuring capacity first")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--plot", metavar="FILE", help="write a PNG of p99 and throughput against load")
    p.add_argument("--out", type=Path, default=RESULTS, help="where the JSON results are written")
    args = p.parse_args(argv)
    args.speed_list = [float(s) for s in args.speeds.split(",")]
    args.load_list = [float(s) for s in args.loads.split(",")]
    args.strategy_list = [s for s in args.strategies.split(",") if s]
    args.nominal = args.capacity = sum(args.parallel / (args.latency_ms / 1000.0 * s) for s in args.speed_list)
    if not args.no_nginx and not shutil.which("nginx") and not Path("/usr/sbin/nginx").exists():
        p.error("nginx not found (apt-get install nginx) -- or pass --no-nginx")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    proc, conn, urls = start_fleet(args.speed_list, args.parallel, args.latency_ms)
    started = time.monotonic()
    try:
        cells = asyncio.run(run_all(args, urls))
    finally:
        conn.send("stop")
        proc.join(15)
        if proc.is_alive():
            proc.kill()
    rows = [c.summary(args.capacity) for c in cells]
    add_ratios(rows)
    report = {
        "fleet": {"speeds": args.speed_list, "latency_ms": args.latency_ms, "parallel": args.parallel,
                  "capacity_rps": round(args.capacity, 2), "nominal_capacity_rps": round(args.nominal, 2),
                  "capacity_measured": args.measure_capacity, "clients": args.clients, "duration_s": args.duration,
                  "queue_timeout_s": args.queue_timeout},
        "cells": rows,
        "decision_overhead": [decision_overhead(s) for s in args.strategy_list],
        "wall_s": round(time.monotonic() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if args.plot:
        plot(report, args.plot)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
        print(f"wall time {report['wall_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
