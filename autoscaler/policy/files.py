"""Policy files on disk: YAML in, validated groups out, and every problem reported at once.

Each problem names the file, line, column and field path (`web.yaml:14:7: checks[0].strategy.target:
...`), so an operator fixes a file in one pass; `autoscaler check` and the daemon use the same code.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import types
import typing
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pydantic
import yaml

from autoscaler.errors import PolicyError
from autoscaler.policy import schedule, spec

Loc = tuple[str | int, ...]
SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a policy file, located as precisely as the YAML allows."""

    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.file}:{self.line}:{self.column}: {where}{self.message}"


@dataclass(frozen=True, slots=True)
class LoadedGroup:
    """A valid group with where it came from and a revision that changes with its content."""

    policy: spec.GroupPolicy
    file: str
    line: int
    revision: str


@dataclass(frozen=True, slots=True)
class LoadResult:
    """Valid groups by name, and the problems of the files that were rejected (per file)."""

    groups: dict[str, LoadedGroup]
    problems: dict[str, list[Problem]]

    @property
    def ok(self) -> bool:
        """True when no file had a problem."""
        return not any(self.problems.values())


# --- locating a pydantic error in the YAML tree -------------------------------------------------


def _child(node: yaml.Node, key: str | int) -> tuple[yaml.Node, yaml.Node] | None:
    """(key node, value node) for `key` in a mapping, or (item, item) for an index in a sequence."""
    if isinstance(node, yaml.MappingNode) and isinstance(key, str):
        for key_node, value_node in node.value:
            if key_node.value == key:
                return key_node, value_node
    if isinstance(node, yaml.SequenceNode) and isinstance(key, int) and 0 <= key < len(node.value):
        item: yaml.Node = node.value[key]
        return item, item
    return None


def _is_kind_tag(node: yaml.Node, part: str | int) -> bool:
    """Whether `part` is pydantic's union tag: the value of the mapping's own `kind` key."""
    found = _child(node, "kind")
    return found is not None and isinstance(found[1], yaml.ScalarNode) and found[1].value == part


def _render(path: Iterable[str | int]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _locate(root: yaml.Node, loc: Loc, at_key: bool) -> tuple[yaml.Node, str]:
    """The node that `loc` points at (its key when `at_key`) and the path as the operator wrote it.

    Elements of `loc` that are not in the YAML (pydantic's union tags) are skipped; a last element
    that is absent (a missing field) still names the path.
    """
    node, mark_node, path = root, root, []
    tag_skipped_at: yaml.Node | None = None
    for index, part in enumerate(loc):
        if tag_skipped_at is not node and _is_kind_tag(node, part):
            tag_skipped_at = node
            continue
        found = _child(node, part)
        last = index == len(loc) - 1
        if found is None:
            if last:
                path.append(part)
            continue
        key_node, node = found
        mark_node = key_node if (last and at_key) else node
        path.append(part)
    return mark_node, _render(path)


# --- the fields a model allows at a path, for did-you-mean ----------------------------------------


def _models_in(annotation: object) -> list[type[pydantic.BaseModel]]:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _models_in(typing.get_args(annotation)[0])
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return [annotation]
    if origin in (typing.Union, types.UnionType, tuple):
        return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]
    return []


def _pick(models: Sequence[type[pydantic.BaseModel]], tag: str | int) -> type[pydantic.BaseModel] | None:
    for candidate in models:
        kind = candidate.model_fields.get("kind")
        if kind is not None and typing.get_args(kind.annotation) == (tag,):
            return candidate
    return models[0] if len(models) == 1 else None


def _fields_at(root: type[pydantic.BaseModel], loc: Loc) -> list[str]:
    """Field names of the model that owns the last element of `loc`."""
    current: type[pydantic.BaseModel] | None = root
    pending: list[type[pydantic.BaseModel]] = []
    for part in loc[:-1]:
        if pending:
            current = _pick(pending, part)
            pending = []
            if current is None or isinstance(part, int) or part not in current.model_fields:
                continue
        if current is None or isinstance(part, int):
            continue
        field = current.model_fields.get(part)
        if field is None:
            return []
        models = _models_in(field.annotation)
        current, pending = (models[0], []) if len(models) == 1 else (None, models)
    return list(current.model_fields) if current is not None else []


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


