"""Request validation, normalisation and cache keys: pure functions, no I/O.

Validation runs before anything is read or written, so bad input changes nothing.
The exact-tier key hashes namespace, policy fingerprint and normalised text; the scope
(namespace + policy) is the filter every index search uses, so namespaces never mix.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata

from .errors import InvalidRequest

__all__ = ["validate_chat", "validate_question", "validate_namespace", "normalise", "policy_fingerprint", "scope_of", "exact_key"]

_SPACES = re.compile(r"\s+")
_TRAILING_PUNCT = re.compile(r"[\s?!.。？！]+$")
_NAMESPACE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


def validate_question(question: object, *, max_chars: int) -> str:
    """Return the question unchanged if it is usable, else raise ``InvalidRequest``."""
    if question is None:
        raise InvalidRequest("question is None; pass a non-empty string")
    if not isinstance(question, str):
        raise InvalidRequest(f"question must be str, got {type(question).__name__}")
    if not question.strip():
        raise InvalidRequest("question is empty or whitespace only")
    if len(question) > max_chars:
        raise InvalidRequest(f"question has {len(question)} characters; the maximum is {max_chars}")
    try:
        question.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRequest("question contains a lone UTF-16 surrogate (invalid Unicode text)") from exc
    return question


def validate_chat(model: object, messages: object) -> None:
    """A backend call's model name and messages, checked before any I/O."""
    from collections.abc import Sequence

    from .types import Message

    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest(f"model must be a non-empty string, got {model!r}")
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence) or not messages:
        raise InvalidRequest("messages must be a non-empty sequence of Message")
    if not all(isinstance(m, Message) for m in messages):
        raise InvalidRequest("every message must be a semroute.types.Message")


def validate_namespace(namespace: object) -> str:
    if not isinstance(namespace, str) or not _NAMESPACE.match(namespace):
        raise InvalidRequest(
            f"namespace must be 1-128 characters of letters, digits, '_', '.', ':' or '-', got {namespace!r}"
        )
    return namespace


def normalise(question: str) -> str:
    """Canonical text for the exact tier: NFKC, case-folded, single spaces, no trailing punctuation."""
    # casefold maps Turkish "İ" to "i" + U+0307 (combining dot); drop the dot so "ŞEHİR" == "şehir".
    text = unicodedata.normalize("NFKC", question).casefold().replace("\u0307", "")
    text = _SPACES.sub(" ", text).strip()
    return _TRAILING_PUNCT.sub("", text) or text


def policy_fingerprint(*, models: dict[str, str], system: str | None, embedder: str) -> str:
    """What must match for a cached answer to be reusable: tier models, system prompt, embedder."""
    blob = json.dumps({"models": models, "system": system or "", "embedder": embedder}, sort_keys=True)
    return hashlib.blake2b(blob.encode(), digest_size=8).hexdigest()


def scope_of(namespace: str, policy: str) -> str:
    return f"{namespace}|{policy}"


def exact_key(scope: str, normalised: str) -> str:
    return hashlib.blake2b(f"{scope}\x00{normalised}".encode(), digest_size=16).hexdigest()
