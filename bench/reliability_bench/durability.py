"""SIGKILL durability of ``MemoryStore``'s journal: no confirmed write is lost."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from semroute.cache import MemoryStore

# The child confirms a write by printing its id after ``put_many`` returned (batches of 1-8).
WRITER = r"""
import sys, hashlib, random
import numpy as np
from semroute.cache import MemoryStore
from semroute.types import CacheEntry
store = MemoryStore(sys.argv[1], max_entries=1_000_000)
i, rng = int(sys.argv[2]), random.Random(int(sys.argv[2]))
print("ready", flush=True)
while True:
    batch = []
    for _ in range(rng.randint(1, 8)):
        v = np.frombuffer(hashlib.blake2b(str(i).encode(), digest_size=64).digest(), dtype=np.uint32).astype(np.float32)
        v -= 2.0**31
        batch.append(CacheEntry(id=f"id{i}", key=f"k{i}", scope="ns|p", namespace="ns", question=f"q{i}",
                                answer=f"a{i}", vector=v / np.linalg.norm(v), created_at=1.0))
        i += 1
    store.put_many(batch)
    print(" ".join(e.id for e in batch), flush=True)
"""


def _kill_one(directory: Path, start: int, rng: random.Random) -> list[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen([sys.executable, "-c", WRITER, str(directory), str(start)], stdout=subprocess.PIPE,
                          text=True, env=env) as child:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        confirmed: list[str] = []
        for _ in range(rng.randint(50, 800)):
            confirmed += child.stdout.readline().split()
        child.send_signal(signal.SIGKILL)
        for line in child.stdout:
            confirmed += line.split()
        child.wait(timeout=30)
    return confirmed


def run(kills: int) -> dict[str, object]:
    rng = random.Random(12)
    directory = Path(tempfile.mkdtemp(prefix="semroute-sigkill-"))
    confirmed: list[str] = []
    lost_per_kill = []
    for k in range(kills):
        confirmed += _kill_one(directory, k * 10_000_000, rng)
        with MemoryStore(directory, max_entries=1_000_000) as store:
            ids = {e.id for e in store.entries()}
        lost_per_kill.append(len(set(confirmed) - ids))
    return {"kills": kills, "confirmed_writes": len(confirmed), "lost": lost_per_kill[-1] if lost_per_kill else 0,
            "lost_per_kill": lost_per_kill, "target_met": not any(lost_per_kill)}
