"""Policy files on disk: YAML in, validated groups out, and every problem reported at once.

Each problem names the file, line, column and field path (`web.yaml:14:7: checks[0].strategy.target:
...`), so an operator fixes a file in one pass; `autoscaler check` and the daemon use the same code.
"""

from __future__ import annotations

import hashlib
import json
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic
import yaml

from autoscaler.errors import PolicyError
from autoscaler.policy import instance, locate, rules, safeyaml, spec
from autoscaler.policy.locate import Loc, Problem
from autoscaler.policy.safeyaml import Limits

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


def _validate(
    node: yaml.Node, data: object, file: str, sources: Sequence[str] | None, limits: Limits
) -> tuple[list[spec.GroupPolicy], list[Problem]]:
    model: type[spec.GroupPolicy | spec.PolicyFile] = (
        spec.PolicyFile if isinstance(data, dict) and "groups" in data else spec.GroupPolicy
    )
    if not isinstance(data, dict):
        return [], [locate.problem(file, node, (), "expected a mapping with a group (or a 'groups' list)")]
    too_many = [locate.problem(file, node, loc, message) for loc, message in _over_limits(data, limits)]
    if too_many:
        return [], too_many
    parsed, found_errors = _parsed(model, data)
    if found_errors:
        field_problems = [locate.from_pydantic(file, node, error, model) for error in found_errors]
        rule_problems = [
            locate.problem(file, node, loc, message)
            for loc, message in _rules_of_valid_parts(data, [tuple(e["loc"]) for e in found_errors])
        ]
        return [], field_problems + rule_problems
    groups = list(parsed)
    prefix: Loc = ("groups",) if model is spec.PolicyFile else ()
    problems = [
        locate.problem(file, node, (*prefix, *((index,) if prefix else ()), *loc), message)
        for index, group in enumerate(groups)
        for loc, message in _group_rules(group, sources)
    ]
    if problems:
        return [], problems
    read = [instance.with_texts(group, Path(file).parent) for group in groups]
    problems = [
        locate.problem(file, node, (*prefix, *((index,) if prefix else ()), *loc), message)
        for index, (_group, found) in enumerate(read)
        for loc, message in found
    ]
    return ([], problems) if problems else ([group for group, _found in read], [])


def _parsed(
    model: type[spec.GroupPolicy | spec.PolicyFile], data: dict[str, Any]
) -> tuple[list[spec.GroupPolicy], list[Any]]:
    """The groups of a document, or pydantic's errors (locations from the document's root).

    A list of groups is validated one group at a time, with the same errors as one validation of
    the whole file: one call over 10,000 groups would hold the interpreter for seconds, while
    group by group the event loop gets its turns even when the load runs in a worker thread.
    """
    context = {"from_file": True}
    listed = data.get("groups")
    if model is spec.GroupPolicy or set(data) != {"groups"} or not isinstance(listed, list) or not listed:
        try:
            parsed = model.model_validate(data, context=context)
        except pydantic.ValidationError as exc:
            return [], list(exc.errors())
        return list(parsed.groups) if isinstance(parsed, spec.PolicyFile) else [parsed], []
    groups: list[spec.GroupPolicy] = []
    found: list[Any] = []
    for index, item in enumerate(listed):
        try:
            groups.append(spec.GroupPolicy.model_validate(item, context=context))
        except pydantic.ValidationError as exc:
            found += [{**error, "loc": ("groups", index, *error["loc"])} for error in exc.errors()]
    return groups, found


def _over_limits(data: dict[str, Any], limits: Limits) -> Iterator[tuple[Loc, str]]:
    """Groups with more checks than the limit, found before validating anything (125,000 checks
    would take a gigabyte to validate)."""
    listed = data.get("groups")
    groups = enumerate(listed) if isinstance(listed, list) else [(None, data)]
    for index, group in groups:
        checks = group.get("checks") if isinstance(group, dict) else None
        if isinstance(checks, list) and len(checks) > limits.checks_per_group:
            loc: Loc = ("checks",) if index is None else ("groups", index, "checks")
            limit = limits.checks_per_group
            yield loc, f"{len(checks)} checks; at most {limit} per group (limits.checks_per_group)"


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
    text: str, file: str, sources: Sequence[str] | None = None, limits: Limits | None = None
) -> tuple[list[LoadedGroup], list[Problem]]:
    """The groups in one file's text, or every problem found in it (then no group at all).

    `sources`: the metric source names the daemon defines; None skips that check (no config at hand).
    """
    limits = limits or Limits()
    documents, problems = safeyaml.documents(text, file, limits)
    groups: list[LoadedGroup] = []
    named: dict[str, Problem] = {}
    for node, data in documents:
        found, found_problems = _validate(node, data, file, sources, limits)
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


def load_file(path: str | Path, limits: Limits | None = None) -> list[spec.GroupPolicy]:
    """The groups of one file; raises PolicyError listing every problem."""
    groups, problems = _read(Path(path), None, limits or Limits())
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


def _read(
    path: Path, sources: Sequence[str] | None, limits: Limits
) -> tuple[list[LoadedGroup], list[Problem]]:
    text, problems = safeyaml.read(path, limits)
    if text is None:
        return [], problems
    try:
        return load_text(text, str(path), sources, limits)
    except Exception as exc:  # a bug here must cost this file, never every group
        return [], [Problem(str(path), 1, 1, "", f"cannot load (internal error): {_crash(exc)}")]


def _crash(exc: Exception) -> str:
    """The exception and the line of our code it came from, for a report that replaces a traceback."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


def load_paths(
    paths: Sequence[str | Path], sources: Sequence[str] | None = None, limits: Limits | None = None
) -> LoadResult:
    """Every group in the files and directories named; a bad file never blocks the good ones.

    With `sources` (the configured metric source names), a group naming any other source is a problem.
    A file whose groups would take the total beyond `limits.groups` is rejected.
    """
    limits = limits or Limits()
    groups: dict[str, LoadedGroup] = {}
    problems: dict[str, list[Problem]] = {}
    for path in policy_files(paths):
        found, file_problems = _read(path, sources, limits)
        if found and len(groups) + len(found) > limits.groups:
            message = f"{len(found)} more group(s) would exceed {limits.groups} per daemon (limits.groups)"
            file_problems.append(Problem(str(path), found[0].line, 1, "", message))
        for group in found:
            earlier = groups.get(group.policy.group)
            if earlier is not None:
                message = f"group '{group.policy.group}' is already defined at {earlier.file}:{earlier.line}"
                file_problems.append(Problem(group.file, group.line, 1, "group", message))
        problems[str(path)] = file_problems
        if not file_problems:
            groups.update((g.policy.group, g) for g in found)
    return LoadResult(groups, problems)
