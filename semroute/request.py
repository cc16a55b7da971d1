"""Request validation, normalisation and cache keys: pure functions, no I/O.

Validation runs before anything is read or written, so bad input changes nothing; a valid
text comes back as a plain ``str`` (a subclass's own methods never run past validation).
The exact-tier key hashes namespace, policy fingerprint, the normalisation version and the
normalised text; the scope (namespace + policy) is the filter every index search uses, so
namespaces never mix.

The exact tier serves without the verifier, so ``normalise`` removes only what never
carries meaning (see its docstring); everything else is left to the semantic tier.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata

from .errors import InvalidRequest

__all__ = ["ROLES", "NORMALISATION_VERSION", "validate_chat", "validate_options", "validate_texts", "validate_question", "validate_namespace", "normalise", "policy_fingerprint", "scope_of", "exact_key"]

_SPACES = re.compile(r"\s+")
# Trailing sentence ends that never change a question: "?" and "." (and their CJK forms).
# Not "!": after a digit it is a factorial ("What is 5!" is not "What is 5?").
_TRAILING_PUNCT = re.compile(r"[\s?.。？．]+\Z")
_LONE_I = re.compile(r"(?<!\w)I(?!\w)")
# English words that begin a question with a capital I ("Is it ...", "In which ...", "If I ...");
# read with Turkish's dotless ı ("ıs", "ın", "ıf", "ıt") none of them is a Turkish word.
_ENGLISH_I_WORD = re.compile(r"(?<!\w)I(?=(?:s|sn['’]t|n|nto|nside|f|t|t['’]s|ts)(?!\w))")
_NAMESPACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
# Part of every exact key: a change to ``normalise`` must not let an old key match a new text.
# 1: NFKC + casefold + any trailing ?!. (merged "5!"/"5?", "x²"/"x2", "Maße"/"Masse").
# 2: NFC + lower-case except "I" inside a word + trailing "?"/"." only.
NORMALISATION_VERSION = 2


def validate_question(question: object, *, max_chars: int) -> str:
    """Return the question unchanged if it is usable, else raise ``InvalidRequest``."""
    if question is None:
        raise InvalidRequest("question is None; pass a non-empty string")
    if not isinstance(question, str):
        raise InvalidRequest(f"question must be str, got {type(question).__name__}")
    question = str.__str__(question)  # a plain str: a subclass's strip/encode/format never run
    if not question.strip():
        raise InvalidRequest("question is empty or whitespace only")
    if len(question) > max_chars:
        raise InvalidRequest(f"question has {len(question)} characters; the maximum is {max_chars}")
    try:
        question.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRequest("question contains a lone UTF-16 surrogate (invalid Unicode text)") from exc
    return question


ROLES = frozenset({"system", "user", "assistant", "tool"})


def _encodable(text: str, what: str) -> None:
    try:
        str.__str__(text).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRequest(f"{what} contains a lone UTF-16 surrogate (invalid Unicode text)") from exc


def validate_chat(model: object, messages: object) -> str:
    """A backend call's model name and messages, checked before any I/O.

    Every message must be a ``Message`` whose role is one of ``ROLES`` and whose content is
    text that UTF-8 can encode. A malformed request is the caller's fault: it raises
    ``InvalidRequest`` here, is never sent, and never counts against an instance. Returns the
    model name as a plain ``str``.
    """
    from collections.abc import Sequence

    from .types import Message

    if not isinstance(model, str) or not str.__str__(model).strip():
        raise InvalidRequest(f"model must be a non-empty string, got {model!r}")
    _encodable(model, "model name")
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence) or not messages:
        raise InvalidRequest("messages must be a non-empty sequence of Message")
    for i, m in enumerate(messages):
        if not isinstance(m, Message):
            raise InvalidRequest(f"message {i} must be a semroute.types.Message, got {type(m).__name__}")
        if not isinstance(m.role, str) or str.__str__(m.role) not in ROLES:
            raise InvalidRequest(f"message {i} has role {m.role!r}; roles are {sorted(ROLES)}")
        if not isinstance(m.content, str):
            raise InvalidRequest(f"message {i} content must be str, got {type(m.content).__name__}")
        _encodable(m.content, f"message {i}")
    return str.__str__(model)  # type: ignore[arg-type]


def validate_texts(texts: object) -> list[str]:
    """An embedder's input: a sequence of encodable ``str`` (returned as plain ``str``s)."""
    from collections.abc import Sequence

    if isinstance(texts, (str, bytes)) or not isinstance(texts, Sequence):
        raise InvalidRequest(f"texts must be a sequence of str, got {type(texts).__name__}")
    out = []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidRequest(f"text {i} must be a str, got {type(text).__name__}")
        _encodable(text, f"text {i}")
        out.append(str.__str__(text))
    return out


