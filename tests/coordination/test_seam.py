"""Coordination stays behind its seams: nothing but the composition root reaches into it, and only
when the settings have a `coordination:` section."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "autoscaler"


def _imports(path: pathlib.Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_only_the_composition_root_imports_coordination() -> None:
    allowed = {PACKAGE / "runtime" / "daemon.py"}
    for path in PACKAGE.rglob("*.py"):
        if path.is_relative_to(PACKAGE / "coordination") or path in allowed:
            continue
        assert not any(i.startswith("autoscaler.coordination") for i in _imports(path)), path


def test_a_daemon_without_coordination_never_loads_it() -> None:
    code = (
        "import sys; from autoscaler.runtime import daemon; from autoscaler import settings; "
        "daemon.Daemon(settings.parse('policies: []'));"
        "print(any(m.startswith('autoscaler.coordination') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
