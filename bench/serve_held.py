"""1,000 streaming clients *held* at once through ``semroute serve``, arriving as users do.

``bench/serve.py`` opens its 1,000 streams in the same millisecond: a burst that any gateway
must queue (each new stream costs a few ms of Python), so its added p99 measures the burst.
Here the same number of clients arrive over a ramp (``--ramp-s``, evenly spaced) and each stream
lasts longer than the ramp (``--token-delay-ms`` x the answer's tokens), so all of them are open
together at the peak (``peak_open`` says how many were), as when 1,000 users wait on a
large model. Every stream runs twice with the same schedule: straight to FakeOllama, then
through the gateway's proxy path (a named model, ``cache_models = false``) in front of the same
FakeOllama. Per stream: time to the first streamed line (TTFT) and to the last; the added p50
and p99 are gateway minus direct. The clients run in a child process of their own.

    nice -n 10 .venv/bin/python bench/serve_held.py [--streams 1000] [--ramp-s 4] [--token-delay-ms 200]

Loopback only, bounded in count and time; prints JSON and writes bench/results/serve_held.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve import LARGE, RESULTS, chat, cpu_seconds, pct, start_gateway, stop  # noqa: E402
from shared_data import banking77  # noqa: E402


def start_fake(token_delay_ms: float, words: int) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "semroute.testing.fake_ollama", "--models", f"llama3.2:3b,{LARGE}",
         "--token-delay-ms", str(token_delay_ms), "--words", str(words), "--max-parallel", "4096",
         "--queue", "8192"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


# -- the client process -----------------------------------------------------------------------


async def one_stream(host: str, port: int, body: bytes, at: float, open_now: list[int]) -> tuple[float, float, str]:
    """(TTFT ms, total ms, "ok" / "error" / "lost") of one stream started at ``at`` (monotonic)."""
    await asyncio.sleep(max(0.0, at - time.perf_counter()))
    t0 = time.perf_counter()
    open_now[0] += 1
    open_now[1] = max(open_now[1], open_now[0])
    ttft, data = float("nan"), b""
    try:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"POST /api/chat HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
                     b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
        while chunk := await reader.read(65536):
            data += chunk
            if math.isnan(ttft) and b'"content"' in data:  # the first streamed line
                ttft = (time.perf_counter() - t0) * 1000
        writer.close()
    except OSError:
        return ttft, (time.perf_counter() - t0) * 1000, "error"
    finally:
        open_now[0] -= 1
    total = (time.perf_counter() - t0) * 1000
    if not data.startswith(b"HTTP/1.1 200"):
        return ttft, total, "error"
    return ttft, total, "ok" if b'"done": true' in data or b'"done":true' in data else "lost"


async def held(url: str, bodies: list[bytes], ramp_s: float) -> dict[str, object]:
    host, port = url.removeprefix("http://").split(":")
    open_now = [0, 0]  # open streams now, at most
    start = time.perf_counter() + 0.5
    step = ramp_s / max(1, len(bodies) - 1)
    results = await asyncio.gather(*(one_stream(host, int(port), b, start + i * step, open_now)
                                     for i, b in enumerate(bodies)))
    return {"ttft_ms": [r[0] for r in results], "total_ms": [r[1] for r in results],
            "status": [r[2] for r in results], "peak_open": open_now[1]}


def client_main(url: str, ramp_s: float) -> None:
    try:
        import uvloop  # the clients must not be the bottleneck they measure
        uvloop.install()
    except ImportError:
        pass
    texts = json.loads(sys.stdin.read())
    bodies = [json.dumps(chat(LARGE, t, True)).encode() for t in texts]
    print(json.dumps(asyncio.run(held(url, bodies, ramp_s))))


# -- the run ----------------------------------------------------------------------------------


def phase(url: str, texts: list[str], ramp_s: float, server_pid: int | None) -> dict[str, object]:
    cpu0 = None if server_pid is None else cpu_seconds(server_pid)
    load = os.getloadavg()
    done = subprocess.run([sys.executable, __file__, "--client", url, str(ramp_s)], input=json.dumps(texts),
                          capture_output=True, text=True, check=True, timeout=900)
    raw = json.loads(done.stdout)
    out = {"raw": raw, "peak_open": raw["peak_open"], "loadavg_before": load, "loadavg_after": os.getloadavg(),
           "errors": raw["status"].count("error"), "lost": raw["status"].count("lost")}
    if cpu0 is not None and server_pid is not None:
        out["gateway_cpu_ms_per_stream"] = round((cpu_seconds(server_pid) - cpu0) * 1000 / len(texts), 3)
    return out


def added(direct: dict[str, object], gateway: dict[str, object], key: str) -> dict[str, float]:
    """Per-stream gateway minus direct (same question, same arrival slot), p50/p99, and each side's own."""
    d, g = direct["raw"][key], gateway["raw"][key]
    both = [(a, b) for a, b, s, t in zip(d, g, direct["raw"]["status"], gateway["raw"]["status"])
            if s == t == "ok" and not math.isnan(a) and not math.isnan(b)]
    diff = [b - a for a, b in both]
    return {"direct_p50_ms": round(pct([a for a, _ in both], 50), 2), "direct_p99_ms": round(pct([a for a, _ in both], 99), 2),
            "gateway_p50_ms": round(pct([b for _, b in both], 50), 2), "gateway_p99_ms": round(pct([b for _, b in both], 99), 2),
            "added_p50_ms": round(pct(diff, 50), 2), "added_p99_ms": round(pct(diff, 99), 2),
            "added_p99_of_p99_ms": round(pct([b for _, b in both], 99) - pct([a for a, _ in both], 99), 2)}


def run(args: argparse.Namespace) -> dict[str, object]:
    texts = [t for t, _ in banking77("test")][: args.streams]
    out: dict[str, object] = {"streams": len(texts), "ramp_s": args.ramp_s, "token_delay_ms": args.token_delay_ms,
                              "words": args.words, "cores": os.cpu_count(), "loadavg_start": os.getloadavg()}
    fake, fake_url = start_fake(args.token_delay_ms, args.words)
    workdir = Path(tempfile.mkdtemp(prefix="semroute-bench-held-"))
    gateway = None
    try:
        gateway, url = start_gateway(fake_url, workdir)
        for target in (fake_url, url):  # warm both paths (connections, first-call imports) before measuring
            phase(target, texts[:100], 0.5, None)
        direct = phase(fake_url, texts, args.ramp_s, None)
        through = phase(url, texts, args.ramp_s, gateway.pid)
        for name, result in (("direct", direct), ("gateway", through)):
            out[name] = {k: v for k, v in result.items() if k != "raw"}
        out["ttft"] = added(direct, through, "ttft_ms")
        out["total"] = added(direct, through, "total_ms")
    finally:
        stop(gateway, fake)
        shutil.rmtree(workdir, ignore_errors=True)
    out["loadavg_end"] = os.getloadavg()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--ramp-s", type=float, default=4.0, help="the clients arrive evenly over this long")
    parser.add_argument("--token-delay-ms", type=float, default=200.0, help="FakeOllama's time between tokens")
    parser.add_argument("--words", type=int, default=12, help="filler words after the echoed question")
    parser.add_argument("--client", nargs=2, metavar=("URL", "RAMP_S"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        client_main(args.client[0], float(args.client[1]))
        return
    result = run(args)
    print(json.dumps(result, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "serve_held.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
