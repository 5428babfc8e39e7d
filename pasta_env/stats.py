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


def wilson_interval(hits: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``hits / n`` (95% by default): ``(low, high)``, NaN for ``n = 0``.

    Unlike the normal approximation it stays inside [0, 1] and does not
    shrink to zero width at 0% or 100%: 88 of 88 gives (95.8%, 100%).
    """
    if n <= 0:
        return float("nan"), float("nan")
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (0.0 if hits <= 0 else max(0.0, centre - half)), (1.0 if hits >= n else min(1.0, centre + half))


#: The 97.5% quantile of Student's t for 1 to 30 degrees of freedom.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t975(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom (a table to 30, then ``z + (z^3 + z)/(4 df)``,
    within 0.003 of the exact value)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be at least 1, got {df}")
    return _T975[df - 1] if df <= len(_T975) else Z95 + (Z95 ** 3 + Z95) / (4 * df)


def t_ci95(x: np.ndarray) -> float:
    """Half-width of Student's t 95% confidence interval of the mean (NaN below two values)."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) < 2:
        return float("nan")
    return float(t975(len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
