"""Hit quality and traffic split as the cache grows from its own misses, replayed through ``Router.ask``.

``cache_quality.py`` asks a fixed cache. In production the cache also stores every answer the
models give, so it grows with the traffic: the hit rate rises, and so does the number of close
neighbours a query can be confused with. This replays a labelled stream the way a deployment
sees it and reports, per quarter of the stream:

- the share of queries answered by the exact tier, the semantic tier, the small and the large model
  (the classifier's split of the misses): the numbers a capacity plan starts from;
- hit precision and recall against the dataset's intent labels. A hit is right when the entry it
  served, a warm-up question or an earlier query, has the query's intent; a query of an
  out-of-scope set must miss, and a hit on an earlier out-of-scope query counts as false, since
  nothing says they ask the same thing;
- the cache's size.

Set-up: the cache is warmed like an FAQ (banking77: every 10th train utterance; clinc150: 10 train
utterances per intent); the stream is the test split in a fixed shuffled order (clinc150 adds its
1,000 out-of-scope test queries). Misses are answered by a zero-latency ``FakeOllama``, whose
answers differ per question, as an LLM's do, and stored by the router as in production.
Baseline, same run and same order: the frozen warm-up cache (the exact and semantic lookups alone,
nothing stored).

``--warm-answers per-intent`` gives the warm-up one answer per intent, as a hand-written FAQ
has, so the answer consensus votes; the default gives every warm-up question its own answer.
``--learn-aliases`` is an experiment: after each semantic hit the query is stored too, via
``Router.warm``, with the answer it was served, so a question's phrasings accumulate.

    PYTHONPATH=. HF_HUB_OFFLINE=1 python bench/cache_stream.py [--sets banking77,clinc150]
        [--warm-answers unique|per-intent] [--learn-aliases] [--limit N] [--embedding-cache FILE.npz]
        [--out bench/results/cache_stream.json]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import shared_data as sd  # noqa: E402
from train_verifier import _CachedEmbed  # noqa: E402

from semroute import Router, SentenceTransformerEmbedder, Tier  # noqa: E402
from semroute.request import normalise  # noqa: E402
from semroute.testing import FakeOllama  # noqa: E402

SMALL, LARGE = "llama3.2:3b", "llama3.1:8b"
SOURCES = ("exact", "semantic", "small", "large")


def stream_sets(names, seed: int, tuning: bool = False):
    """(name, warm-up rows (question, intent), stream rows (query, intent or None)) per set."""
    rng = random.Random(seed)
    if tuning:  # the consensus's tuning sets (train and validation splits), never the test splits
        import train_consensus

        # Their held-out intents are labelled None there (they must miss the warm-up cache); here
        # they keep their intent, since once a miss is stored its rewordings may hit it.
        intent = dict(sd.banking77("train")) | dict(sd.clinc150("val"))
        for name, warm_rows, stream in train_consensus.tuning_sets():
            if name in names:
                stream = [(q, intent.get(q) if i is None else i) for q, i in stream]
                rng.shuffle(stream)
                yield name, warm_rows, stream
        return
    if "banking77" in names:
        stream = sd.banking77("test")
        rng.shuffle(stream)
        yield "banking77", sd.banking77("train")[::10], stream
    if "clinc150" in names:
        stream = sd.clinc150("test") + [(t, None) for t, _ in sd.clinc150("oos_test")]
        rng.shuffle(stream)
        yield "clinc150", sd.first_per_intent(sd.clinc150("train"), 10), stream


class Tally:
    """Per-stretch counts of who answered and how hits fared."""

    def __init__(self) -> None:
        self.n = self.must_hit = self.hits = self.right = 0
        self.by_source = dict.fromkeys(SOURCES, 0)

    def add(self, source: str, expected: str | None, served: str | None, answerable: bool) -> None:
        self.n += 1
        self.must_hit += answerable
        self.by_source[source] = self.by_source.get(source, 0) + 1
        if source in ("exact", "semantic"):
            self.hits += 1
            self.right += expected is not None and served == expected

    def summary(self) -> dict[str, object]:
        return {"queries": self.n,
                "precision": round(self.right / self.hits, 4) if self.hits else None,
                "recall": round(self.right / self.must_hit, 4) if self.must_hit else None,
                "share": {s: round(c / self.n, 4) for s, c in self.by_source.items()} if self.n else {}}


def replay(warm_rows, stream, embedder, *, per_intent: bool, learn: bool, frozen: bool, quarters: int = 4):
    """Warm a fresh router, replay ``stream`` and tally each quarter; ``frozen``: lookups only."""
    intent_of = {normalise(q): i for q, i in warm_rows}  # a served question -> its intent
    present = {i for _, i in warm_rows}  # intents the cache can answer: a query of another must miss
    pairs = [(q, f"FAQ answer for {i}" if per_intent else f"FAQ answer {n}") for n, (q, i) in enumerate(warm_rows)]
    bounds = np.array_split(np.arange(len(stream)), quarters)
    tallies, total, sizes = [Tally() for _ in bounds], Tally(), []
    with FakeOllama([SMALL, LARGE]) as fake, tempfile.TemporaryDirectory(prefix="semroute-stream-") as tmp:
        tiers = {"small": Tier(SMALL, (fake.url,)), "large": Tier(LARGE, (fake.url,))}
        router = Router(tiers=tiers, data_dir=tmp, embedder=embedder)
        router.warm(pairs, batch_size=256)
        pipe = router.pipeline
        for part, tally in zip(bounds, tallies):
            for n in part:
                query, expected = stream[n]
                if frozen:  # the steps Router.ask runs before it would call a model
                    plan = pipe.plan(query, namespace=None, system=None, tier=None)
                    answer = pipe.exact(plan) or pipe.semantic(plan, pipe.embed(plan))
                    source = "miss" if answer is None else answer.source
                else:
                    answer = router.ask(query)
                    source = answer.source
                    if not answer.cached:
                        intent_of.setdefault(normalise(query), expected)
                    elif learn and source == "semantic":
                        router.warm([(query, answer.text)])
                        intent_of.setdefault(normalise(query), intent_of.get(normalise(answer.cached_question or "")))
                served = None if answer is None or not answer.cached else intent_of.get(normalise(answer.cached_question or ""))
                answerable = expected in present
                tally.add(source, expected, served, answerable)
                total.add(source, expected, served, answerable)
                if not frozen and not answer.cached and expected is not None:
                    present.add(expected)  # the model's answer was stored: later rewordings may hit it
            sizes.append(len(pipe.cache))
        router.close()
    return {"overall": total.summary(),
            "quarters": [{**t.summary(), "cache_entries": size} for t, size in zip(tallies, sizes)]}


def _line(label: str, s: dict) -> str:
    share = s["share"]
    p = "-" if s["precision"] is None else f"{s['precision']:.3f}"
    r = "-" if s["recall"] is None else f"{s['recall']:.3f}"
    hit = share.get("exact", 0) + share.get("semantic", 0)
    models = f"small {share.get('small', 0):.1%}  large {share.get('large', 0):.1%}" if "miss" not in share else \
        f"miss {share['miss']:.1%}"
    return f"  {label:<22} P {p}  R {r}  cache hits {hit:.1%}  {models}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", default="banking77,clinc150", help="comma-separated: banking77, clinc150")
    ap.add_argument("--warm-answers", choices=("unique", "per-intent"), default="unique")
    ap.add_argument("--learn-aliases", action="store_true", help="experiment: store each semantic hit's query too")
    ap.add_argument("--tuning", action="store_true",
                    help="stream the consensus's tuning sets (train/validation) instead of the test splits")
    ap.add_argument("--limit", type=int, default=None, help="replay only the first N queries of each stream")
    ap.add_argument("--seed", type=int, default=0, help="the stream order")
    ap.add_argument("--embedding-cache", default=None, help="an .npz of text embeddings reused across runs")
    ap.add_argument("--out", default="bench/results/cache_stream.json")
    args = ap.parse_args()
    embedder = _CachedEmbed(SentenceTransformerEmbedder(), Path(args.embedding_cache) if args.embedding_cache else None)
    results = {}
    for name, warm_rows, stream in stream_sets(args.sets.split(","), args.seed, args.tuning):
        stream = stream[: args.limit]
        embedder([q for q, _ in warm_rows] + [q for q, _ in stream])  # embed once; both replays reuse it
        t0 = time.perf_counter()
        runs = {"frozen warm-up cache": replay(warm_rows, stream, embedder, per_intent=args.warm_answers == "per-intent",
                                               learn=False, frozen=True),
                "storing misses" + (" + aliases" if args.learn_aliases else ""):
                    replay(warm_rows, stream, embedder, per_intent=args.warm_answers == "per-intent",
                           learn=args.learn_aliases, frozen=False)}
        print(f"{name}: {len(warm_rows)} warm-up entries ({args.warm_answers} answers), {len(stream)} queries "
              f"({sum(e is None for _, e in stream)} must miss), {time.perf_counter() - t0:.0f} s")
        for label, run in runs.items():
            print(_line(label, run["overall"]))
            for q, s in enumerate(run["quarters"], start=1):
                print(_line(f"  quarter {q} ({s['cache_entries']} entries)", s))
        results[name] = {"warm_entries": len(warm_rows), "queries": len(stream), **runs}
    embedder.save()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"warm_answers": args.warm_answers, "learn_aliases": args.learn_aliases,
                               "seed": args.seed, "sets": results}, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
