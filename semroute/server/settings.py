"""The gateway's settings: ``ServerSettings`` (listening, alias, limits) and ``ApiKey`` (tenants).

Value objects only: constructing them opens nothing and reads no file or environment (the CLI
reads the ``[server]`` table of a config file and the flags, then builds these). An ``ApiKey``
keeps the SHA-256 of its key, never the key, so settings can be printed or logged safely.

Kept next to the gateway rather than in ``semroute.settings``: they configure the HTTP shell,
and the library never reads them.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError, InvalidRequest
from ..request import validate_namespace

__all__ = ["ApiKey", "ServerSettings", "key_digest", "is_loopback", "server_settings_from_table"]

DEFAULT_PORT = 11435  # Ollama's own is 11434; the gateway usually runs beside it
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def key_digest(key: str) -> str:
    """The SHA-256 (hex) an ``ApiKey`` stores for ``key``."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _positive(name: str, value: object, *, integer: bool = False, optional: bool = False) -> None:
    if value is None and optional:
        return
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not (0 < value < math.inf):  # type: ignore[operator]
        raise ConfigError(f"{name} must be a positive {'integer' if integer else 'number'}, got {value!r}")


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One bearer key: its SHA-256, the namespace (tenant) its requests use, and its limits.

    ``name`` labels the key in logs and metrics (the key itself never appears). ``rate_per_s``
    and ``burst`` are a token bucket (None: unlimited); ``concurrency`` caps requests in flight.
    """

    sha256: str
    namespace: str
    name: str
    rate_per_s: float | None = None
    burst: int | None = None
    concurrency: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.sha256, str) or not _SHA256.match(self.sha256):
            raise ConfigError(f"key {self.name!r}: sha256 must be 64 lowercase hex digits")
        try:
            validate_namespace(self.namespace)
        except InvalidRequest as exc:
            raise ConfigError(f"key {self.name!r}: {exc}") from exc
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError("every API key needs a name (used in logs instead of the key)")
        _positive(f"key {self.name!r}: rate_per_s", self.rate_per_s, optional=True)
        _positive(f"key {self.name!r}: burst", self.burst, integer=True, optional=True)
        _positive(f"key {self.name!r}: concurrency", self.concurrency, integer=True, optional=True)

    @classmethod
    def from_table(cls, table: Mapping[str, Any], index: int) -> ApiKey:
        """From a ``[[server.keys]]`` row: ``key`` (plain) or ``key_sha256``, plus the other fields."""
        row = dict(table)
        unknown = sorted(set(row) - {"key", "key_sha256", "namespace", "name", "rate_per_s", "burst", "concurrency"})
        if unknown:
            raise ConfigError(f"[[server.keys]] row {index}: unknown field(s) {', '.join(unknown)}")
        plain, digest = row.pop("key", None), row.pop("key_sha256", None)
        if (plain is None) == (digest is None):
            raise ConfigError(f"[[server.keys]] row {index}: give exactly one of key and key_sha256")
        if plain is not None and (not isinstance(plain, str) or len(plain) < 16):
            raise ConfigError(f"[[server.keys]] row {index}: a key must be a string of at least 16 characters")
        sha = key_digest(plain) if plain is not None else str(digest).lower()
        row.setdefault("name", f"key{index}")
        if "namespace" not in row:
            raise ConfigError(f"[[server.keys]] row {index}: namespace is required")
        return cls(sha256=sha, **row)


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """How ``semroute serve`` listens and admits requests.

    ``alias`` is the model name answered by cache -> verifier -> classifier -> tiers; a request
    naming a tier's model goes to that tier (through the cache when ``cache_models``).
    ``keys`` empty means unauthenticated, which is refused off loopback unless
    ``allow_unauthenticated``. ``max_inflight`` bounds requests being answered at once (beyond
    it: ``Overloaded``, Ollama's 503 / OpenAI's 429 with ``Retry-After: retry_after_s``);
    ``drain_s`` is how long shutdown waits for them; ``keep_alive_s`` how long an idle client
    connection stays open (uvicorn's default, 5 s). ``threads`` sizes the worker threads that
    blocking steps run in (each waiting embedding holds one, so it bounds the batch size).
    ``embed_threads``: the threads the embedding model computes with in ``semroute serve``'s
    process (torch's, or the OpenMP/BLAS threads of ``E5Embedder`` / ``USEEmbedder``); None is
    the process's share of the cores (cores // workers). Lower it where the gateway shares its
    cores with busy processes (Ollama on CPU): spinning threads then wait on each other.
    """

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    alias: str = "semroute"
    keys: tuple[ApiKey, ...] = ()
    allow_unauthenticated: bool = False
    cache_models: bool = True
    max_body_bytes: int = 4 * 1024 * 1024
    max_inflight: int = 1024
    retry_after_s: int = 1
    drain_s: float = 30.0
    keep_alive_s: float = 5.0
    threads: int = 128
    embed_threads: int | None = None
    access_log: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.alias, str) or not self.alias.strip():
            raise ConfigError(f"alias must be a model name, got {self.alias!r}")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 <= self.port < 65536:
            raise ConfigError(f"port must be an int in [0, 65535], got {self.port!r}")
        for name in ("max_body_bytes", "max_inflight", "retry_after_s", "threads"):
            _positive(name, getattr(self, name), integer=True)
        _positive("embed_threads", self.embed_threads, integer=True, optional=True)
        _positive("drain_s", self.drain_s)
        _positive("keep_alive_s", self.keep_alive_s)
        keys = tuple(self.keys)
        if not all(isinstance(k, ApiKey) for k in keys):
            raise ConfigError("keys must be ApiKey objects")
        if len({k.sha256 for k in keys}) != len(keys):
            raise ConfigError("two API keys are the same key")
        object.__setattr__(self, "keys", keys)
        if not keys and not self.allow_unauthenticated and not is_loopback(self.host):
            raise ConfigError(
                f"refusing to serve {self.host} without API keys: add [[server.keys]] to the config, "
                "or pass --allow-unauthenticated if the network in front of it is trusted"
            )


_FIELDS = {"host", "port", "alias", "allow_unauthenticated", "cache_models", "max_body_bytes", "max_inflight",
           "retry_after_s", "drain_s", "keep_alive_s", "threads", "embed_threads", "access_log"}


def server_settings_from_table(table: Mapping[str, Any], **overrides: Any) -> ServerSettings:
    """``ServerSettings`` from a config file's ``[server]`` table; ``overrides`` (flags) win."""
    unknown = sorted(set(table) - _FIELDS - {"keys"})
    if unknown:
        raise ConfigError(f"unknown key(s) in [server]: {', '.join(unknown)}")
    rows = table.get("keys", [])
    if not isinstance(rows, list) or not all(isinstance(r, Mapping) for r in rows):
        raise ConfigError("[server] keys must be an array of tables ([[server.keys]])")
    values = {k: v for k, v in table.items() if k in _FIELDS}
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return ServerSettings(keys=tuple(ApiKey.from_table(r, i) for i, r in enumerate(rows)), **values)
    except TypeError as exc:
        raise ConfigError(f"[server]: {exc}") from exc
