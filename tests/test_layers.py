"""The layout tells the architecture: import-linter's contracts (pyproject.toml) keep it from lying.

`make lint` runs `lint-imports` on the tree; these tests show that the contracts do catch what they
promise, on a copy of the package with one bad import (or one unplaced package) added.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "autoscaler"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), str(root / "pyproject.toml"), "--no-cache", "--no-logo"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the package and its pyproject.toml, free to break."""
    shutil.copytree(PACKAGE, tmp_path / "autoscaler", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_copy_keeps_every_contract(tree: Path) -> None:
    result = lint_imports(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


VIOLATIONS = {
    "decide-reads-the-clock": (
        "decide/stages.py",
        "import time\n",
        "autoscaler.decide is not allowed to import time",
    ),
    "forecast-logs": (
        "forecast/grid.py",
        "import logging\n",
        "autoscaler.forecast is not allowed to import logging",
    ),
    "targets-call-libvirt-directly": (
        "targets/kvm.py",
        "import libvirt\n",
        "autoscaler.targets.kvm -> libvirt",
    ),
    "telemetry-serves-http-itself": (
        "telemetry/metrics.py",
        "import aiohttp\n",
        "autoscaler.telemetry.metrics -> aiohttp",
    ),
    "an-adapter-imports-the-engine": (
        "sources/prometheus.py",
        "import autoscaler.engine.handler\n",
        "autoscaler.sources.prometheus -> autoscaler.engine.handler",
    ),
    "policy-imports-settings": (
        "policy/spec.py",
        "import autoscaler.settings\n",
        "autoscaler.policy.spec -> autoscaler.settings",
    ),
    "a-package-no-layer-names": (
        "newpart/__init__.py",
        '"""A package the layers do not place yet."""\n',
        "autoscaler.newpart",
    ),
}


@pytest.mark.parametrize(("module", "line", "message"), VIOLATIONS.values(), ids=VIOLATIONS.keys())
def test_a_violation_breaks_a_contract(tree: Path, module: str, line: str, message: str) -> None:
    path = tree / "autoscaler" / module
    path.parent.mkdir(exist_ok=True)
    text = path.read_text() if path.exists() else ""
    docstring_end = text.find('"""', 3) + 3 if text.startswith('"""') else 0
    path.write_text(text[:docstring_end] + "\n" + line + text[docstring_end:])
    result = lint_imports(tree)
    assert result.returncode == 1, result.stdout + result.stderr
    assert message in result.stdout, result.stdout


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=module_name)
def test_every_module_says_why_it_exists(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    if not tree.body:
        return
    docstring = ast.get_docstring(tree)
    assert docstring, f"{module_name(path)} has no module docstring"
