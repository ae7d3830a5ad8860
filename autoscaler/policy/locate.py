"""Where in a YAML file a validation problem lies, and how to say it so an operator fixes it at once.

Pydantic reports a path of field names, list indexes and union tags; this module walks the same
path through the YAML node tree to find the line and column, drops the tags the operator never
wrote, and words the message (unknown keys get a did-you-mean). Policy files and the daemon's
settings file share it.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

Loc = tuple[str | int, ...]

_UNKNOWN_KEY = {"extra_forbidden", "unexpected_keyword_argument"}
"""Pydantic's error types for a key the model does not have (models and dataclasses)."""
_NAME_RULES = {
    "group": "use lowercase letters, digits and '-', at most 40 characters, starting and ending alphanumeric",
    "name": "use lowercase letters, digits, '_' and '-', at most 63 characters",
}


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a file, located as precisely as the YAML allows."""

    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.file}:{self.line}:{self.column}: {where}{self.message}"


# --- the YAML tree ---------------------------------------------------------------------------------


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


def render(path: Iterable[str | int]) -> str:
    """A path as the operator reads it: `checks[0].strategy.target`."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def locate(root: yaml.Node, loc: Loc, at_key: bool = False) -> tuple[yaml.Node, str]:
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
    return mark_node, render(path)


def problem(file: str, root: yaml.Node, loc: Loc, message: str, at_key: bool = False) -> Problem:
    """A problem at `loc` in the document rooted at `root`."""
    node, path = locate(root, loc, at_key)
    return Problem(file, node.start_mark.line + 1, node.start_mark.column + 1, path, message)


def yaml_problem(file: str, exc: yaml.MarkedYAMLError) -> Problem:
    """A YAML syntax error as a problem."""
    mark = exc.problem_mark or exc.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    return Problem(file, line, column, "", f"invalid YAML: {exc.problem or exc}")


# --- the fields a model allows at a path, for did-you-mean -----------------------------------------


def _fields(model: type) -> dict[str, Any]:
    """Field definitions of a pydantic model or pydantic dataclass."""
    found = getattr(model, "model_fields", None) or getattr(model, "__pydantic_fields__", None)
    return dict(found or {})


def _is_model(annotation: object) -> bool:
    return isinstance(annotation, type) and (
        hasattr(annotation, "model_fields") or dataclasses.is_dataclass(annotation)
    )


def _models_in(annotation: object) -> list[type]:
    """The models an annotation may hold: through Annotated, unions, tuples, lists and dict values."""
    if _is_model(annotation):
        return [typing.cast(type, annotation)]
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _models_in(args[0])
    if origin in (typing.Union, types.UnionType, tuple, list, dict):
        return [model for arg in args for model in _models_in(arg)]
    return []


def _tag(model: type) -> object:
    kind = _fields(model).get("kind")
    tags = typing.get_args(kind.annotation) if kind is not None else ()
    return tags[0] if len(tags) == 1 else None


def fields_at(root: type, loc: Loc) -> list[str]:
    """Field names the model(s) owning the last element of `loc` allow."""
    candidates = [root]
    for part in loc[:-1]:
        tagged = [m for m in candidates if _tag(m) == part]
        if tagged:
            candidates = tagged
            continue
        owners = [m for m in candidates if isinstance(part, str) and part in _fields(m)]
        if owners and isinstance(part, str):
            candidates = [sub for m in owners for sub in _models_in(_fields(m)[part].annotation)]
        # otherwise an index or a mapping key: the same models own the next element
    return sorted({name for model in candidates for name in _fields(model)})


def _suggest(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


# --- messages --------------------------------------------------------------------------------------


def _expected_tags(error: Any) -> list[str]:
    text = str(error.get("ctx", {}).get("expected_tags", ""))
    return [t.strip().strip("'") for t in text.split(",") if t.strip()]


def message(error: Any, model: type) -> str:
    """One pydantic error in an operator's words."""
    kind, loc, value = error["type"], tuple(error["loc"]), error.get("input")
    if kind in _UNKNOWN_KEY:
        return f"unknown key '{loc[-1]}'" + _suggest(str(loc[-1]), fields_at(model, loc))
    if kind == "missing":
        return "required field is missing"
    if kind == "union_tag_invalid":
        tags = _expected_tags(error)
        tag = error.get("ctx", {}).get("tag")
        return f"unknown kind '{tag}' (expected one of: {', '.join(tags)})" + _suggest(str(tag), tags)
    if kind == "union_tag_not_found":
        return f"'kind' is required (one of: {', '.join(_expected_tags(error))})"
    if kind == "string_pattern_mismatch":
        return f"invalid name {value!r}: {_NAME_RULES.get(str(loc[-1]), 'see the schema')}"
    if kind == "literal_error":
        choices = [
            c.strip().strip("'") for c in str(error["ctx"]["expected"]).replace(" or ", ",").split(",")
        ]
        listed = ", ".join(repr(c) for c in choices if c)
        return f"expected one of {listed}, got {value!r}" + _suggest(str(value), choices)
    text = str(error["msg"]).removeprefix("Value error, ")
    text = text[:1].lower() + text[1:]
    if kind != "value_error" and isinstance(value, str | int | float | bool):
        text += f", got {value!r}"
    return text


def from_pydantic(file: str, root: yaml.Node, error: Any, model: type) -> Problem:
    """A pydantic error as a located problem (a bad union tag points at the `kind` value)."""
    loc = tuple(error["loc"])
    if error["type"] == "union_tag_invalid":
        loc = (*loc, "kind")
    return problem(file, root, loc, message(error, model), at_key=error["type"] in _UNKNOWN_KEY)
