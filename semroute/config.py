"""Reading a TOML configuration file into the Router's keyword arguments.

``Router.from_config(path)`` and the CLI's ``--config FILE`` use this; it is the only reader of
configuration files besides the CLI. Unknown keys are errors (a typo must not silently fall
back to a default). The README's "Configuration file (TOML)" section documents every key;
in short:

.. code-block:: toml

    namespace = "traffic"
    [embedder]              # model = multilingual-e5-small | use-multilingual-v3 | all-MiniLM-L6-v2 (shipped,
    model = "all-MiniLM-L6-v2"   # offline) or a sentence-transformers name/path; or ollama + host
    [cache]
    min_similarity = 0.8
    ttl_s = 604800
    [router]
    fallback = "other-tier"
    [redis]                 # optional: share cache, limits and in-flight misses between processes
    url = "redis://cache.internal:6379/0"
    [tiers.small]
    model = "llama3.2:3b"
    hosts = ["http://gpu1:11434", "http://gpu2:11434"]
    limit = 4
    [tiers.small.timeout]   # Timeout; [tiers.small.pool] PoolSettings with .retry/.queue/.breaker tables
    read = 120
    [server]                # semroute serve only (see semroute.server.settings)
    alias = "semroute"
    [[server.keys]]
    name = "team-a"
    key_sha256 = "..."      # or key = "..." (plain)
    namespace = "team-a"
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .settings import CacheSettings, JudgeSettings, RouterSettings, parse_tiers

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["load_config"]

# [server] configures `semroute serve` (semroute.server.settings); the Router ignores it.
_TOP = {"namespace", "data_dir", "embedder", "cache", "router", "tiers", "verifiers", "redis", "server"}


def load_config(path: str | Path, *, allow_strategy_import: bool = False) -> dict[str, Any]:
    """Keyword arguments for ``Router`` from a TOML file.

    A tier's ``strategy`` must be a built-in name (``semroute.backends.strategy``). A
    ``"package.module:Class"`` strategy imports (runs) that module, so a file may name one only
    when the caller opts in with ``allow_strategy_import=True``: a configuration file must not
    be able to run code by itself. Strategies are checked here, before anything is imported.
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such file") from exc
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: not valid UTF-8 TOML: {exc}") from exc
    _no_unknown(path, "top level", raw, _TOP)
    kwargs: dict[str, Any] = {}
    for key in ("namespace", "data_dir"):
        if key in raw:
            kwargs[key] = raw[key]
    try:
        cache_table = _table(path, raw, "cache")
        if "judge" in cache_table:  # a [cache.judge] table turns the grey-zone judge on
            cache_table["judge"] = JudgeSettings(**_table(path, cache_table, "judge"))
        cache = CacheSettings(**cache_table)
        kwargs["settings"] = RouterSettings(cache=cache, **_table(path, raw, "router"))
        if "tiers" in raw:
            kwargs["tiers"] = parse_tiers(_table(path, raw, "tiers"))
            _check_strategies(path, kwargs["tiers"], allow_import=allow_strategy_import)
    except TypeError as exc:  # an unknown field in a settings table
        raise ConfigError(f"{path}: {exc}") from exc
    if "embedder" in raw:
        kwargs["embedder"] = _embedder(path, _table(path, raw, "embedder"))
    if "verifiers" in raw:
        kwargs["verifier"] = _verifiers(path, _table(path, raw, "verifiers"))
    if "redis" in raw:
        redis = _table(path, raw, "redis")
        _no_unknown(path, "[redis]", redis, {"url"})
        if not isinstance(redis.get("url"), str) or not redis["url"]:
            raise ConfigError(f"{path}: [redis] needs url = \"redis://host:port/db\"")
        kwargs["redis_url"] = redis["url"]
    return kwargs


def _check_strategies(path: Path, tiers: Mapping[str, Any], *, allow_import: bool) -> None:
    from .backends.strategy import BUILTIN_STRATEGIES, resolve_strategy

    for name, tier in tiers.items():
        spec = tier.strategy
        if isinstance(spec, str) and spec in BUILTIN_STRATEGIES:
            continue
        if not isinstance(spec, str) or ":" not in spec:
            known = ", ".join(sorted(BUILTIN_STRATEGIES))
            raise ConfigError(f"{path}: [tiers.{name}] strategy {spec!r} is not one of {known}")
        if not allow_import:
            raise ConfigError(
                f"{path}: [tiers.{name}] strategy {spec!r} would import a module; only built-in names are "
                "allowed unless the caller passes allow_strategy_import=True"
            )
        resolve_strategy(spec)  # import now: a broken path fails at load, not at the first request


def _verifiers(path: Path, table: Mapping[str, Any]):
    """``namespace = "DIR"`` rows -> ``ByNamespace`` over calibrated verifiers; the rest use the shipped one."""
    from .errors import ModelError
    from .hits.verify import ByNamespace, PairVerifier

    loaded = {}
    for namespace, directory in table.items():
        if not isinstance(directory, str):
            raise ConfigError(f"{path}: [verifiers] {namespace} must be a directory path string")
        try:
            loaded[namespace] = PairVerifier.load(path.parent / directory)
        except ModelError as exc:
            raise ConfigError(f"{path}: [verifiers] {namespace}: {exc}") from exc
    return ByNamespace(loaded, default=PairVerifier.default())


def _table(path: Path, raw: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = raw.get(name, {})
    if not isinstance(value, Mapping):
        raise ConfigError(f"{path}: [{name}] must be a table")
    return dict(value)


def _no_unknown(path: Path, where: str, table: Mapping[str, Any], known: set[str]) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) at {where}: {', '.join(unknown)}")


def _embedder(path: Path, spec: dict[str, Any]):
    from .embed import OllamaEmbedder, SentenceTransformerEmbedder, make_embedder

    _no_unknown(path, "[embedder]", spec, {"model", "ollama", "host", "device"})
    if "ollama" in spec:
        if "host" not in spec:
            raise ConfigError(f"{path}: [embedder] ollama = ... needs host = ...")
        return OllamaEmbedder(str(spec["ollama"]), host=str(spec["host"]))
    model = None if spec.get("model") is None else str(spec["model"])
    if "device" in spec:  # a device only means something to sentence-transformers
        return SentenceTransformerEmbedder(model, device=str(spec["device"]))
    return make_embedder(model)