# --- messages ------------------------------------------------------------------------------------


def _expected_tags(error: typing.Any) -> list[str]:
    text = str(error.get("ctx", {}).get("expected_tags", ""))
    return [t.strip().strip("'") for t in text.split(",") if t.strip()]


_NAME_RULES = {
    "group": "use lowercase letters, digits and '-', at most 40 characters, starting and ending alphanumeric",
    "name": "use lowercase letters, digits, '_' and '-', at most 63 characters",
}


def _message(error: typing.Any, model: type[pydantic.BaseModel]) -> str:
    kind, loc, value = error["type"], tuple(error["loc"]), error.get("input")
    if kind == "extra_forbidden":
        return f"unknown key '{loc[-1]}'" + _suggest(str(loc[-1]), _fields_at(model, loc))
    if kind == "missing":
        return "required field is missing"
    if kind == "union_tag_invalid":
        tags = _expected_tags(error)
        tag = error.get("ctx", {}).get("tag")
        return f"unknown kind '{tag}' (expected one of: {', '.join(tags)})" + _suggest(str(tag), tags)
    if kind == "union_tag_not_found":
        return f"'kind' is required (one of: {', '.join(_expected_tags(error))})"
    message = str(error["msg"]).removeprefix("Value error, ")
    if kind == "string_pattern_mismatch":
        return f"invalid name {value!r}: {_NAME_RULES.get(str(loc[-1]), 'see the schema')}"
    if kind == "literal_error":
        choices = [
            c.strip().strip("'") for c in str(error["ctx"]["expected"]).replace(" or ", ",").split(",")
        ]
        return f"expected one of {', '.join(repr(c) for c in choices if c)}, got {value!r}" + _suggest(
            str(value), choices
        )
    message = message[:1].lower() + message[1:]
    if kind != "value_error" and isinstance(value, str | int | float | bool):
        message += f", got {value!r}"
    return message


# --- semantic checks that span fields ------------------------------------------------------------


def _semantic(policy: spec.GroupPolicy) -> Iterator[tuple[Loc, str]]:
    if policy.min > policy.max:
        yield ("max",), f"max ({policy.max}) is below min ({policy.min})"
    yield from _semantic_checks(policy)
    yield from _semantic_directions(policy)
    yield from _semantic_schedules(policy)
    if policy.readiness.probe == "tcp" and policy.readiness.port is None:
        yield ("readiness", "port"), "the tcp probe needs a port"


def _semantic_checks(policy: spec.GroupPolicy) -> Iterator[tuple[Loc, str]]:
    seen: set[str] = set()
    for index, check in enumerate(policy.checks):
        if check.name in seen:
            yield ("checks", index, "name"), f"duplicate check name '{check.name}'"
        seen.add(check.name)
        if check.on_missing.scale_up is not None and check.on_missing.fallback is not None:
            yield ("checks", index, "on_missing"), "give either scale_up or fallback, not both"
        if not check.query and not isinstance(check.strategy, spec.Fixed):
            yield ("checks", index, "query"), "a query is required for this strategy"
        if isinstance(check.strategy, spec.Threshold):
            yield from _semantic_steps(index, check.strategy)


def _semantic_steps(check_index: int, strategy: spec.Threshold) -> Iterator[tuple[Loc, str]]:
    for index, step in enumerate(strategy.steps):
        loc: Loc = ("checks", check_index, "strategy", "steps", index)
        actions = [name for name in ("change", "percent", "set") if getattr(step, name) is not None]
        if len(actions) != 1:
            yield loc, "give exactly one of change, percent or set"
        if step.lower is not None and step.upper is not None and step.lower >= step.upper:
            yield (*loc, "upper"), f"upper ({step.upper:g}) must be above lower ({step.lower:g})"


def _semantic_directions(policy: spec.GroupPolicy) -> Iterator[tuple[Loc, str]]:
    for name in ("scale_up", "scale_down"):
        rate = getattr(policy, name).rate
        if rate is not None and rate.instances is None and rate.percent is None:
            yield (name, "rate"), "give instances, percent or both"


