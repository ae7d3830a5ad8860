"""The `instance:` section's files: read when the policy loads, checked, and kept with the policy.

A user-data or network-config file is named relative to the policy file. Reading it here, once,
means `autoscaler check` and the daemon see the same text, a reload with a broken file keeps the
last good policy, and an edit to the file counts as a new policy revision on the next reload.
"""

from __future__ import annotations

from pathlib import Path

from autoscaler.identity import documents
from autoscaler.policy import spec
from autoscaler.policy.locate import Loc

Found = list[tuple[Loc, str]]


def with_texts(group: spec.GroupPolicy, base: Path) -> tuple[spec.GroupPolicy, Found]:
    """The group with its instance files read in, or the problems (located at their fields)."""
    instance = group.instance
    if instance is None:
        return group, []
    problems: Found = [(("instance", "hostname"), p) for p in documents.hostname_problems(instance.hostname)]
    update: dict[str, str] = {}
    for field, check in (
        ("user_data", documents.user_data_problems),
        ("network_config", documents.network_config_problems),
    ):
        named = getattr(instance, field)
        if named is None:
            continue
        path = _resolve(named, base)
        text, found = documents.read(path)
        if text is not None:
            found = check(text, str(path))
            update[field], update[f"{field}_text"] = str(path), text
        problems += [(("instance", field), message) for message in found]
    if problems:
        return group, problems
    return group.model_copy(update={"instance": instance.model_copy(update=update)}), []


def _resolve(named: str, base: Path) -> Path:
    """An absolute path: as written, or relative to the policy file's directory."""
    path = Path(named).expanduser()
    return path if path.is_absolute() else (base / path).resolve()
