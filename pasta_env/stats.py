"""Confidence intervals, the one statistic every report here quotes."""

from __future__ import annotations

import math

import numpy as np

#: The 97.5% quantile of the standard normal.
Z95 = 1.959963984540054


def ci95(x: np.ndarray) -> float:
    """Half-width of the normal-approximation 95% confidence interval of the mean (NaN below two values)."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) < 2:
        return float("nan")
    return float(Z95 * x.std(ddof=1) / math.sqrt(len(x)))
