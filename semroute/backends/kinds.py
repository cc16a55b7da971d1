"""Which kind of backend an instance URL names: ``backend_for(url)``.

A tier's hosts may mix kinds. A plain ``http(s)://`` URL (or ``ollama+http(s)://``) is an Ollama
server; ``openai+http(s)://host:port`` is an OpenAI-compatible server (vLLM, llama.cpp's server,
TGI), reached at ``/v1``. The prefix is part of the instance's name, so a pool can hold the same
address twice under both kinds. Not here: how either kind talks (``ollama``, ``openai``).
"""

from __future__ import annotations

from ..settings import Timeout
from .base import Backend

__all__ = ["backend_for", "KINDS"]

KINDS = ("ollama", "openai")


def backend_for(url: str, *, timeout: Timeout = Timeout()) -> Backend:
    """The backend for one instance URL, by its scheme prefix (none: Ollama); a ``BackendFactory``."""
    kind, sep, rest = url.partition("+") if isinstance(url, str) and "+" in url.split("://", 1)[0] else ("", "", url)
    if kind == "openai":
        from .openai import OpenAIBackend

        return OpenAIBackend(rest, name=url, timeout=timeout)
    from ..errors import ConfigError
    from .ollama import OllamaBackend

    if kind not in ("", "ollama"):
        raise ConfigError(f"unknown backend kind {kind!r} in {url!r}; use one of {', '.join(KINDS)}")
    return OllamaBackend(rest, timeout=timeout)
