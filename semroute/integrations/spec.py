"""``RouterSpec``: a web app's semroute settings (Flask ``app.config``, Django ``settings.SEMROUTE``).

A spec is plain, validated data read from the framework's configuration: a TOML file for the
Router (``config``), the data directory, the Ollama URLs every tier uses, the default namespace
and ``options`` (extra ``Router`` keyword arguments, e.g. ``classifier=FixedTier("small")``).
It is not the Router: ``router_kwargs()`` turns it into keyword arguments when the Router is
built (lazily, per process; see ``semroute.integrations.per_process``). Unknown keys are errors,
so a typo never falls back to a default silently.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError

__all__ = ["RouterSpec"]

# The spec's fields and the key each framework spells them with.
_FIELDS = ("config", "data_dir", "ollama_urls", "namespace", "options")
FLASK_KEYS = {f"SEMROUTE_{name.upper()}": name for name in _FIELDS}
DJANGO_KEYS = {name.upper(): name for name in _FIELDS}


@dataclass(frozen=True)
class RouterSpec:
    """What to build a web app's Router from; every field is optional."""

    config: Path | None = None
    data_dir: Path | None = None
    ollama_urls: tuple[str, ...] = ()
    namespace: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("config", "data_dir"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                if not isinstance(value, str) or not value.strip():
                    raise ConfigError(f"semroute {name} must be a path, got {value!r}")
                object.__setattr__(self, name, Path(value))
        object.__setattr__(self, "ollama_urls", _urls(self.ollama_urls))
        if self.namespace is not None and (not isinstance(self.namespace, str) or not self.namespace.strip()):
            raise ConfigError(f"semroute namespace must be a non-empty string, got {self.namespace!r}")
        if not isinstance(self.options, Mapping) or not all(isinstance(k, str) for k in self.options):
            raise ConfigError(f"semroute options must be a mapping of Router keyword arguments, got {self.options!r}")

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], keys: Mapping[str, str], *, where: str) -> RouterSpec:
        """A spec from ``raw``'s entries named in ``keys`` (framework key -> field); ``where`` names
        the source in errors. Other keys of ``raw`` are ignored here (callers reject typos)."""
        values = {fieldname: raw[key] for key, fieldname in keys.items() if raw.get(key) is not None}
        try:
            return cls(**values)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from exc

    @classmethod
    def from_flask(cls, app_config: Mapping[str, Any]) -> RouterSpec:
        """``SEMROUTE_CONFIG``, ``SEMROUTE_DATA_DIR``, ``SEMROUTE_OLLAMA_URLS``, ``SEMROUTE_NAMESPACE``,
        ``SEMROUTE_OPTIONS`` of a Flask ``app.config``; any other ``SEMROUTE_*`` key is an error."""
        unknown = sorted(k for k in app_config if k.startswith("SEMROUTE_") and k not in FLASK_KEYS)
        if unknown:
            raise ConfigError(f"app.config: unknown key(s) {', '.join(unknown)}; known: {', '.join(FLASK_KEYS)}")
        return cls.from_mapping(app_config, FLASK_KEYS, where="app.config")

    @classmethod
    def from_django(cls, setting: object) -> RouterSpec:
        """The ``SEMROUTE = {"CONFIG": ..., "DATA_DIR": ..., "OLLAMA_URLS": [...], "NAMESPACE": ...,
        "OPTIONS": {...}}`` dict of Django settings (missing: all defaults)."""
        if setting is None:
            return cls()
        if not isinstance(setting, Mapping):
            raise ConfigError(f"settings.SEMROUTE must be a dict, got {type(setting).__name__}")
        unknown = sorted(str(k) for k in setting if k not in DJANGO_KEYS)
        if unknown:
            raise ConfigError(f"settings.SEMROUTE: unknown key(s) {', '.join(unknown)}; known: {', '.join(DJANGO_KEYS)}")
        return cls.from_mapping(setting, DJANGO_KEYS, where="settings.SEMROUTE")

    def router_kwargs(self) -> dict[str, Any]:
        """``Router`` keyword arguments: the TOML file's, then this spec's fields, then ``options``."""
        from ..config import load_config
        from ..settings import default_tiers

        kwargs: dict[str, Any] = load_config(self.config) if self.config is not None else {}
        if self.data_dir is not None:
            kwargs["data_dir"] = self.data_dir
        if self.namespace is not None:
            kwargs["namespace"] = self.namespace
        if self.ollama_urls:  # every tier is served by these hosts (the tiers' models stay)
            tiers = kwargs.get("tiers") or default_tiers(self.ollama_urls[0])
            kwargs["tiers"] = {name: dataclasses.replace(t, hosts=self.ollama_urls) for name, t in tiers.items()}
        kwargs.update(self.options)
        return kwargs


def _urls(raw: object) -> tuple[str, ...]:
    """A list of URLs, or one string of them separated by commas or spaces (an environment variable)."""
    if isinstance(raw, str):
        raw = raw.replace(",", " ").split()
    if not isinstance(raw, list | tuple) or not all(isinstance(u, str) and "://" in u for u in raw):
        raise ConfigError(f"semroute ollama_urls must be http(s) URLs, got {raw!r}")
    return tuple(u.strip() for u in raw)
