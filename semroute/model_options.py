"""Model options: a tier's default generation options and how a request's own options override them.

A tier may carry defaults in Ollama's option names (``Tier(model, hosts, options={"num_predict":
256, "temperature": 0.2})``): the capacity plan has the small model answer short and the large
one longer. Every miss path passes them to the tier's pool (``Router.ask/aask/stream/astream``
and the gateway); a request's own options (Ollama ``options``, OpenAI ``max_tokens``, ...) win
key by key (``merge_options``). The OpenAI-compatible backend maps the names it knows.

Tier defaults come from configuration, so they are checked strictly here (``check_options``):
an unknown name or a value of the wrong type is a ``ConfigError`` naming the key (a typo must not
silently generate 128 tokens instead of 1,024). Request options keep the looser check of
``semroute.request.validate_options`` (JSON values): Ollama itself judges them.

Not here: which tier answers (routing), or sending the options (backends).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from .errors import ConfigError

__all__ = ["OPTION_TYPES", "check_options", "merge_options"]

_INT, _FLOAT, _BOOL, _STOP = "an int", "a number", "a bool", "a list of strings"

# Ollama's model options (``ollama.Options``, the names its server reads from ``options``).
OPTION_TYPES: Mapping[str, str] = MappingProxyType({
    **dict.fromkeys(("num_ctx", "num_batch", "num_gpu", "main_gpu", "num_thread", "num_keep", "seed",
                     "num_predict", "top_k", "repeat_last_n", "mirostat"), _INT),
    **dict.fromkeys(("top_p", "min_p", "tfs_z", "typical_p", "temperature", "repeat_penalty", "presence_penalty",
                     "frequency_penalty", "mirostat_tau", "mirostat_eta"), _FLOAT),
    **dict.fromkeys(("numa", "low_vram", "f16_kv", "logits_all", "vocab_only", "use_mmap", "use_mlock",
                     "embedding_only", "penalize_newline"), _BOOL),
    "stop": _STOP,
})


def _fits(kind: str, value: object) -> bool:
    if kind == _BOOL:
        return isinstance(value, bool)
    if isinstance(value, bool):  # True is an int to Python, never a number of tokens
        return False
    if kind == _INT:
        return isinstance(value, int)
    if kind == _FLOAT:
        return isinstance(value, int | float) and value == value and abs(value) != float("inf")
    return isinstance(value, list | tuple) and all(isinstance(s, str) for s in value)


def check_options(options: object, where: str) -> Mapping[str, Any] | None:
    """``options`` as a read-only mapping (None when empty), or ``ConfigError`` naming the bad key.

    ``where`` says whose options they are (``"tier 'llama3.2:3b'"``) in the error.
    """
    if options is None:
        return None
    if not isinstance(options, Mapping):
        raise ConfigError(f"{where}: options must be a table of Ollama option names to values, got {options!r}")
    checked: dict[str, Any] = {}
    for key, value in options.items():
        kind = OPTION_TYPES.get(key) if isinstance(key, str) else None
        if kind is None:
            raise ConfigError(f"{where}: unknown model option {key!r}; known: {', '.join(sorted(OPTION_TYPES))}")
        if not _fits(kind, value):
            raise ConfigError(f"{where}: model option {key!r} must be {kind}, got {value!r}")
        checked[key] = tuple(value) if kind == _STOP else value
    return MappingProxyType(checked) if checked else None


def merge_options(defaults: Mapping[str, Any] | None, request: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The tier's defaults with the request's own options on top, key by key (None: neither has any)."""
    if not defaults:
        return request
    if not request:
        return defaults
    return {**defaults, **request}
