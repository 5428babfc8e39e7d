"""Compiled kernels, imported on first use, and the decorator that compiles them.

Importing a kernel module (:mod:`simulators.kernels`, :mod:`pasta_env.kernels`)
imports numba (about half a second), so callers reach it through a loader from
:func:`lazy_module`: nothing is loaded until a part first computes, and later
calls cost a cached lookup, not an import.
"""

from __future__ import annotations

import functools
import importlib
import warnings
from collections.abc import Callable
from types import ModuleType


@functools.cache
def lazy_module(name: str) -> Callable[[], ModuleType]:
    """A function that returns module ``name``, importing it on its first call (one loader per name)."""
    return functools.cache(lambda: importlib.import_module(name))


#: :mod:`simulators.kernels`, imported on the first call.
kernels = lazy_module("simulators.kernels")


#: Kernels compiled without an on-disk cache in this process (none where numba can cache).
_uncached: list[str] = []


def compiled(**options) -> Callable:
    """``numba.njit(cache=True, nogil=True, error_model="numpy", **options)``, cached on disk when it can be.

    numba keeps compiled code beside the source, or in the user's cache
    folder, or under ``NUMBA_CACHE_DIR``; where none is writable (a
    read-only install with no home), the kernel is compiled in every
    process instead of failing, with one warning that says how to cache it.
    """
    import numba

    def decorate(fn: Callable) -> Callable:
        try:
            return numba.njit(cache=True, nogil=True, error_model="numpy", **options)(fn)
        except RuntimeError as exc:  # numba found no writable cache location
            if not _uncached:
                warnings.warn(f"pasta-t2i cannot cache its compiled kernels ({exc}); they are compiled in every "
                              "process (seconds). Set NUMBA_CACHE_DIR to a writable folder to cache them.",
                              RuntimeWarning, stacklevel=2)
            _uncached.append(fn.__qualname__)
            return numba.njit(cache=False, nogil=True, error_model="numpy", **options)(fn)

    return decorate
