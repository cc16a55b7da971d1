"""Two ``semroute serve`` gateways side by side, this working tree and another revision, misses
alternating between them: the miss path's A/B in one run, request by request.

``bench/serve.py`` measures each baseline in its own phase, minutes apart; on a shared machine
the embedding alone swings by several ms between phases (12.7 to 20.6 ms at load 3-5,
2026-12-04), more than a change to the gateway moves. Here both gateways run at once in front of
one FakeOllama (zero latency), each warmed with the same banking77 train questions; then each
miss text goes to one gateway and at once to the other (which goes first alternates), after one
direct model call to FakeOllama, and the same for exact hits. Per gateway: miss p50, its
``Server-Timing`` steps' p50, each miss's time less its own embedding step (paired per request,
so the machine's load moves both sides alike), that less the direct call, exact-hit p50.

Which misses: ``--texts synthetic`` (the default, as in ``bench/serve.py``) are made-up strings
nearly identical to one another, so from the fifth on every miss has four stored misses above
the verifier's cosine floor and the pair model judges all four: the dearest miss there is.
``--texts held-out`` are real questions of a source the warm-up never saw (clinc150's test
split, ``serve.held_out_questions``), as a live stream: a question the cache answers is not a
miss and is left out, a miss is stored and can be a candidate for the next ones.

The other revision comes from ``git archive REF`` into a temporary directory (nothing is checked
out here). Loopback only, bounded. Prints JSON, writes bench/results/serve_ab.json.

    nice -n 10 .venv/bin/python bench/serve_ab.py [--ref main] [--misses 150] [--texts held-out]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve import (RESULTS, SMALL, chat, concurrent, held_out_questions, miss_text, pct, start_fake,  # noqa: E402
                   start_gateway, stop, timing_steps)
from shared_data import banking77, first_per_intent  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def checkout(ref: str) -> Path:
    """``ref``'s tree in a temporary directory (``git archive``: no worktree, no checkout)."""
    where = Path(tempfile.mkdtemp(prefix="semroute-ab-"))
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True)
    return where


def timed(client: httpx.Client, url: str, body: dict) -> tuple[float, httpx.Response]:
    t0 = time.perf_counter()
    response = client.post(url, json=body)
    return (time.perf_counter() - t0) * 1000, response


def run(ref: str, misses: int, texts: str = "synthetic") -> dict[str, object]:
    train = [t for t, _ in first_per_intent(banking77("train"), 8)][:150]
    questions = iter(held_out_questions() if texts == "held-out" else map(miss_text, itertools.count()))
    names = {"this": None, ref: checkout(ref)}
    fake, fake_url = start_fake(0)
    gateways: dict[str, tuple[subprocess.Popen[str], str]] = {}
    rows: dict[str, dict[str, list[float]]] = {name: {"miss": [], "paired": [], "exact": []} for name in names}
    steps: dict[str, dict[str, list[float]]] = {name: {} for name in names}
    direct: list[float] = []
    served = 0  # questions the cache answered (held-out only): not misses, left out
    try:
        for name, source in names.items():
            gateways[name] = start_gateway(fake_url, Path(tempfile.mkdtemp(prefix="semroute-ab-")), source)
            asyncio.run(concurrent(f"{gateways[name][1]}/api/chat", [chat("semroute", q) for q in train], 64))
        load = os.getloadavg()
        order = list(names)
        with httpx.Client(timeout=120) as client:
            i = 0
            while i < misses:
                question = next(questions)
                direct.append(timed(client, f"{fake_url}/api/chat", chat(SMALL, f"direct {i}"))[0])
                answered = {}
                for name in order if i % 2 == 0 else order[::-1]:
                    ms, response = timed(client, f"{gateways[name][1]}/api/chat", chat("semroute", question))
                    response.raise_for_status()
                    answered[name] = (ms, response)
                if any(r.headers["x-semroute-source"] not in ("small", "large") for _, r in answered.values()):
                    assert texts != "synthetic", "a synthetic miss was answered from the cache"
                    served += 1
                    direct.pop()
                    continue
                for name, (ms, response) in answered.items():
                    step = timing_steps(response)
                    rows[name]["miss"].append(ms)
                    rows[name]["paired"].append(ms - step["embed"])
                    for key, value in step.items():
                        steps[name].setdefault(key, []).append(value)
                i += 1
            for i, question in enumerate(train):
                for name in order if i % 2 == 0 else order[::-1]:
                    rows[name]["exact"].append(timed(client, f"{gateways[name][1]}/api/chat", chat("semroute", question))[0])
    finally:
        stop(*(proc for proc, _ in gateways.values()), fake)
    direct_p50 = pct(direct, 50)
    out: dict[str, object] = {"ref": ref, "texts": texts, "misses": misses, "served_from_cache_skipped": served,
                              "loadavg_start": load, "loadavg_end": os.getloadavg(),
                              "direct_model_call_p50_ms": round(direct_p50, 3)}
    for name in names:
        paired = pct(rows[name]["paired"], 50)
        out[name] = {"miss_p50_ms": round(pct(rows[name]["miss"], 50), 3),
                     "steps_p50_ms": {key: round(pct(values, 50), 3) for key, values in steps[name].items()},
                     "wall_minus_own_embed_p50_ms": round(paired, 3),
                     "added_p50_ms_own_embed": round(paired - direct_p50, 3),
                     "exact_p50_ms": round(pct(rows[name]["exact"], 50), 3)}
    this, other = out["this"], out[ref]
    out["added_ratio_this_over_ref"] = round(this["added_p50_ms_own_embed"] / other["added_p50_ms_own_embed"], 3)  # type: ignore[index]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref", default="main", help="the revision to run beside this working tree")
    parser.add_argument("--misses", type=int, default=150, help="misses per gateway")
    parser.add_argument("--texts", choices=("synthetic", "held-out"), default="synthetic",
                        help="made-up near-identical misses, or held-out real questions (see above)")
    args = parser.parse_args()
    result = run(args.ref, args.misses, args.texts)
    print(json.dumps(result, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "serve_ab.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
