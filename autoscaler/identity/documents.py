"""The operator's user-data and network-config files, checked before any clone needs them.

A file is read once, when its policy loads, and its text travels inside the policy: a clone is
never built from a file that changed (or vanished) since `autoscaler check` passed. Problems are
returned as `<file>:<line>:<column>: <message>` strings, positions inside the operator's file.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from autoscaler.identity import template

CLOUD_CONFIG = "#cloud-config"
HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
)
"""A lowercase host name (RFC 1123), dotted labels allowed: what local-hostname may hold."""
SAMPLE = {
    "name": "as-web-0123abcd",
    "hostname": "as-web-0123abcd",
    "instance_id": "0123abcd-0000-4000-8000-000000000000",
    "group": "web",
    "host": "kvm1",
}
"""Values used to render a template at check time (real ones exist only per clone)."""
HOSTNAME_VARIABLES = tuple(v for v in template.VARIABLES if v != "hostname")


def read(path: Path) -> tuple[str | None, list[str]]:
    """The file's text, or a problem saying why it cannot be read."""
    try:
        return path.read_text(encoding="utf-8"), []
    except FileNotFoundError:
        return None, [f"{path}: no such file"]
    except (OSError, UnicodeDecodeError) as exc:
        return None, [f"{path}: cannot read: {exc}"]


def user_data_problems(text: str, file: str) -> list[str]:
    """Template problems; for a `#cloud-config` file also its YAML, which must be a mapping."""
    found = [f"{file}:{p}" for p in template.problems(text)]
    if found or not text.startswith(CLOUD_CONFIG):
        return found
    return _yaml_problems(template.render(text, SAMPLE), file, "a #cloud-config file")


def network_config_problems(text: str, file: str) -> list[str]:
    """Template and YAML problems of a network-config (version 1 or 2, optionally under `network:`)."""
    found = [f"{file}:{p}" for p in template.problems(text)]
    if found:
        return found
    rendered = template.render(text, SAMPLE)
    found = _yaml_problems(rendered, file, "network-config")
    if found:
        return found
    data = yaml.safe_load(rendered)
    config = data.get("network", data) if isinstance(data, dict) else data
    version = config.get("version") if isinstance(config, dict) else None
    if version not in (1, 2):
        return [f"{file}:1:1: network-config needs 'version: 2' (or 1), got {version!r}"]
    return []


def _yaml_problems(text: str, file: str, what: str) -> list[str]:
    """A YAML syntax error at its position, or a document that is not a mapping."""
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        return [f"{file}:{line}:{column}: {what} is not valid YAML: {exc.problem or exc.context}"]
    except yaml.YAMLError as exc:
        return [f"{file}:1:1: {what} is not valid YAML: {exc}"]
    if not isinstance(data, dict):
        return [f"{file}:1:1: {what} must be a YAML mapping, got {type(data).__name__}"]
    return []


def hostname_problems(pattern: str) -> list[str]:
    """Problems of a hostname pattern: its placeholders, and whether it renders to a valid name."""
    found = [str(p) for p in template.problems(pattern, HOSTNAME_VARIABLES)]
    if found:
        return found
    rendered = template.render(pattern, {k: SAMPLE[k] for k in HOSTNAME_VARIABLES})
    if not HOSTNAME.match(rendered):
        return [f"renders to {rendered!r}, not a host name (lowercase letters, digits, '-' and '.')"]
    return []
