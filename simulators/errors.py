"""The exception hierarchy of pasta-t2i; every error says what to do."""

from __future__ import annotations


class PastaError(Exception):
    """Base class of all errors raised by pasta-t2i."""


class AssetError(PastaError, RuntimeError):
    """A shipped or user-supplied data file is missing or unreadable."""


class DependencyNotInstalled(PastaError, ImportError):
    """An optional dependency is needed; the message names the extra to install."""


class OutputError(PastaError, ValueError):
    """An output path cannot be used (a folder, a special file, not writable, another run's files, a full disk)."""


class ShapeError(PastaError, ValueError):
    """An array does not have the shape an interface declares."""


def check_shape(name: str, array, expected: tuple) -> None:
    """Raise :class:`ShapeError` unless ``array.shape`` matches ``expected``.

    ``None`` in ``expected`` matches any size on that axis.

    Args:
        name: What the array is, for the message.
        array: Anything with a ``shape``.
        expected: Expected shape; ``None`` entries are wildcards.
    """
    shape = tuple(getattr(array, "shape", ()))
    ok = len(shape) == len(expected) and all(
        e is None or e == s for e, s in zip(expected, shape)
    )
    if not ok:
        want = "(" + ", ".join("*" if e is None else str(e) for e in expected) + ")"
        raise ShapeError(f"{name}: expected shape {want}, got {shape}")
