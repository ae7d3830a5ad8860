"""The layout tells the architecture: these import rules keep it from lying.

The decision core stays pure (no I/O libraries, no clock); only `virt` talks to libvirt; only the
telemetry layer (and the exporter parser) uses prometheus_client.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "autoscaler"

# module prefix -> third-party or stdlib modules it may not import
FORBIDDEN: dict[str, set[str]] = {
    "autoscaler.decide": {
        "asyncio",
        "aiohttp",
        "libvirt",
        "prometheus_client",
        "structlog",
        "time",
        "logging",
    },
    "autoscaler.policy": {"asyncio", "aiohttp", "libvirt", "prometheus_client", "structlog", "time"},
    "autoscaler.model": {"asyncio", "aiohttp", "libvirt", "prometheus_client", "time"},
    "autoscaler.forecast": {"asyncio", "aiohttp", "libvirt", "prometheus_client", "time"},
}
# third-party module -> the only module prefixes allowed to import it
CONFINED: dict[str, tuple[str, ...]] = {
    "libvirt": ("autoscaler.virt",),
    "prometheus_client": ("autoscaler.telemetry", "autoscaler.sources.exporter"),
    "apscheduler": ("autoscaler.runtime", "autoscaler.policy.schedule", "autoscaler.policy.cron"),
}
# the decision core may import only these of the project's own packages
CORE_ALLOWED = ("autoscaler.model", "autoscaler.policy", "autoscaler.decide")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=module_name)
def test_import_rules(path: Path) -> None:
    name = module_name(path)
    roots = {imported.split(".")[0] for imported in imports(path)}
    for prefix, forbidden in FORBIDDEN.items():
        if name.startswith(prefix):
            assert not roots & forbidden, f"{name} imports {roots & forbidden}"
    for library, owners in CONFINED.items():
        if library in roots:
            assert name.startswith(owners), f"{name} imports {library}; only {owners} may"
    if name.startswith("autoscaler.decide"):
        own = {i for i in imports(path) if i.startswith("autoscaler.")}
        assert all(i.startswith(CORE_ALLOWED) for i in own), f"{name} imports {own}"


@pytest.mark.parametrize("path", MODULES, ids=module_name)
def test_every_module_says_why_it_exists(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    if not tree.body:
        return
    docstring = ast.get_docstring(tree)
    assert docstring, f"{module_name(path)} has no module docstring"
