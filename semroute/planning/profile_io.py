"""Plan profiles as plain data: a parsed TOML mapping in, value objects out; a server profile out
as TOML text (what ``semroute probe`` writes).

Every problem is a ``ConfigError`` naming the table and field (``traffic.hit_rate``,
``servers.small.slots``). Reading and writing files is the CLI's job; this module sees only
mappings and strings. The layout is documented in ``data/plans/seed.toml``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError
from .profile import PlanProfile, Prices, ServerProfile, Slo, TierTraffic, TokenDist, TrafficProfile

__all__ = ["profile_from_mapping", "server_from_mapping", "server_profile_toml", "probe_profile_toml"]

_TOP = {"name", "traffic", "servers", "slo", "prices", "fleet", "claims"}
_TRAFFIC = {"tiers", "hit_rate", "hit_latency_s", "miss_overhead_s", "arrival_rate", "users", "think_time_s"}
_SERVER = {"model", "tokens_per_s", "slots", "prompt_tokens_per_s", "ttft_s", "throughput_curve", "source"}
_PRICES = {"server_per_month", "api_input_per_1m", "api_output_per_1m", "hours_per_month"}


def _table(data: Mapping[str, Any], key: str, where: str, *, required: bool = True) -> Mapping[str, Any]:
    value = data.get(key)
    if value is None and not required:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}{key}: expected a table, got {type(value).__name__}")
    return value


def _only(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}; expected some of {', '.join(sorted(allowed))}")


def _build(where: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call a value object's constructor; name the table in its error, and turn type errors
    (a string where a number belongs) into ``ConfigError`` too."""
    try:
        return fn(*args, **kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def _tokens(raw: Any, where: str) -> TokenDist:
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return _build(where, TokenDist, raw)
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a number or {{mean = ..., cv = ...}}, got {raw!r}")
    _only(raw, {"mean", "cv"}, where)
    if "mean" not in raw:
        raise ConfigError(f"{where}.mean is required")
    return _build(where, TokenDist, raw["mean"], raw.get("cv", 0.0))


def _traffic(data: Mapping[str, Any]) -> TrafficProfile:
    raw = _table(data, "traffic", "")
    _only(raw, _TRAFFIC, "traffic")
    tiers = {}
    for name, spec in _table(raw, "tiers", "traffic.").items():
        where = f"traffic.tiers.{name}"
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{where}: expected a table")
        _only(spec, {"share", "prompt_tokens", "answer_tokens"}, where)
        for key in ("share", "answer_tokens"):
            if key not in spec:
                raise ConfigError(f"{where}.{key} is required")
        tiers[name] = _build(where, TierTraffic, spec["share"], _tokens(spec.get("prompt_tokens", 200), f"{where}.prompt_tokens"),
                             _tokens(spec["answer_tokens"], f"{where}.answer_tokens"))
    if "hit_rate" not in raw:
        raise ConfigError("traffic.hit_rate is required")
    fields = {k: raw[k] for k in _TRAFFIC - {"tiers"} if k in raw}
    return _build("traffic", TrafficProfile, tiers=tiers, **fields)


def server_from_mapping(raw: Any, where: str) -> ServerProfile:
    """One ``[servers.<tier>]`` table as a ``ServerProfile``."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a table")
    _only(raw, _SERVER, where)
    for key in ("model", "tokens_per_s"):
        if key not in raw:
            raise ConfigError(f"{where}.{key} is required")
    fields = dict(raw)
    if "throughput_curve" in fields:
        curve = fields["throughput_curve"]
        if not isinstance(curve, list):
            raise ConfigError(f"{where}.throughput_curve must be a list of numbers")
        fields["throughput_curve"] = tuple(curve)
    return _build(where, ServerProfile, **fields)


def profile_from_mapping(data: Mapping[str, Any], *, name: str = "plan") -> PlanProfile:
    """A ``PlanProfile`` from parsed TOML; ``ConfigError`` names the first bad field."""
    if not isinstance(data, Mapping):
        raise ConfigError("a plan profile must be a table")
    _only(data, _TOP, "profile")
    traffic = _traffic(data)
    servers = {t: server_from_mapping(s, f"servers.{t}") for t, s in _table(data, "servers", "").items()}
    slo_raw = _table(data, "slo", "")
    _only(slo_raw, {"p95_s", "overall_p95_s"}, "slo")
    slo = _build("slo", Slo, dict(_table(slo_raw, "p95_s", "slo.")), slo_raw.get("overall_p95_s"))
    prices_raw = _table(data, "prices", "")
    _only(prices_raw, _PRICES, "prices")
    prices = _build("prices", Prices, dict(_table(prices_raw, "server_per_month", "prices.")),
                    **{k: prices_raw[k] for k in _PRICES - {"server_per_month"} if k in prices_raw})
    fleet = dict(_table(data, "fleet", "", required=False))
    claims = dict(_table(data, "claims", "", required=False))
    return _build("profile", PlanProfile, traffic, servers, slo, prices, fleet, claims, str(data.get("name", name)))


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"cannot write {value!r} to TOML")
        return repr(round(value, 4)) if isinstance(value, float) else str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")
    return f'"{text}"'


def server_profile_toml(server: ServerProfile, tier: str) -> str:
    """The ``[servers.<tier>]`` table for ``server`` (``semroute probe``'s output)."""
    lines = [f"[servers.{tier}]"]
    for key in ("model", "tokens_per_s", "slots", "prompt_tokens_per_s", "ttft_s", "throughput_curve", "source"):
        lines.append(f"{key} = {_toml_value(getattr(server, key))}")
    return "\n".join(lines) + "\n"


def probe_profile_toml(server: ServerProfile, tier: str) -> str:
    """A complete one-tier plan profile around a probed ``server``: ``semroute plan --profile``
    runs it as it is; the traffic, SLO and price lines are placeholders to edit."""
    return f'''# Written by `semroute probe`. [servers.{tier}] is measured; everything else is a placeholder
# to replace with your own traffic and prices (or copy [servers.{tier}] into your profile).
name = "probed {server.model}"

[traffic]
users = 100
think_time_s = 60.0
hit_rate = 0.5
hit_latency_s = 0.05

[traffic.tiers.{tier}]
share = 0.5
prompt_tokens = {{ mean = 300, cv = 0.5 }}
answer_tokens = {{ mean = 200, cv = 0.5 }}

[slo.p95_s]
{tier} = 5.0

[prices]
api_input_per_1m = 0.15
api_output_per_1m = 0.60

[prices.server_per_month]
{tier} = 600.0

''' + server_profile_toml(server, tier)
