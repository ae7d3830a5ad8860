"""Demand traces read once into arrays, so that a replay never parses text and never invents a zero for a gap.

A trace is a CSV `timestamp,value` (ISO-8601 with a UTC offset, local time of the workload), one row
per fixed step; steps without data are simply absent. A JSON sidecar `<file>.json` may describe it.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class TraceError(ValueError):
    """The trace file cannot be used: unreadable, empty, unordered or without a UTC offset."""


@dataclass(frozen=True)
class Trace:
    """Rows of one trace: times (Unix seconds, strictly increasing) and finite values."""

    name: str
    times: IntArray
    """Unix seconds of each present row."""
    values: FloatArray
    """The demand in the trace's unit; never NaN (absent rows are gaps)."""
    step: int
    """The nominal step in seconds (the most common difference between rows)."""
    utc_offset: int
    """Seconds east of UTC of the trace's local time (from its first timestamp)."""

    @property
    def span(self) -> int:
        """Seconds from the first row to one step after the last."""
        return int(self.times[-1] - self.times[0]) + self.step

    def local_times(self) -> IntArray:
        """Row times shifted to the trace's local wall clock (still seconds since the epoch)."""
        return self.times + self.utc_offset


def _parse_row(row: list[str], line: int) -> tuple[datetime, float] | None:
    if len(row) < 2:
        raise TraceError(f"line {line}: expected 'timestamp,value', got {row!r}")
    try:
        stamp = datetime.fromisoformat(row[0].strip())
        text = row[1].strip()
        value = float(text) if text else math.nan
    except ValueError as exc:
        raise TraceError(f"line {line}: {exc}") from exc
    if stamp.utcoffset() is None:
        raise TraceError(f"line {line}: timestamp {row[0]!r} has no UTC offset")
    return (stamp, value) if math.isfinite(value) else None


def _nominal_step(times: IntArray) -> int:
    if len(times) < 2:
        return 60
    diffs, counts = np.unique(np.diff(times), return_counts=True)
    return int(diffs[int(np.argmax(counts))])


def load_csv(path: Path | str) -> Trace:
    """The trace in `path`; rows with an empty or non-finite value are gaps, exactly like absent rows."""
    path = Path(path)
    rows: list[tuple[datetime, float]] = []
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:2]] != ["timestamp", "value"]:
            raise TraceError(f"{path}: the header must be 'timestamp,value'")
        for line, row in enumerate(reader, start=2):
            parsed = _parse_row(row, line)
            if parsed is not None:
                rows.append(parsed)
    if not rows:
        raise TraceError(f"{path}: no usable rows")
    return from_rows(path.name, rows)


def from_rows(name: str, rows: list[tuple[datetime, float]]) -> Trace:
    """A trace from (aware datetime, value) pairs in time order."""
    times = np.array([round(stamp.timestamp()) for stamp, _ in rows], dtype=np.int64)
    if np.any(np.diff(times) <= 0):
        raise TraceError(f"{name}: timestamps must be strictly increasing")
    offset = rows[0][0].utcoffset()
    assert offset is not None
    values = np.array([value for _, value in rows], dtype=np.float64)
    return Trace(name, times, values, _nominal_step(times), int(offset.total_seconds()))


def read_sidecar(path: Path | str) -> dict[str, Any] | None:
    """The JSON sidecar next to a trace (`<file>.json`), or None when there is none."""
    sidecar = Path(f"{path}.json")
    if not sidecar.is_file():
        return None
    data = json.loads(sidecar.read_text())
    return data if isinstance(data, dict) else None


def suggested_capacity(path: Path | str) -> float | None:
    """`suggested_capacity_per_instance` from the sidecar, when present."""
    sidecar = read_sidecar(path)
    if sidecar is None or "suggested_capacity_per_instance" not in sidecar:
        return None
    return float(sidecar["suggested_capacity_per_instance"])
