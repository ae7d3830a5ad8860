"""YAML from operators read within limits, so no file can crash, stall or exhaust the daemon.

Every way a file can be wrong becomes a located `Problem` (`file:line:col: message`), never an
exception: bytes that are not UTF-8, characters YAML forbids (NUL, control characters), syntax
errors, nesting deeper than a limit (the composer recurses, so depth is checked on the event
stream first), alias bombs (the size a document expands to is counted on the same stream, each
alias adding the size of the node it repeats), and files larger than a limit (never read whole).
Policy files and the daemon's settings file both go through here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from autoscaler.policy import locate
from autoscaler.policy.locate import Problem

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's parser when present (several times faster); its errors and marks are the same."""


@dataclass(frozen=True, slots=True)
class Limits:
    """What one YAML file may hold; the daemon's settings (`limits:`) can change each."""

    file_bytes: int = 4 * 1024 * 1024
    """Largest file read (10,000 small groups take about 2.5 MB)."""
    depth: int = 32
    """Deepest nesting of mappings and sequences (a policy needs about 6)."""
    expansion: int = 4
    """Nodes a document may expand to, per byte of the file (aliases repeat nodes; plain YAML has
    fewer nodes than bytes, so only an alias bomb comes near)."""
    checks_per_group: int = 64
    """Checks in one group (each one is a query per tick)."""
    groups: int = 10_000
    """Groups one daemon manages, over all its files."""


class _TooBig(Exception):
    """The event stream broke a limit: where, and what to say."""

    def __init__(self, mark: Any, message: str) -> None:
        super().__init__(message)
        self.mark = mark
        self.message = message


def read(path: Path, limits: Limits) -> tuple[str | None, list[Problem]]:
    """A file's text, or the problem that keeps it from being read (too big, not UTF-8, unreadable)."""
    file = str(path)
    try:
        with path.open("rb") as handle:
            data = handle.read(limits.file_bytes + 1)
    except OSError as exc:
        return None, [Problem(file, 1, 1, "", f"cannot read: {exc.strerror or exc}")]
    if len(data) > limits.file_bytes:
        message = f"the file is larger than {limits.file_bytes} bytes (limits.policy_file_bytes)"
        return None, [Problem(file, 1, 1, "", message)]
    try:
        return data.decode("utf-8"), []
    except UnicodeDecodeError as exc:
        line, column = _position(data[: exc.start].decode("utf-8", errors="replace"))
        message = f"not UTF-8: byte 0x{data[exc.start]:02x} cannot start or continue a character"
        return None, [Problem(file, line, column, "", message)]


def documents(
    text: str, file: str, limits: Limits, loader: Any = _LOADER
) -> tuple[list[tuple[yaml.Node, object]], list[Problem]]:
    """Every document of a YAML text as (node tree, plain data), or the one problem that stops it.

    A syntax error found by libyaml is reported in the words of the pure-Python parser (re-run on
    that file only), which name what was expected and what was found.
    """
    try:
        _check_shape(text, limits, loader)
        return _compose(text, loader), []
    except _TooBig as exc:
        line, column = (exc.mark.line + 1, exc.mark.column + 1) if exc.mark else (1, 1)
        return [], [Problem(file, line, column, "", exc.message)]
    except yaml.MarkedYAMLError as exc:
        if loader is not yaml.SafeLoader:
            return documents(text, file, limits, yaml.SafeLoader)
        return [], [locate.yaml_problem(file, exc)]
    except yaml.reader.ReaderError as exc:
        line, column = _position(text[: exc.position])
        return [], [Problem(file, line, column, "", _reader_message(exc))]
    except (yaml.YAMLError, RecursionError, ValueError, TypeError, OverflowError) as exc:
        return [], [Problem(file, 1, 1, "", f"cannot read the YAML: {type(exc).__name__}: {exc}")]


def _check_shape(text: str, limits: Limits, loader: Any) -> None:
    """Walk the event stream (no recursion, no objects built): depth and expanded size within limits.

    `expanded` counts the nodes every document expands to: one per scalar and collection, and
    for an alias the size of the node it repeats (measured when that node ended).
    """
    budget = limits.expansion * max(len(text), 1024)
    sizes: dict[str, int] = {}
    open_nodes: list[tuple[str | None, int]] = []  # (anchor, `expanded` when it began)
    expanded = 0
    for event in yaml.parse(text, Loader=loader):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            if len(open_nodes) >= limits.depth:
                raise _TooBig(
                    event.start_mark, f"nested deeper than {limits.depth} levels (limits.yaml_depth)"
                )
            open_nodes.append((event.anchor, expanded))
            expanded += 1
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            anchor, began = open_nodes.pop()
            if anchor is not None:
                sizes[anchor] = expanded - began
        elif isinstance(event, yaml.ScalarEvent):
            expanded += 1
            if event.anchor is not None:
                sizes[event.anchor] = 1
        elif isinstance(event, yaml.AliasEvent):
            expanded += sizes.get(event.anchor or "", 1)
        if expanded > budget:
            message = f"the document expands to more than {budget} nodes (YAML aliases repeating aliases)"
            raise _TooBig(event.start_mark, message)


def _compose(text: str, loader_class: Any) -> list[tuple[yaml.Node, object]]:
    loader = loader_class(text)
    found: list[tuple[yaml.Node, object]] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is not None:
                found.append((node, loader.construct_document(node)))
    finally:
        loader.dispose()
    return found


def _reader_message(exc: yaml.reader.ReaderError) -> str:
    character = exc.character
    code = ord(character) if isinstance(character, str) else int(character)
    kind = "a NUL byte" if code == 0 else f"character U+{code:04X}"
    return f"{kind} is not allowed in YAML (control characters are refused): {exc.reason}"


def _position(before: str) -> tuple[int, int]:
    """1-based line and column just after `before`."""
    line = before.count("\n") + 1
    return line, len(before) - (before.rfind("\n") + 1) + 1
