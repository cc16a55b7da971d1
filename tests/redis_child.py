"""A worker process for the Redis tests: a Router over Redis, driven by lines on stdin.

Commands (one per line, answers one JSON line each on stdout):
``ask <question>``            -> the answer as a dict
``burst <n> <question>``      -> n threads ask at once; the list of answers
``quit``                      -> exit
It prints ``ready`` once its router has synced with the shared store.
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading

import numpy as np

DIM = 64


class WordEmbedder:
    """Bag of hashed words: identical texts embed identically, one extra word stays close. No model."""

    name = "test-words"
    dim = DIM

    def embed(self, texts):
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().replace("?", " ").split():
                out[row, int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "big") % DIM] += 1.0
        out += 1e-3
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def make_router(redis_url: str, ollama_url: str, **kwargs):
    from semroute import FixedTier, Router, RouterSettings, ThresholdVerifier, Tier
    from semroute.settings import CacheSettings

    settings = RouterSettings(cache=CacheSettings(consensus=False))
    return Router(tiers={"small": Tier("llama3.2:3b", (ollama_url,))}, classifier=FixedTier("small"),
                  verifier=ThresholdVerifier(0.8), embedder=WordEmbedder(), redis_url=redis_url,
                  settings=settings, **kwargs)


def main() -> None:
    redis_url, ollama_url = sys.argv[1], sys.argv[2]
    router = make_router(redis_url, ollama_url)
    router.pipeline.prepare()
    router.pipeline.cache.sync()
    print("ready", flush=True)
    for line in sys.stdin:
        command, _, rest = line.strip().partition(" ")
        if command == "quit":
            break
        if command == "ask":
            print(json.dumps(router.ask(rest).as_dict()), flush=True)
        elif command == "burst":
            count, _, question = rest.partition(" ")
            results: list[dict] = []
            lock = threading.Lock()

            def one() -> None:
                answer = router.ask(question).as_dict()
                with lock:
                    results.append(answer)

            threads = [threading.Thread(target=one) for _ in range(int(count))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            print(json.dumps({"answers": results, "coalesced": router.metrics.count("requests.coalesced")}),
                  flush=True)
    router.close()


if __name__ == "__main__":
    main()
