"""The rules for the files the project writes and reads: checked early, locked, identified, read safely.

Writing (everything else goes through :func:`simulators.atomic.atomic_path`):

* :func:`check_output_file` checks an output path before the work starts;
* :class:`WriteLock` keeps a second writer away from an output (an ``fcntl``
  lock on ``<output>.lock``, released by the OS if the process dies);
* :func:`claim_output_dir` refuses a folder that holds another run's files
  unless the user says ``overwrite``; the run's identity (what it was
  asked to do, and the code version) is stored in ``.pasta-run.json``, so
  a rerun with the same arguments continues and one with other arguments
  is refused;
* :func:`fingerprint` hashes arrays and files into a short identity.

Reading: :func:`read_npz` opens an ``.npz`` without pickles and turns every
way it can be broken (missing, a folder, truncated, foreign, missing arrays,
NaN) into a :class:`FileFormatError` naming the file and the fix.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import zipfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from simulators.atomic import refuse_special, write_json
from simulators.errors import AssetError, OutputError, PastaError

RUN_FILE = ".pasta-run.json"


class FileFormatError(AssetError, ValueError):
    """A file is missing, unreadable or not what it should be; the message names it and the fix."""


class BusyError(PastaError, RuntimeError):
    """Another process is writing the same output."""


def code_version() -> str:
    """The installed pasta-t2i version (``"unknown"`` when run from a bare checkout)."""
    from importlib import metadata

    try:
        return metadata.version("pasta-t2i")
    except metadata.PackageNotFoundError:  # pragma: no cover - bare checkout
        return "unknown"


def check_output_file(path: str | os.PathLike, what: str = "output") -> Path:
    """Check, before any work, that ``path`` can be written as a file the way the project writes files.

    The check makes (and removes) a file of the name the atomic writer will
    use next to ``path``, so a place where files cannot be made (``/proc``,
    a read-only disk) or a name too long for the file system fails now, not
    after the work.

    Raises:
        OutputError: ``path`` is a folder or a special file (a device, a
            pipe), or its folder cannot be created or written, or the name
            is refused; the message names the path and what to do.
    """
    import tempfile

    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{what} {str(path)!r} is a folder; give a file path (e.g. {str(path / 'out')!r})")
    refuse_special(path, what)
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the folder of {what} {str(path)!r}: {exc.strerror or exc}") from exc
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputError(f"{what} {str(path)!r} exists and is not writable; choose another path")
    try:
        fd, probe = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.", suffix=path.suffix)
    except OSError as exc:
        raise OutputError(f"{what} {str(path)!r} cannot be written there ({exc.strerror or exc}); choose another "
                          "path") from exc
    os.close(fd)
    os.unlink(probe)
    return path


class WriteLock:
    """An exclusive lock on ``<target>.lock`` for the duration of a ``with`` block.

    A second process asking for the same lock gets :class:`BusyError` at
    once (no waiting). The lock dies with its process, so a killed run
    leaves nothing that blocks a rerun; the lock file itself stays (empty).

    Args:
        target: The output file or folder being written (its real path is
            locked, so two writers reaching it through different links meet).
    """

    def __init__(self, target: str | os.PathLike):
        target = Path(target).resolve()  # one lock however the output is reached (through a symlink, say)
        self.path = target.parent / f"{target.name}.lock"
        self._fh: Any = None

    def __enter__(self) -> WriteLock:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a+")
        try:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            self._fh.close()
            self._fh = None
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise BusyError(f"another process is writing {str(self.path)[:-5]!r} (it holds "
                                f"{str(self.path)!r}); wait for it to finish or choose another output") from exc
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self._fh is not None:
            import fcntl

            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


def claim_output_dir(folder: str | os.PathLike, identity: dict[str, Any], overwrite: bool = False,
                     inputs: Sequence[str | os.PathLike | None] = ()) -> bool:
    """Make ``folder`` this run's output, or refuse.

    * empty or missing: claimed (the identity is written to ``.pasta-run.json``);
    * holds ``.pasta-run.json`` with the same identity: claimed again (a
      rerun continues or redoes the same work);
    * anything else: refused, unless ``overwrite`` (then its contents are
      removed; but never when one of the run's ``inputs`` lies inside).

    Args:
        folder: The output folder.
        identity: JSON-ready description of the run (command, settings,
            data fingerprint); ``code_version`` is added.
        overwrite: Remove another run's files instead of refusing.
        inputs: The files and folders the run reads (``None`` entries are
            skipped): ``overwrite`` never deletes one of them.

    Returns:
        Whether the folder already belonged to this run (a rerun).

    Raises:
        OutputError: ``folder`` is a file, or holds other files and
            ``overwrite`` is false, or would delete one of ``inputs``.
    """
    folder = Path(folder)
    identity = {**identity, "code_version": code_version()}
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"output folder {str(folder)!r} is a file; give a folder path")
    marker = folder / RUN_FILE
    entries = [p for p in folder.iterdir() if not p.name.endswith(".lock")] if folder.is_dir() else []
    if entries:
        previous = _read_identity(marker)
        if previous == identity:
            return True
        if not overwrite:
            why = ("was written by a run with other arguments" if previous is not None
                   else "holds files that no pasta run of this kind wrote")
            raise OutputError(f"output folder {str(folder)!r} {why}; choose another folder, or pass "
                              "--overwrite to replace its contents")
        inside = [str(p) for p in inputs if p is not None and _within(Path(p), folder)]
        if inside:
            raise OutputError(f"--overwrite would delete {inside[0]!r}, an input of this run inside the output "
                              f"folder {str(folder)!r}; write to another folder")
        for p in entries:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    write_json(marker, identity)
    return False


def _within(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies inside it (links resolved)."""
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def claim_output_file(path: str | os.PathLike, identity: dict[str, Any], overwrite: bool,
                      read_identity: Callable[[Path], dict | None]) -> None:
    """Make the file ``path`` this run's output, or refuse: the single-file twin of :func:`claim_output_dir`.

    A missing file is claimed. An existing one is this run's if
    ``read_identity(path)`` (what the file says made it) equals ``identity``
    (a rerun redoes the same work); anything else is refused unless
    ``overwrite``. The identity goes into the file when it is written: the
    writer records it (e.g. in a checkpoint's header).

    Raises:
        OutputError: ``path`` is a folder or a special file, or holds another
            run's result and ``overwrite`` is false.
    """
    path = Path(path)
    check_output_file(path, "output")
    if not path.exists() or overwrite:
        return
    try:
        previous = read_identity(path)
    except Exception:  # any unreadable file is "not ours"
        previous = None
    if previous != identity:
        why = "was written by a run with other arguments" if previous else "is a file no run of this command wrote"
        raise OutputError(f"{str(path)!r} {why}; choose another path, or pass --overwrite to replace it")


def _read_identity(marker: Path) -> dict | None:
    try:
        return json.loads(marker.read_text())
    except (OSError, ValueError):
        return None


def fingerprint(arrays: Iterable[np.ndarray] = (), files: Sequence[str | os.PathLike] = ()) -> str:
    """A short SHA-256 of arrays (shape, dtype and bytes) and of files' contents."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    for f in files:
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def read_npz(path: str | os.PathLike, what: str, required: Sequence[str] = (), fix: str = "",
             finite: Sequence[str] = (), error: type[Exception] | None = None) -> dict[str, np.ndarray]:
    """Read every array of an ``.npz`` file, never unpickling, with errors that name the problem.

    Args:
        path: The file.
        what: What the file should be, for messages ("a user-model checkpoint").
        required: Arrays that must be present.
        fix: How to make a good file, appended to messages.
        finite: Float arrays that must hold no NaN or infinity.
        error: The exception class to raise (default :class:`FileFormatError`).

    Raises:
        FileFormatError: Missing, a folder, truncated or not ``.npz``, holding
            pickled objects, lacking a required array, or non-finite values.
    """
    try:
        return _read_npz(Path(path), what, required, fix, finite)
    except FileFormatError as exc:
        if error is None or isinstance(exc, error):
            raise
        raise error(str(exc)) from exc.__cause__


def _read_npz(path: Path, what: str, required: Sequence[str], fix: str,
              finite: Sequence[str]) -> dict[str, np.ndarray]:
    tail = f"; {fix}" if fix else ""
    if path.is_dir():
        raise FileFormatError(f"{str(path)!r} is a folder, not {what}{tail}")
    if not path.is_file():
        raise FileFormatError(f"{what} {str(path)!r} does not exist{tail}")
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise FileFormatError(f"{path}: cannot read {what} ({exc.strerror or exc}){tail}") from exc
    if magic != b"PK\x03\x04":
        kind = "empty" if not magic else "not an .npz archive"
        raise FileFormatError(f"{path}: not {what} ({kind}){tail}")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (zipfile.BadZipFile, EOFError) as exc:
        raise FileFormatError(f"{path}: not {what} (truncated or not an .npz archive: {exc}){tail}") from exc
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "pickle" in str(exc).lower():
            raise FileFormatError(f"{path}: holds pickled objects, which are never loaded; not {what}{tail}") \
                from exc
        raise FileFormatError(f"{path}: not {what} ({exc}){tail}") from exc
    except OSError as exc:
        raise FileFormatError(f"{path}: cannot read {what} ({exc}){tail}") from exc
    missing = [k for k in required if k not in arrays]
    if missing:
        raise FileFormatError(f"{path}: not {what} (it lacks arrays {', '.join(missing)}){tail}")
    for k in finite:
        a = arrays.get(k)
        if a is not None and a.dtype.kind == "f" and not np.isfinite(a).all():
            raise FileFormatError(f"{path}: array {k!r} holds NaN or infinite values; the file is damaged{tail}")
    return arrays
