"""A regular time grid with NaN for gaps, so that seasonal look-ups are index arithmetic, not searches."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from autoscaler import model

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Grid:
    """Values on a regular grid: `values[i]` covers [start + i*step, start + (i+1)*step); NaN = no data."""

    start: float
    step: float
    values: FloatArray
    newest: FloatArray | None = None
    """Per cell, the time of its newest sample (NaN when empty); None: samples sit at cell starts."""

    def index(self, t: float) -> int:
        """The cell holding time `t` (may lie outside the grid)."""
        return math.floor((t - self.start) / self.step)

    def last_known(self, known: float) -> int:
        """The last cell whose samples are all at or before `known` (-1 when none is).

        Only the cell holding `known` can mix older and newer samples: a sample stamped after
        `known` must never reach a forecast made at `known`, so that cell then counts as unknown.
        """
        cell = min(self.index(known), len(self.values) - 1)
        if cell >= 0 and self.newest is not None and self.newest[cell] > known:
            cell -= 1
        return cell


def from_arrays(
    times: Sequence[float] | FloatArray, values: Sequence[float] | FloatArray, step: float
) -> Grid:
    """A grid from sorted sample times and values; samples in one cell are averaged, empty cells are NaN."""
    t = np.asarray(times, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    keep = np.isfinite(v)
    t, v = t[keep], v[keep]
    start = math.floor(float(t[0]) / step) * step
    cells = np.floor((t - start) / step).astype(np.int64)
    size = int(cells[-1]) + 1
    sums = np.bincount(cells, weights=v, minlength=size)
    counts = np.bincount(cells, minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    newest = np.full(size, np.nan)
    np.fmax.at(newest, cells, t)
    return Grid(start, step, out.astype(np.float64), newest)


def regrid(samples: Sequence[model.Sample], step: float) -> Grid | None:
    """A grid from range-query samples (any order, NaN dropped); None when no finite sample exists."""
    finite = sorted((s for s in samples if math.isfinite(s.value)), key=lambda s: s.timestamp)
    if not finite:
        return None
    return from_arrays([s.timestamp for s in finite], [s.value for s in finite], step)
