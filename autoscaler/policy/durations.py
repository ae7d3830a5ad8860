"""Durations as operators write them (`90s`, `5m`, `1h30m`, `2d`), read into seconds."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, ValidationInfo, WithJsonSchema

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
PATTERN = r"^(\d+(\.\d+)?(ms|s|m|h|d|w))+$"
ZERO_PATTERN = r"^(0+(\.0+)?(ms|s|m|h|d|w))+$"
"""Durations that add up to nothing (`0s`, `0m0s`)."""


def parse(text: object) -> float:
    """Seconds in `text`; a bare number is refused because its unit would be a guess."""
    if isinstance(text, bool) or not isinstance(text, str):
        raise ValueError(f"expected a duration with a unit such as '90s', '5m' or '1h', got {text!r}")
    compact = text.strip().replace(" ", "")
    if not re.fullmatch(PATTERN, compact):
        raise ValueError(f"expected a duration such as '90s', '5m' or '1h30m', got {text!r}")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _PART.findall(compact))


def format_seconds(seconds: float) -> str:
    """The shortest exact spelling of `seconds` in the units above (used in messages)."""
    if seconds == 0:
        return "0s"
    for unit in ("w", "d", "h", "m", "s"):
        size = _UNIT_SECONDS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def parse_field(value: object, info: ValidationInfo) -> float:
    """A policy field: text from files (unit required), or seconds from Python code."""
    from_file = bool(info.context and info.context.get("from_file"))
    if not from_file and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return parse(value)


def positive(seconds: float) -> float:
    """`seconds` when above zero: for intervals and timeouts, where 0 would spin or give up at once."""
    if seconds <= 0:
        raise ValueError("must be longer than 0s")
    return seconds


Duration = Annotated[
    float,
    BeforeValidator(parse_field),
    WithJsonSchema({"type": "string", "pattern": PATTERN, "examples": ["90s", "5m", "1h"]}),
]
"""Seconds, written with a unit in YAML."""

PositiveDuration = Annotated[
    float,
    BeforeValidator(parse_field),
    AfterValidator(positive),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": PATTERN,
            "not": {"pattern": ZERO_PATTERN},
            "examples": ["90s", "5m", "1h"],
        }
    ),
]
"""Seconds above zero: an interval or timeout, where 0 would make a loop spin or give up at once."""
