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
