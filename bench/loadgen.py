"""A lean HTTP/1.1 load generator in a process of its own, so the clients' CPU is not the gateway's.

``bench/serve.py``'s throughput phase ran 128 httpx clients in its own process, which ate about a
core of this 2-core machine beside the gateway; this one keeps the Python per request small (raw
asyncio streams, keep-alive connections, one pre-encoded request per body) and reports its own CPU
seconds so the share of the machine left to the gateway is visible.

    python bench/loadgen.py URL PATH CLIENTS < bodies.json   # prints one JSON summary
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from urllib.parse import urlsplit


def encode(host: str, path: str, body: dict) -> bytes:
    data = json.dumps(body).encode()
    return (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n").encode() + data


async def read_response(reader: asyncio.StreamReader) -> tuple[int, str]:
    """(status, x-semroute-source) of one response, its body read and dropped."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(head[0].split(" ", 2)[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)}
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status, headers.get("x-semroute-source", "?")


async def load(url: str, path: str, bodies: list[dict], clients: int) -> dict[str, object]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    queue = [encode(parts.netloc, path, b) for b in reversed(bodies)]
    sources: dict[str, int] = {}
    errors = 0

    async def worker() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while queue:
                writer.write(queue.pop())
                status, source = await read_response(reader)
                errors += status != 200
                sources[source] = sources.get(source, 0) + 1
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    return {"seconds": time.perf_counter() - t0, "sources": sources, "errors": errors}


def main() -> None:
    url, path, clients = sys.argv[1], sys.argv[2], int(sys.argv[3])
    bodies = json.loads(sys.stdin.read())
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    out = asyncio.run(load(url, path, bodies, clients))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out["cpu_s"] = round(usage.ru_utime + usage.ru_stime - usage0.ru_utime - usage0.ru_stime, 3)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
