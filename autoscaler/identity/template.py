"""Templating of user-data and hostnames with a strict, closed set of variables.

The syntax is Terraform's `templatefile` subset: `${name}` is replaced, `$${` writes a literal
`${`, and every other `$` stays as it is, so shell scripts keep `$HOME` and `$1`. A placeholder
naming an unknown variable is an error with its line and column (never an empty string in a
guest's configuration), and so is `${` without a closing brace. Shell's own `${HOME}` must be
written `$${HOME}`; the error says so.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

VARIABLES = ("name", "hostname", "instance_id", "group", "host")
"""What a template may use: the domain name, its hostname, its cloud-init instance-id, its group
and the hypervisor host it runs on (`hostname` is unavailable inside the hostname pattern itself)."""

_ESCAPE = "$${"
_ESCAPE = "$${"
_TOKEN = re.compile(r"\$\$\{|\$\{(?P<body>[^}\n]*)\}|\$\{")


@dataclass(frozen=True, slots=True)
class TemplateError:
    """One problem in a template, at a 1-based line and column."""

    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.line}:{self.column}: {self.message}"


def _position(text: str, offset: int) -> tuple[int, int]:
    """1-based line and column of an offset."""
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def _tokens(text: str) -> Iterator[re.Match[str]]:
    return _TOKEN.finditer(text)


def problems(text: str, allowed: tuple[str, ...] = VARIABLES) -> list[TemplateError]:
    """Every placeholder that is malformed or names a variable outside `allowed`."""
    found = []
    for match in _tokens(text):
        if match.group(0) == _ESCAPE:
            continue
        line, column = _position(text, match.start())
        body = match.group("body")
        if body is None:
            found.append(
                TemplateError(line, column, "'${' without a closing '}' (write $${ for a literal ${)")
            )
        elif body.strip() not in allowed:
            found.append(TemplateError(line, column, _unknown(body, allowed)))
    return found


def _unknown(body: str, allowed: tuple[str, ...]) -> str:
    literal = "${" + body + "}"
    return (
        f"unknown variable {literal}; known: {', '.join(allowed)} (write ${literal} for a literal {literal})"
    )


def render(text: str, values: Mapping[str, str]) -> str:
    """The text with every placeholder replaced; raises ValueError on any problem."""
    errors = problems(text, tuple(values))
    if errors:
        raise ValueError("; ".join(map(str, errors)))

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == _ESCAPE:
            return "${"
        return values[match.group("body").strip()]

    return _TOKEN.sub(replace, text)
