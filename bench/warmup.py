"""Warm-up at scale: ``Router.warm`` of N question/answer rows next to pure batch embedding of the same texts.

The texts are real, distinct questions (banking77, clinc150, NQ-open and the Turkish TQP
paraphrase set from ``../shared/data``, de-duplicated by the exact tier's normalisation,
shuffled with a fixed seed). Each size runs in its own child process (so peak RSS is that
size's): the default embedder is loaded once, then the rows are processed in chunks of
``--chunk`` rows, each chunk embedded alone (``embedder.embed`` in batches of
``--batch-size``: the baseline) and warmed into one ``Router(data_dir=...)`` (the embedded,
journaled ``MemoryStore`` and the default index) with the same batch size, the two in
alternating order. Interleaving in small chunks keeps a shared machine's load drift (other
jobs come and go within minutes) out of the ratio; the time spent inside the embedder during
the warm-up is reported too, so the warm-up's own overhead is visible apart from that noise.
Then the same rows are warmed again (every row already stored: the resume path).
Target (issue 16): warm-up <= 1.2 x pure batch embedding.

    nice -n 10 python bench/warmup.py --sizes 10000 30000 [--json]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / ".." / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results"


def questions(limit: int) -> list[str]:
    """Distinct real questions (exact-tier normalisation), shuffled with a fixed seed."""
    from semroute.request import normalise

    texts: list[str] = []
    for name in ("train.csv", "test.csv"):
        with open(DATA / "banking77" / name, encoding="utf-8") as f:
            texts += [row["text"] for row in csv.DictReader(f)]
    clinc = json.loads((DATA / "clinc150" / "data_full.json").read_text(encoding="utf-8"))
    texts += [text for split in clinc.values() for text, _ in split]
    for name in ("tqp_train.csv", "tqp_dev.csv"):
        with open(DATA / "tqp_turkish_question_paraphrase" / name, encoding="utf-8") as f:
            for row in csv.DictReader(f):
                texts += [row["input"], row["target"]]
    seen: set[str] = set()
    unique = []
    for text in texts:
        key = normalise(text) if text.strip() else ""
        if key and key not in seen and len(text) <= 4000:
            seen.add(key)
            unique.append(text)
    random.Random(16).shuffle(unique)
    if len(unique) < limit:
        raise SystemExit(f"only {len(unique)} distinct questions available, asked for {limit}")
    return unique[:limit]


class Timed:
    """The embedder, adding up the seconds spent inside it (to separate the warm-up's own work)."""

    def __init__(self, inner) -> None:
        self.inner, self.name, self.dim, self.seconds = inner, inner.name, inner.dim, 0.0

    def embed(self, texts):
        t0 = time.perf_counter()
        try:
            return self.inner.embed(texts)
        finally:
            self.seconds += time.perf_counter() - t0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(size: int, chunk: int, batch_size: int) -> dict[str, object]:
    from semroute import Router
    from semroute.embed import default_embedder

    texts = questions(size)
    rows = [(q, f"Answer {i}: a curated reply of a typical FAQ length, one or two sentences long.")
            for i, q in enumerate(texts)]
    embedder = default_embedder()
    embedder.embed(["load the model before timing"])
    pure_s = warm_s = embed_in_warm_s = 0.0
    timed = Timed(embedder)
    with tempfile.TemporaryDirectory() as tmp:
        router = Router(data_dir=tmp, embedder=timed)
        t0 = time.perf_counter()
        router.pipeline.prepare()  # store, index, verifier: start-up, not per-row work
        prepare_s = time.perf_counter() - t0
        rss_start = peak_rss_mb()
        for n, start in enumerate(range(0, size, chunk)):
            part = texts[start : start + chunk]
            for step in (("pure", "warm") if n % 2 == 0 else ("warm", "pure")):
                t0 = time.perf_counter()
                if step == "pure":
                    for b in range(0, len(part), batch_size):
                        embedder.embed(part[b : b + batch_size])
                    pure_s += time.perf_counter() - t0
                else:
                    inside = timed.seconds
                    report = router.warm(rows[start : start + chunk], batch_size=batch_size)
                    warm_s += time.perf_counter() - t0
                    embed_in_warm_s += timed.seconds - inside
                    assert report.added == len(part), report.as_dict()
        t0 = time.perf_counter()
        again = router.warm(rows, batch_size=batch_size)
        resume_s = time.perf_counter() - t0
        assert again.already_stored == size and again.stored == 0
        entries = len(router.pipeline.cache)
        router.close()
    return {"size": size, "embedder": embedder.name, "batch_size": batch_size, "chunk": chunk,
            "pure_embed_s": round(pure_s, 2), "warm_s": round(warm_s, 2), "ratio": round(warm_s / pure_s, 3),
            "embed_inside_warm_s": round(embed_in_warm_s, 2), "warm_overhead_s": round(warm_s - embed_in_warm_s, 2),
            "overhead_share": round((warm_s - embed_in_warm_s) / warm_s, 4),
            "rows_per_s_warm": round(size / warm_s, 1), "rows_per_s_pure": round(size / pure_s, 1),
            "resume_all_stored_s": round(resume_s, 2), "prepare_s": round(prepare_s, 2), "entries": entries,
            "peak_rss_mb_before_rows": round(rss_start, 1), "peak_rss_mb": round(peak_rss_mb(), 1),
            "loadavg_end": [round(x, 2) for x in os.getloadavg()]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000])
    parser.add_argument("--chunk", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child, args.chunk, args.batch_size)))
        return
    results = []
    for size in args.sizes:
        load = [round(x, 2) for x in os.getloadavg()]
        out = subprocess.run([sys.executable, __file__, "--child", str(size), "--chunk", str(args.chunk),
                              "--batch-size", str(args.batch_size)], capture_output=True, text=True, check=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        result["loadavg_start"] = load
        results.append(result)
        if not args.json:
            print(f"{size:>7} rows  pure embedding {result['pure_embed_s']:8.1f} s  warm {result['warm_s']:8.1f} s  "
                  f"ratio {result['ratio']:.3f} (target <= 1.2)  own work {100 * result['overhead_share']:.1f}% of warm  resume {result['resume_all_stored_s']:.1f} s  "
                  f"peak RSS {result['peak_rss_mb']:.0f} MB  load {load} -> {result['loadavg_end']}", flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "warmup.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
