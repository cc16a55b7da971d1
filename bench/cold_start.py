"""Cold start: wall time of a fresh ``semroute ask`` process, for an exact hit and for a miss.

A FakeOllama answers misses; the cache is warmed once beforehand. Each case runs ``--runs``
times in a new process (``python -m semroute.cli ask ...``) and we report the median from
process start to exit. The baseline measured in the same run is ``python -c "import semroute"``
(the floor every command pays) and the ratio miss / exact hit shows what not loading the
embedding model saves. Writes ``bench/results/cold_start.json``.

    python bench/cold_start.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from semroute import Router, Tier
from semroute.testing import FakeOllama

SMALL, LARGE = "llama3.2:3b", "llama3.1:8b"
QUESTION = "Is a child seat required?"


def timed(args: list[str], runs: int) -> tuple[float, str]:
    """Median seconds from process start to exit, and the last run's stderr line (the CLI's summary)."""
    seconds, last = [], ""
    for _ in range(runs):
        t0 = time.perf_counter()
        done = subprocess.run(args, capture_output=True, text=True, check=True)
        seconds.append(time.perf_counter() - t0)
        last = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
    return statistics.median(seconds), last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with FakeOllama((SMALL, LARGE)) as fake, tempfile.TemporaryDirectory(prefix="semroute-cold-") as tmp:
        tiers = {"small": Tier(SMALL, (fake.url,)), "large": Tier(LARGE, (fake.url,))}
        with Router(data_dir=tmp, tiers=tiers) as router:
            router.warm([(QUESTION, "Yes, for children under 135 cm.")])
        cli = [sys.executable, "-m", "semroute.cli", "ask", "--data-dir", tmp, "--ollama-url", fake.url]
        baseline, _ = timed([sys.executable, "-c", "import semroute"], args.runs)
        hit, hit_line = timed([*cli, QUESTION.lower()], args.runs)
        # every miss asks a new question, so each run is a miss (it stores its answer)
        misses = []
        for i in range(args.runs):
            seconds, miss_line = timed([*cli, f"How do I renew a passport, case {i}?", "--tier", "small"], 1)
            misses.append(seconds)
        miss = statistics.median(misses)
    result = {
        "runs": args.runs,
        "import_semroute_s": round(baseline, 3),
        "exact_hit_s": round(hit, 3),
        "miss_s": round(miss, 3),
        "miss_over_hit": round(miss / hit, 2),
        "hit_over_import": round(hit / baseline, 2),
        "hit_cli_line": hit_line,
        "miss_cli_line": miss_line,
    }
    print(f"import semroute            {baseline:6.2f} s  (baseline: every command pays it)")
    print(f"semroute ask, exact hit    {hit:6.2f} s  ({hit / baseline:.1f}x the import)   {hit_line}")
    print(f"semroute ask, miss         {miss:6.2f} s  ({miss / hit:.1f}x the exact hit: loads the embedder)")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "cold_start.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
