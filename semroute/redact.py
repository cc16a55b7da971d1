"""Redaction: URLs and text that may contain URLs, with credentials replaced by ``***``.

An Ollama host may carry credentials (``http://user:password@host:11434``, a reverse proxy's
``?token=...``). Everything semroute shows — log lines, error messages (``SemrouteError`` and
``BackendError.instance``), ``Router.stats()``, metric names and Prometheus text — passes
through ``redact_text`` or ``redact_url``; the raw URL is used only to connect.

What is redacted: the userinfo of any ``scheme://user[:password]@host`` (the whole of it: a
user name alone can be a token), and the value of any query or ``name=value`` parameter whose
name looks like a credential (``key``, ``token``, ``secret``, ``password``, ``auth``,
``signature``, ``session``, ...; case-insensitive, anywhere in the name, so ``api_key`` and
``X-Amz-Signature`` count). What is not: host names, ports, paths and other parameters, which
operators need to tell instances apart. This module is pure text processing, no I/O.
"""

from __future__ import annotations

import re

__all__ = ["redact_url", "redact_text", "REDACTED"]

REDACTED = "***"

# A credential-like parameter name; matched anywhere in the name ("api_key", "access_token").
_SECRET_NAME = r"[A-Za-z0-9_.\-]*(?:key|token|secret|passw(?:or)?d|pwd|auth|signature|sig|session|credential|bearer)[A-Za-z0-9_.\-]*"
# ``name=value`` after a URL query/fragment separator or at a word boundary in free text.
_SECRET_PARAM = re.compile(rf"(?P<lead>(?:^|[?&;#\s,(\[{{\"']))(?P<name>{_SECRET_NAME})=(?P<value>[^&;#\s\"'<>,)\]}}]*)", re.I)
# ``scheme://userinfo@``: userinfo may hold anything but the delimiters of the authority.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/?#\s\"'<>]*)@")
# ``user:password@host`` without a scheme (a host as typed, echoed in an error message).
_BARE_USERINFO = re.compile(r"(?P<lead>^|[\s'\"(\[=])(?P<userinfo>[^\s'\"/@:]+:[^\s'\"/@]*)@(?=[A-Za-z0-9\[])")
# ``Authorization: Bearer abc`` / ``Basic abc`` as it appears in dumped headers.
_AUTH_HEADER = re.compile(r"(?P<lead>\b(?:bearer|basic)\s+)(?P<value>[A-Za-z0-9._~+/=\-]{8,})", re.I)


def redact_text(text: str) -> str:
    """``text`` with every URL's userinfo and every credential-like parameter value redacted."""
    if not isinstance(text, str):
        text = str(text)
    try:
        text = str.__str__(text)  # a str subclass's own methods never run here
    except Exception:  # noqa: BLE001 - unreachable for real str; belt and braces for odd subclasses
        return REDACTED
    if "@" in text:
        text = _USERINFO.sub(lambda m: f"{m['scheme']}{REDACTED}@", text)
        text = _BARE_USERINFO.sub(lambda m: f"{m['lead']}{REDACTED}@", text)
    if "=" in text:
        text = _SECRET_PARAM.sub(lambda m: f"{m['lead']}{m['name']}={REDACTED}", text)
    if " " in text:
        text = _AUTH_HEADER.sub(lambda m: f"{m['lead']}{REDACTED}", text)
    return text


def redact_url(url: str) -> str:
    """A URL as it may be shown: ``http://***@host:11434/?token=***`` keeps host, port and path."""
    return redact_text(url)