def _semantic_schedules(policy: spec.GroupPolicy) -> Iterator[tuple[Loc, str]]:
    for index, window in enumerate(policy.schedules):
        loc: Loc = ("schedules", index)
        try:
            schedule.zone(window.timezone)
        except ValueError as exc:
            yield (*loc, "timezone"), str(exc)
        else:
            try:
                schedule.trigger(window.cron, window.timezone)
            except ValueError as exc:
                yield (*loc, "cron"), f"invalid cron expression: {exc}"
        if window.min is None and window.max is None:
            yield loc, "a schedule needs min, max or both"
        if window.min is not None and window.min > policy.max:
            yield (*loc, "min"), f"floor {window.min} is above the group's max ({policy.max})"
        if window.max is not None and window.max < policy.min:
            yield (*loc, "max"), f"ceiling {window.max} is below the group's min ({policy.min})"


# --- loading -------------------------------------------------------------------------------------


def _documents(text: str, file: str) -> tuple[list[tuple[yaml.Node, object]], list[Problem]]:
    loader = yaml.SafeLoader(text)
    documents: list[tuple[yaml.Node, object]] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is not None:
                documents.append((node, loader.construct_document(node)))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        return [], [Problem(file, line, column, "", f"invalid YAML: {exc.problem or exc}")]
    finally:
        loader.dispose()
    return documents, []


def _problem(file: str, root: yaml.Node, loc: Loc, message: str, at_key: bool = False) -> Problem:
    node, path = _locate(root, loc, at_key)
    return Problem(file, node.start_mark.line + 1, node.start_mark.column + 1, path, message)


def _from_pydantic(file: str, root: yaml.Node, error: typing.Any, model: type[pydantic.BaseModel]) -> Problem:
    loc = tuple(error["loc"])
    if error["type"] == "union_tag_invalid":
        loc = (*loc, "kind")
    return _problem(file, root, loc, _message(error, model), at_key=error["type"] == "extra_forbidden")


def _validate(node: yaml.Node, data: object, file: str) -> tuple[list[spec.GroupPolicy], list[Problem]]:
    model: type[spec.GroupPolicy | spec.PolicyFile] = (
        spec.PolicyFile if isinstance(data, dict) and "groups" in data else spec.GroupPolicy
    )
    if not isinstance(data, dict):
        return [], [_problem(file, node, (), "expected a mapping with a group (or a 'groups' list)")]
    try:
        parsed = model.model_validate(data, context={"from_file": True})
    except pydantic.ValidationError as exc:
        return [], [_from_pydantic(file, node, error, model) for error in exc.errors()]
    groups = list(parsed.groups) if isinstance(parsed, spec.PolicyFile) else [parsed]
    prefix: Loc = ("groups",) if isinstance(parsed, spec.PolicyFile) else ()
    problems = [
        _problem(file, node, (*prefix, *((index,) if prefix else ()), *loc), message)
        for index, group in enumerate(groups)
        for loc, message in _semantic(group)
    ]
    return ([], problems) if problems else (groups, [])


def revision(policy: spec.GroupPolicy) -> str:
    """A short hash of the group's effective policy: it changes whenever its content does."""
    canonical = json.dumps(policy.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def load_text(text: str, file: str) -> tuple[list[LoadedGroup], list[Problem]]:
    """The groups in one file's text, or every problem found in it (then no group at all)."""
    documents, problems = _documents(text, file)
    groups: list[LoadedGroup] = []
    for node, data in documents:
        found, found_problems = _validate(node, data, file)
        problems += found_problems
        line = node.start_mark.line + 1
        groups += [LoadedGroup(g, file, line, revision(g)) for g in found]
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


def _read(path: Path) -> tuple[list[LoadedGroup], list[Problem]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [], [Problem(str(path), 1, 1, "", f"cannot read: {exc}")]
    return load_text(text, str(path))


def load_paths(paths: Sequence[str | Path]) -> LoadResult:
    """Every group in the files and directories named; a bad file never blocks the good ones."""
    groups: dict[str, LoadedGroup] = {}
    problems: dict[str, list[Problem]] = {}
    for path in policy_files(paths):
        found, file_problems = _read(path)
        for group in found:
            earlier = groups.get(group.policy.group)
            if earlier is not None:
                message = f"group '{group.policy.group}' is already defined at {earlier.file}:{earlier.line}"
                file_problems.append(Problem(group.file, group.line, 1, "group", message))
        problems[str(path)] = file_problems
        if not file_problems:
            groups.update((g.policy.group, g) for g in found)
    return LoadResult(groups, problems)
