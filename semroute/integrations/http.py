"""The HTTP shape of ``ask`` shared by the Flask and Django glue: request body, errors, NDJSON.

A request body is a JSON object ``{"question": str, "namespace"?: str, "system"?: str,
"tier"?: str}``; anything else is an ``InvalidRequest`` with a message a client can act on.
Answers go out as ``Answer.as_dict()`` (``text``, ``source``, ``similarity``, ``tier``, ...);
a stream is NDJSON, one ``{"text", "done", "source", "model"}`` object per chunk, and an error
after the first chunk (the status line is already sent) becomes a last ``{"error": ...}`` line.
``status_for`` maps semroute's typed errors to HTTP statuses. No web framework is imported here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

from ..errors import BackendError, InvalidRequest, NoInstanceAvailable, Overloaded, SemrouteError
from ..types import Chunk

__all__ = ["AskRequest", "parse_ask", "status_for", "error_body", "ndjson_lines"]

_OPTIONAL = ("namespace", "system", "tier")


@dataclass(frozen=True, slots=True)
class AskRequest:
    """One parsed ``POST /ask`` body; pass as ``router.ask(r.question, **r.options())``."""

    question: str
    namespace: str | None = None
    system: str | None = None
    tier: str | None = None

    def options(self) -> dict[str, str | None]:
        return {"namespace": self.namespace, "system": self.system, "tier": self.tier}


def parse_ask(body: bytes | str) -> AskRequest:
    """Parse a request body; malformed JSON, a non-object or a missing question raise ``InvalidRequest``."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"the request body is not valid JSON ({exc}); send {{\"question\": \"...\"}}") from exc
    if not isinstance(data, dict):
        raise InvalidRequest(f"the request body must be a JSON object like {{\"question\": \"...\"}}, got {type(data).__name__}")
    unknown = sorted(set(data) - {"question", *_OPTIONAL})
    if unknown:
        raise InvalidRequest(f"unknown field(s) {', '.join(unknown)}; known: question, {', '.join(_OPTIONAL)}")
    question = data.get("question")
    if not isinstance(question, str):
        raise InvalidRequest("the request body needs a \"question\" string")
    for name in _OPTIONAL:
        if data.get(name) is not None and not isinstance(data[name], str):
            raise InvalidRequest(f"\"{name}\" must be a string, got {type(data[name]).__name__}")
    return AskRequest(question, **{name: data.get(name) for name in _OPTIONAL})


def status_for(exc: SemrouteError) -> int:
    """400 for the client's mistakes, 503 when overloaded or no instance is up, 502 for a bad backend."""
    if isinstance(exc, InvalidRequest):
        return 400
    if isinstance(exc, Overloaded | NoInstanceAvailable):
        return 503
    if isinstance(exc, BackendError):
        return 502
    return 500


def error_body(exc: SemrouteError) -> dict[str, str]:
    """``{"error": type, "message": text}`` for a JSON error response."""
    return {"error": type(exc).__name__, "message": str(exc)}


def ndjson_lines(first: Chunk, rest: Iterator[Chunk]) -> Iterator[str]:
    """NDJSON lines for a stream whose first chunk was already pulled (so errors before it got a status)."""
    yield _line(first)
    try:
        for chunk in rest:
            yield _line(chunk)
    except SemrouteError as exc:  # the status line is sent: report in-band, never retry (text was shown)
        yield json.dumps(error_body(exc)) + "\n"


def _line(chunk: Chunk) -> str:
    return json.dumps({"text": chunk.text, "done": chunk.done, "source": chunk.source, "model": chunk.model}) + "\n"
