"""Policy files on disk: YAML in, validated groups out, and every problem reported at once.

Each problem names the file, line, column and field path (`web.yaml:14:7: checks[0].strategy.target:
...`), so an operator fixes a file in one pass; `autoscaler check` and the daemon use the same code.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic
import yaml

from autoscaler.errors import PolicyError
from autoscaler.policy import locate, rules, spec
from autoscaler.policy.locate import Loc, Problem

SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True, slots=True)
class LoadedGroup:
    """A valid group with where it came from and a revision that changes with its content."""

    policy: spec.GroupPolicy
    file: str
    line: int
    revision: str
    warnings: tuple[Problem, ...] = ()
    """Valid but risky settings (an unbounded on_missing scale_up): reported, never refused."""


@dataclass(frozen=True, slots=True)
class LoadResult:
    """Valid groups by name, and the problems of the files that were rejected (per file)."""

    groups: dict[str, LoadedGroup]
    problems: dict[str, list[Problem]]

    @property
    def ok(self) -> bool:
        """True when no file had a problem."""
        return not any(self.problems.values())


def _documents(text: str, file: str) -> tuple[list[tuple[yaml.Node, object]], list[Problem]]:
    loader = yaml.SafeLoader(text)
    documents: list[tuple[yaml.Node, object]] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is not None:
                documents.append((node, loader.construct_document(node)))
    except yaml.MarkedYAMLError as exc:
        return [], [locate.yaml_problem(file, exc)]
    finally:
        loader.dispose()
    return documents, []


def _validate(
    node: yaml.Node, data: object, file: str, sources: Sequence[str] | None
) -> tuple[list[spec.GroupPolicy], list[Problem]]:
    model: type[spec.GroupPolicy | spec.PolicyFile] = (
        spec.PolicyFile if isinstance(data, dict) and "groups" in data else spec.GroupPolicy
    )
    if not isinstance(data, dict):
        return [], [locate.problem(file, node, (), "expected a mapping with a group (or a 'groups' list)")]
    try:
        parsed = model.model_validate(data, context={"from_file": True})
    except pydantic.ValidationError as exc:
        field_problems = [locate.from_pydantic(file, node, error, model) for error in exc.errors()]
        rule_problems = [
            locate.problem(file, node, loc, message)
            for loc, message in _rules_of_valid_parts(data, [tuple(e["loc"]) for e in exc.errors()])
        ]
        return [], field_problems + rule_problems
    groups = list(parsed.groups) if isinstance(parsed, spec.PolicyFile) else [parsed]
    prefix: Loc = ("groups",) if isinstance(parsed, spec.PolicyFile) else ()
    problems = [
        locate.problem(file, node, (*prefix, *((index,) if prefix else ()), *loc), message)
        for index, group in enumerate(groups)
        for loc, message in _group_rules(group, sources)
    ]
    return ([], problems) if problems else (groups, [])


def _group_rules(group: spec.GroupPolicy, sources: Sequence[str] | None) -> Iterator[tuple[Loc, str]]:
    """The group's rules, and, when the configured metric sources are known, that it names only those."""
    yield from rules.problems(group)
    if sources is not None:
        yield from rules.unknown_sources(group, sources)


def _rules_of_valid_parts(data: dict[str, Any], invalid: list[Loc]) -> Iterator[tuple[Loc, str]]:
    """Part rules of a document with field errors, so both kinds show up in the same report."""
    if "groups" not in data:
        yield from rules.part_problems(data, invalid)
        return
    groups = data["groups"]
    for index, group in enumerate(groups if isinstance(groups, list) else []):
        if isinstance(group, dict):
            prefix: Loc = ("groups", index)
            inside = [loc[2:] for loc in invalid if loc[:2] == prefix]
            for loc, message in rules.part_problems(group, inside):
                yield (*prefix, *loc), message


def revision(policy: spec.GroupPolicy) -> str:
    """A short hash of the group's effective policy: it changes whenever its content does."""
    canonical = json.dumps(policy.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def _defined_twice(
    file: str, node: yaml.Node, data: object, found: list[spec.GroupPolicy], named: dict[str, Problem]
) -> list[Problem]:
    """A problem at each group named again in the same file; `named` records where names came first."""
    listed = isinstance(data, dict) and "groups" in data
    problems: list[Problem] = []
    for index, group in enumerate(found):
        where = locate.problem(file, node, ("groups", index, "group") if listed else ("group",), "")
        first = named.setdefault(group.group, where)
        if first is not where:
            message = f"group '{group.group}' is already defined at {file}:{first.line}:{first.column}"
            problems.append(Problem(file, where.line, where.column, where.path, message))
    return problems


def _warnings(file: str, node: yaml.Node, group: spec.GroupPolicy, prefix: Loc) -> tuple[Problem, ...]:
    return tuple(
        locate.problem(file, node, (*prefix, *loc), f"warning: {message}")
        for loc, message in rules.warnings(group)
    )


def load_text(
    text: str, file: str, sources: Sequence[str] | None = None
) -> tuple[list[LoadedGroup], list[Problem]]:
    """The groups in one file's text, or every problem found in it (then no group at all).

    `sources`: the metric source names the daemon defines; None skips that check (no config at hand).
    """
    documents, problems = _documents(text, file)
    groups: list[LoadedGroup] = []
    named: dict[str, Problem] = {}
    for node, data in documents:
        found, found_problems = _validate(node, data, file, sources)
        problems += found_problems
        line = node.start_mark.line + 1
        listed = isinstance(data, dict) and "groups" in data
        groups += [
            LoadedGroup(
                g, file, line, revision(g), _warnings(file, node, g, (("groups", i) if listed else ()))
            )
            for i, g in enumerate(found)
        ]
        problems += _defined_twice(file, node, data, found, named)
    if not documents and not problems:
        problems.append(Problem(file, 1, 1, "", "the file defines no group"))
    problems.sort(key=lambda p: (p.line, p.column))
    return ([], problems) if problems else (groups, [])


def load_file(path: str | Path) -> list[spec.GroupPolicy]:
    """The groups of one file; raises PolicyError listing every problem."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError([f"{file}:1:1: cannot read: {exc}"]) from exc
    groups, problems = load_text(text, file)
    if problems:
        raise PolicyError([str(p) for p in problems])
    return [g.policy for g in groups]


def policy_files(paths: Sequence[str | Path]) -> list[Path]:
    """The YAML files named, and those directly inside the directories named, in a stable order."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix in SUFFIXES and p.is_file())
        else:
            files.append(path)
    return files


def _read(path: Path, sources: Sequence[str] | None) -> tuple[list[LoadedGroup], list[Problem]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [], [Problem(str(path), 1, 1, "", f"cannot read: {exc}")]
    return load_text(text, str(path), sources)


def load_paths(paths: Sequence[str | Path], sources: Sequence[str] | None = None) -> LoadResult:
    """Every group in the files and directories named; a bad file never blocks the good ones.

    With `sources` (the configured metric source names), a group naming any other source is a problem.
    """
    groups: dict[str, LoadedGroup] = {}
    problems: dict[str, list[Problem]] = {}
    for path in policy_files(paths):
        found, file_problems = _read(path, sources)
        for group in found:
            earlier = groups.get(group.policy.group)
            if earlier is not None:
                message = f"group '{group.policy.group}' is already defined at {earlier.file}:{earlier.line}"
                file_problems.append(Problem(group.file, group.line, 1, "group", message))
        problems[str(path)] = file_problems
        if not file_problems:
            groups.update((g.policy.group, g) for g in found)
    return LoadResult(groups, problems)
