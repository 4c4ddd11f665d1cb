"""Small helpers shared by the report tables of `evaluate`, `ablate` and `eval budget`."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def nanmean(values: Sequence[float]) -> float:
    """Mean of the values that are not NaN (NaN when none are)."""
    arr = np.asarray(values, np.float64)
    keep = ~np.isnan(arr)
    return float(arr[keep].mean()) if keep.any() else math.nan


def cell(value: float, digits: int = 4) -> str:
    """A table cell: `digits` significant digits, an em dash for NaN."""
    return "—" if math.isnan(value) else f"{value:.{digits}g}"


def finite(values: dict[str, float]) -> dict[str, float | None]:
    """JSON-ready metrics: None where a value is NaN or infinite."""
    return {k: (float(v) if math.isfinite(v) else None) for k, v in values.items()}
