"""Command line for ``FakeOllama``: ``python -m semroute.testing.fake_ollama --port 11434``.

Runs one fake server in the foreground until Ctrl-C or SIGTERM, printing its URL first, so
manual runs, demos and benchmarks in other processes can point at it like a real Ollama.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Sequence

from ..errors import ConfigError
from .fake_config import Capacity, Timing
from .fake_ollama import DEFAULT_MODELS, FakeOllama

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m semroute.testing.fake_ollama", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated model names")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay before the answer starts")
    parser.add_argument("--ttft-ms", type=float, default=0.0, help="extra delay to the first token")
    parser.add_argument("--token-delay-ms", type=float, default=0.0, help="delay between streamed tokens")
    parser.add_argument("--max-parallel", type=int, default=4, help="like OLLAMA_NUM_PARALLEL")
    parser.add_argument("--queue", type=int, default=512, help="like OLLAMA_MAX_QUEUE; beyond it: 503")
    parser.add_argument("--words", type=int, default=8, help="filler words after the echoed question")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        fake = FakeOllama(
            [m for m in args.models.split(",") if m.strip()],
            host=args.host,
            port=args.port,
            timing=Timing(args.latency_ms, args.ttft_ms, args.token_delay_ms),
            capacity=Capacity(args.max_parallel, args.queue),
            extra_words=args.words,
        )
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    # Signal handlers only set a flag; the main thread does the shutdown.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with fake:
        print(fake.url, flush=True)  # stdout carries only the URL, for scripts to read
        print(f"FakeOllama serving {', '.join(fake.models)}; Ctrl-C to stop", file=sys.stderr, flush=True)
        while not stop.wait(0.5):
            pass
        stats = fake.stats()
    print(
        f"stopped after {stats.count()} requests ({stats.rejected} rejected with 503, "
        f"{stats.max_concurrency} at most at once, {time.process_time():.2f} s CPU)",
        file=sys.stderr,
    )
    return 0
