"""CLI commands for capacity planning: ``plan`` (servers, latency and cost for N users, with the
profile's own claims checked) and ``probe`` (measure an Ollama server's profile).

Files are read and written here; the planning itself is ``semroute.planning``.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import click

from ..errors import ConfigError
from . import main, typed_errors

__all__ = ["plan_command", "probe_command", "load_profile"]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such file") from exc
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: not valid UTF-8 TOML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc


def load_profile(path: Path | None, servers: tuple[str, ...] = ()):
    """The plan profile at ``path`` (default: the shipped seed scenario), with ``TIER=FILE``
    overrides taking a tier's ``[servers.TIER]`` table from another file (``probe`` output)."""
    from ..planning import profile_from_mapping

    if path is None:
        from importlib.resources import files

        text = files("semroute.data").joinpath("plans/seed.toml").read_text(encoding="utf-8")
        data, where = tomllib.loads(text), "seed.toml"
    else:
        data, where = _read_toml(path), str(path)
    for spec in servers:
        tier, sep, file = spec.partition("=")
        if not sep or not tier or not file:
            raise ConfigError(f"--server takes TIER=FILE, got {spec!r}")
        table = _read_toml(Path(file)).get("servers", {})
        if not isinstance(table, dict) or not table:
            raise ConfigError(f"{file}: no [servers.*] table")
        data.setdefault("servers", {})[tier] = table.get(tier, next(iter(table.values())))
    try:
        return profile_from_mapping(data, name=Path(where).stem)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "inf" if not math.isfinite(value) else f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


def _print_table(result, checks) -> None:
    d = result.as_dict()
    click.echo(f"users {result.users or '-'}   questions/s {result.arrival_rate:.3f}")
    click.echo(f"{'tier':<8}{'servers':>8}{'util':>7}{'p50 s':>9}{'p95 s':>9}{'SLO s':>8}  ok")
    for tier, r in result.tiers.items():
        click.echo(f"{tier:<8}{r.servers:>8}{r.utilisation:>7.2f}{_fmt(r.p50_s):>9}{_fmt(r.p95_s):>9}"
                   f"{r.slo_p95_s:>8.2f}  {'yes' if r.meets_slo else 'NO'}")
    click.echo(f"{'overall':<8}{'':>8}{'':>7}{_fmt(result.p50_s):>9}{_fmt(result.p95_s):>9}")
    click.echo(f"cost/month ${d['cost_per_month']:,.2f}   per user ${_fmt(d['cost_per_user'])}   "
               f"per 1,000 questions ${_fmt(d['cost_per_1000_questions'])}")
    click.echo(f"API for the same questions ${d['api_cost_per_month']:,.2f}/month "
               f"(${d['api_cost_with_cache_per_month']:,.2f} for the misses only)")
    if checks:
        click.echo("")
        click.echo(f"{'claim':<20}{'claimed':>18}{'computed':>20}  verdict")
        for c in checks:
            verdict = "ok" if c.consistent else "unchecked" if c.consistent is None else "INCONSISTENT"
            click.echo(f"{c.claim:<20}{_fmt(c.claimed):>18}{_fmt(c.computed):>20}  {verdict}  {c.note}")


@main.command("plan")
@click.option("--profile", "profile_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Plan profile (TOML). Default: the seed's scenario (data/plans/seed.toml).")
@click.option("--users", type=click.IntRange(min=1), default=None, help="Plan for N concurrent users.")
@click.option("--server", "servers", multiple=True, metavar="TIER=FILE",
              help="Take TIER's server profile from FILE (semroute probe output). Repeatable.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write a PNG of p95 and monthly cost against users.")
@typed_errors
def plan_command(profile_path: Path | None, users: int | None, servers: tuple[str, ...], as_json: bool,
                 plot: Path | None) -> None:
    """Servers, p50/p95 latency, utilisation and cost for a profile; its claims checked."""
    from ..planning import check_claims, plan

    profile = load_profile(profile_path, servers)
    result = plan(profile, users=users)
    checks = check_claims(profile)
    if plot is not None:
        from ..planning.plot import plot_users

        plot_users(profile, plot)
    if as_json:
        out = {"profile": profile.name, **result.as_dict(),
               "inconsistencies": [c.as_dict() for c in checks if c.consistent is False],
               "claims": [c.as_dict() for c in checks]}
        click.echo(json.dumps(out, ensure_ascii=False))
        return
    click.echo(f"plan for {profile.name}")
    _print_table(result, checks)
    if plot is not None:
        click.echo(f"wrote {plot}")


@main.command("probe")
@click.argument("url")
@click.option("--model", required=True, help="The model to measure (it must be pulled on that server).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the profile here (TOML); default: print it.")
@click.option("--max-parallel", type=click.IntRange(1, 64), default=8, show_default=True,
              help="Measure 1, 2, 4, ... up to N concurrent requests (set OLLAMA_NUM_PARALLEL >= N).")
@click.option("--duration-s", type=click.FloatRange(min=0, min_open=True, max=3600), default=60.0,
              show_default=True, help="Time budget for the whole probe.")
@click.option("--num-predict", type=click.IntRange(min=2), default=128, show_default=True,
              help="Tokens each probe request generates.")
@click.option("--tier", default="small", show_default=True, help="Tier name the profile is written for.")
@typed_errors
def probe_command(url: str, model: str, out: Path | None, max_parallel: int, duration_s: float,
                  num_predict: int, tier: str) -> None:
    """Measure URL's server profile for MODEL (tokens/s against parallel requests, time to first
    token, prompt rate) with a short bounded load; write it as a plan profile."""
    from ..planning.probe import ProbeSettings, probe_server
    from ..planning.profile_io import probe_profile_toml

    settings = ProbeSettings(max_parallel=max_parallel, duration_s=duration_s, num_predict=num_predict)
    server, _ = probe_server(url, model, settings, progress=lambda msg: click.echo(msg, err=True))
    text = probe_profile_toml(server, tier)
    if out is None:
        click.echo(text, nl=False)
        return
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{out}: cannot write: {exc}") from exc
    click.echo(f"wrote {out}: {server.tokens_per_s:.1f} tokens/s single-stream, "
               f"x{server.throughput_curve[-1]:.2f} total at {server.slots} parallel")
