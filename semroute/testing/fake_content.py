"""Deterministic content for ``FakeOllama``: answers, token streams, embeddings, model listings.

Pure functions without I/O: the same model and prompt always give the same answer, so tests can
assert exact text (``answer_text``). This is not a language model and not a tokenizer: a "token"
is a word (with its leading space), and an embedding is a hashed bag of words, so texts that
share words are close in cosine similarity and unrelated texts are nearly orthogonal.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone

__all__ = [
    "canonical_model",
    "answer_tokens",
    "answer_text",
    "last_user_message",
    "count_prompt_tokens",
    "embed_vector",
    "tag_entry",
    "ps_entry",
    "now_iso",
]

# Filler words appended after the echo of the question; chosen by a hash of model + prompt.
_VOCAB = (
    "accordingly",
    "because",
    "consider",
    "data",
    "example",
    "first",
    "generally",
    "however",
    "indeed",
    "justly",
    "key",
    "likewise",
    "meanwhile",
    "notably",
    "often",
    "precisely",
    "quickly",
    "result",
    "second",
    "therefore",
    "usually",
    "various",
    "whereas",
    "yet",
)
_WORD = re.compile(r"\w+", re.UNICODE)
_MODIFIED_AT = "2024-09-25T10:00:00Z"  # fixed so /api/tags is byte-for-byte deterministic


def canonical_model(name: str) -> str:
    """Ollama's model naming: a name without a tag means ``:latest``."""
    name = name.strip()
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def answer_tokens(model: str, prompt: str, extra_words: int = 8) -> list[str]:
    """The streamed pieces of the answer: ``[model] answer to: <prompt>`` plus filler words.

    Whitespace in the prompt is collapsed to single spaces (the answer is split into words).
    """
    digest = hashlib.sha256(f"{model}\0{prompt}".encode()).digest()
    words = f"[{model}] answer to: {prompt}".split()
    words += [_VOCAB[(digest[i % len(digest)] + i) % len(_VOCAB)] for i in range(extra_words)]
    return [w if i == 0 else f" {w}" for i, w in enumerate(words)]


def answer_text(model: str, prompt: str, extra_words: int = 8) -> str:
    """The full answer ``FakeOllama`` gives for ``prompt`` (the last user message) on ``model``."""
    return "".join(answer_tokens(model, prompt, extra_words))


def last_user_message(messages: Sequence[Mapping[str, object]]) -> str:
    """The content of the last ``user`` message ("" when there is none)."""
    for message in reversed(messages):
        if message.get("role") == "user":
            return str(message.get("content") or "")
    return ""


def count_prompt_tokens(texts: Sequence[str]) -> int:
    """A stand-in for prompt token counts: words, at least one (Ollama counts the template too)."""
    return max(1, sum(len(t.split()) for t in texts))


def embed_vector(model: str, text: str, dim: int) -> list[float]:
    """An L2-normalised hashed bag of words; deterministic per model and text."""
    vector = [0.0] * dim
    for word in _WORD.findall(text.casefold()) or [""]:
        digest = hashlib.blake2b(f"{model}\0{word}".encode(), digest_size=16).digest()
        # Each word touches four coordinates so that shared words dominate the similarity.
        for j in range(4):
            index = int.from_bytes(digest[4 * j : 4 * j + 3], "little") % dim
            vector[index] += 1.0 if digest[4 * j + 3] & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vector))
    if norm == 0.0:  # every contribution cancelled out: any fixed unit vector will do
        vector[0], norm = 1.0, 1.0
    return [v / norm for v in vector]


def _details(model: str) -> dict[str, object]:
    family = model.split(":", 1)[0].split("/")[-1].rstrip("0123456789.") or "llama"
    tag = model.split(":", 1)[1]
    size = tag.upper() if tag[:1].isdigit() else "3B"
    return {
        "parent_model": "",
        "format": "gguf",
        "family": family,
        "families": [family],
        "parameter_size": size,
        "quantization_level": "Q4_K_M",
    }


def _size(model: str) -> int:
    return 1_000_000_000 + int.from_bytes(hashlib.sha256(model.encode()).digest()[:3], "little") * 1000


def tag_entry(model: str) -> dict[str, object]:
    """One ``/api/tags`` entry, shaped like Ollama's."""
    return {
        "name": model,
        "model": model,
        "modified_at": _MODIFIED_AT,
        "size": _size(model),
        "digest": hashlib.sha256(model.encode()).hexdigest(),
        "details": _details(model),
    }


def ps_entry(model: str, expires_at: float) -> dict[str, object]:
    """One ``/api/ps`` entry (a model loaded in memory until the epoch time ``expires_at``)."""
    expires = datetime.fromtimestamp(expires_at, tz=timezone.utc)
    return {
        "name": model,
        "model": model,
        "size": _size(model),
        "digest": hashlib.sha256(model.encode()).hexdigest(),
        "details": _details(model),
        "expires_at": expires.isoformat().replace("+00:00", "Z"),
        "size_vram": _size(model),
        "context_length": 4096,
    }


def now_iso(offset_s: float = 0.0) -> str:
    """UTC time in Ollama's ``created_at`` format."""
    moment = datetime.now(timezone.utc) + timedelta(seconds=offset_s)
    return moment.isoformat().replace("+00:00", "Z")
