"""Atomic file writing: write to a temp file in the same folder, sync it, then rename; strict JSON."""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from simulators.errors import OutputError


def refuse_special(path: str | os.PathLike, what: str = "output") -> None:
    """Raise :class:`OutputError` if ``path`` exists and is neither a regular file nor a folder.

    A rename onto ``/dev/null`` would replace the device with a file, and a
    FIFO or a socket is no place for a result.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise OutputError(f"{what} {str(path)!r}: {exc.strerror or exc}; choose another path") from exc
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        kind = ("a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a pipe" if stat.S_ISFIFO(mode)
                else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
        raise OutputError(f"{what} {str(path)!r} is {kind}, not a file; give the path of a regular file")


def _sync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None, mode: int = 0o644) -> Iterator[str]:
    """Yield a temp path next to ``path``; sync it and rename it onto ``path`` (with ``mode``) if the block succeeds.

    The folder is created if needed. On an exception the temp file is
    removed and ``path`` is untouched. A target that exists and is not a
    regular file (a device, a pipe) is refused before anything is written,
    and a failed write (a full disk) is reported with the file's name.
    """
    path = Path(path)
    refuse_special(path)
    if path.is_dir():
        raise OutputError(f"output {str(path)!r} is a folder; give a file path")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix or path.suffix)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)  # (the temp file is made owner-only: a private file is never readable on the way)
        os.replace(tmp, path)
        _sync_folder(path.parent)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS):
            raise OutputError(f"cannot write {str(path)!r}: {exc.strerror}; free some space or choose another "
                              "path (nothing was replaced)") from exc
        raise


def json_ready(value: Any) -> Any:
    """``value`` with every NaN or infinite float (numpy's too) replaced by ``None``, for strict JSON."""
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if hasattr(value, "tolist") and hasattr(value, "dtype"):  # numpy scalars and arrays
        return json_ready(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps(payload: Any, **kwargs: Any) -> str:
    """Strict JSON text (``allow_nan=False``): NaN and infinities become ``null``."""
    return json.dumps(json_ready(payload), allow_nan=False, **kwargs)


def write_json(path: str | os.PathLike, payload: Any, mode: int = 0o644) -> None:
    """Write ``payload`` as indented strict JSON (NaN and infinities as ``null``), atomically, with file ``mode``."""
    text = dumps(payload, indent=2) + "\n"
    with atomic_path(path, mode=mode) as tmp, open(tmp, "w") as fh:
        fh.write(text)
