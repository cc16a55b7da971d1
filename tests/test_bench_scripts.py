"""The benchmark scripts still name what the package has.

``bench/`` is not run in CI (its runs take minutes to hours and some need the ``bench`` extra), so
an API move can leave a script that no longer starts (``bench/lookup_split.py`` imported
``semroute.cache.semantic`` for two sessions after it moved). Every ``from semroute... import``
and ``import semroute...`` in ``bench/`` and ``examples/`` must resolve; third-party imports are
not checked here.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted([*ROOT.glob("bench/**/*.py"), *ROOT.glob("examples/**/*.py")])


def _semroute_imports(path: Path) -> list[tuple[int, str, str | None]]:
    """(line, module, name or None) of every import of semroute in ``path``, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "semroute":
            found.extend((node.lineno, node.module, alias.name) for alias in node.names)
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name, None) for alias in node.names if alias.name.split(".")[0] == "semroute")
    return found


def test_there_are_scripts_to_check():
    assert len(SCRIPTS) > 20


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_semroute_import_resolves(path):
    missing = []
    for line, module, name in _semroute_imports(path):
        try:
            mod = importlib.import_module(module)
        except ImportError as exc:
            missing.append(f"{path.name}:{line}: {module} ({exc})")
            continue
        if name is not None and name != "*" and not hasattr(mod, name):
            try:
                importlib.import_module(f"{module}.{name}")  # a submodule not yet imported
            except ImportError:
                missing.append(f"{path.name}:{line}: {module} has no {name}")
    assert not missing, "\n".join(missing)


@pytest.mark.parametrize("kwargs", [
    {},  # as bench/serve.py's latency phases, serve_ab.py and serve_held.py start it
    {"cache_lines": ["cross_language = true"], "embed_threads": 1, "embedder": "multilingual-e5-small"},
], ids=["defaults", "throughput-options"])
def test_the_gateway_config_the_serve_benches_write_is_read_by_semroute(tmp_path, monkeypatch, kwargs):
    """``bench/serve.py``'s config for ``semroute serve``, read as the command reads it (a
    generator filter once made every start without ``[cache]`` lines raise before the server ran)."""
    import tomllib

    from semroute.config import load_config
    from semroute.server.settings import server_settings_from_table

    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    serve_bench = importlib.import_module("serve")
    path = tmp_path / "serve.toml"
    path.write_text(serve_bench.gateway_config("http://127.0.0.1:9", **kwargs), encoding="utf-8")
    router_kwargs = load_config(path)
    server = server_settings_from_table(tomllib.loads(path.read_text(encoding="utf-8"))["server"])
    assert set(router_kwargs["tiers"]) == {"small", "large"}
    assert server.embed_threads == kwargs.get("embed_threads")
    assert (router_kwargs["settings"].cache.cross_language is True) == ("cache_lines" in kwargs)
