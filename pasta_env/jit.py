"""The core's compiled kernels, imported on first use (see :mod:`simulators.jit`)."""

from __future__ import annotations

import functools
from types import ModuleType


@functools.cache
def kernels() -> ModuleType:
    """:mod:`pasta_env.kernels`, imported on the first call."""
    from pasta_env import kernels as module

    return module
