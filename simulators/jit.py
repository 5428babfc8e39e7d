"""The world parts' compiled kernels, imported on first use.

Importing :mod:`simulators.kernels` imports numba (about half a second), so
the parts reach it through :func:`kernels`: nothing is loaded until a part
first computes, and later calls cost a cached lookup, not an import.
"""

from __future__ import annotations

import functools
from types import ModuleType


@functools.cache
def kernels() -> ModuleType:
    """:mod:`simulators.kernels`, imported on the first call."""
    from simulators import kernels as module

    return module