def validate_options(options: object) -> dict | None:
    """Ollama model options (``{"temperature": 0}``): a mapping of names to JSON values, or None."""
    from collections.abc import Mapping

    if options is None:
        return None
    if not isinstance(options, Mapping) or not all(isinstance(k, str) for k in options):
        raise InvalidRequest(f"options must be a mapping of option names to values, got {type(options).__name__}")
    try:
        return json.loads(json.dumps(dict(options), allow_nan=False))
    except (TypeError, ValueError) as exc:  # not JSON, NaN, or unencodable text
        raise InvalidRequest(f"options must hold JSON values only: {exc}") from exc


def validate_namespace(namespace: object) -> str:
    # fullmatch: "$" would accept a trailing newline ("tenant-a\n").
    if not isinstance(namespace, str) or not _NAMESPACE.fullmatch(str.__str__(namespace)):
        raise InvalidRequest(
            f"namespace must be 1-128 characters of letters, digits, '_', '.', ':' or '-', got {namespace!r}"
        )
    return str.__str__(namespace)


def normalise(question: str) -> str:
    """Canonical text for the exact tier: only what never carries meaning is removed.

    * Unicode NFC (canonical composition: a precomposed "é" equals "e" + combining accent).
      Not NFKC, which turns "x²" into "x2", "2³" into "23" and "½" into "1/2".
    * Whitespace runs become one space; leading and trailing whitespace is dropped.
    * Lower case with ``str.lower`` (not ``casefold``, which turns "Maße" into "masse"),
      except the dotted/dotless i: "İ" becomes "i" (its lower case in every language), but
      "I" inside a word is kept as it is, because it is the capital of "i" in English and of
      "ı" in Turkish ("KIR" is "kır", countryside, not "kir", dirt). "I" standing alone as a
      word (the English pronoun, a Roman one) becomes "i": no Turkish word is a lone "ı"; so
      does the capital of a few English words that start questions ("Is", "Isn't", "In",
      "Into", "Inside", "If", "It", "It's", "Its"): no Turkish word reads "ıs", "ın", "ıf" or
      "ıt". Other English words with a capital "I" ("Ireland", all capitals) therefore miss the
      exact tier against lower case; the semantic tier (with its verifier) still finds them.
    * Trailing "?" and "." (and "。", "？", "．") are dropped: "What is 5?" == "What is 5".
      "!" is kept ("What is 5!" asks for a factorial), as is every other character.

    Changing this changes exact keys (``NORMALISATION_VERSION`` is part of them): entries
    cached under an older rule are no longer exact hits, but still semantic candidates. A change
    that only joins keys (two spellings of one question now share the key the second always
    had, as the English capital-I words did) keeps the version: no stored key comes to mean
    something else, so the entries of every other text stay exact hits.
    """
    text = unicodedata.normalize("NFC", question).replace("\u0130", "i")
    text = "I".join(part.lower() for part in _ENGLISH_I_WORD.sub("i", _LONE_I.sub("i", text)).split("I"))
    text = _SPACES.sub(" ", text).strip()
    return _TRAILING_PUNCT.sub("", text) or text


def policy_fingerprint(*, models: dict[str, str], system: str | None, embedder: str) -> str:
    """What must match for a cached answer to be reusable: tier models, system prompt, embedder."""
    blob = json.dumps({"models": models, "system": system or "", "embedder": embedder}, sort_keys=True)
    return hashlib.blake2b(blob.encode(), digest_size=8).hexdigest()


def scope_of(namespace: str, policy: str) -> str:
    return f"{namespace}|{policy}"


def exact_key(scope: str, normalised: str) -> str:
    blob = "\x00".join((scope, f"n{NORMALISATION_VERSION}", normalised))
    return hashlib.blake2b(blob.encode("utf-8"), digest_size=16).hexdigest()
