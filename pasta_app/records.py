"""The app's data folder: access tokens, sessions and turns, appended and flushed one record at a time.

Layout (a preference-data folder, :mod:`simulators.preferences.data`, plus
the app's own files)::

    DIR/
      access.json       SHA-256 of each rater's invite token (an empty one: revoked), the
                        admin token (kept so the admin link can be printed again) and the
                        key of the app's turn tokens and completion codes; readable by its
                        owner only, never exported
      sessions.jsonl    {"session", "rater", "agent", "seed", "prompt", "world", "created"} per session
      choices.jsonl     one record per turn: the preference format's choice fields
                        (user_id = rater, trajectory_id = session, turn, initial_prompt,
                        prompts, images, chosen) and the app's: session, agent, answer
                        (Better / Same / Worse from turn 2 on), slate, shown_at, chosen_at
      embeddings/       one .npz per turn: the shown prompts' and images' embeddings

A turn is recorded by writing its embeddings file (to a temporary name, then
renamed), then appending its line to ``choices.jsonl`` in one write, flushed
and synced: the line is what makes the turn recorded. A server killed at any
moment loses at most the turn in flight; a write that stops short (a full
disk) is cut back and reported, so no turn is acknowledged that is not on
disk; before every append and at :meth:`DataFolder.open` a last line cut
short is dropped (a complete record that lacks only its newline is kept),
and embeddings files no line refers to are ignored.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from simulators.atomic import atomic_path, dumps, write_json
from simulators.errors import PastaError
from simulators.files import FileFormatError

ACCESS, SESSIONS, CHOICES, EMBEDDINGS = "access.json", "sessions.jsonl", "choices.jsonl", "embeddings"
#: The answers a rater gives from turn 2 on.
ANSWERS = ("Better", "Same", "Worse")


def token_hash(token: str) -> str:
    """What is stored of a token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class DataFolder:
    """Appends sessions and turns to a data folder; reads them back to resume.

    Use :meth:`open`. Thread-safe: one lock serialises appends.
    """

    def __init__(self, root: Path):
        self.root = root
        self.lock = threading.Lock()
        self._access: tuple[int, dict[str, Any]] | None = None

    @classmethod
    def open(cls, root: str | os.PathLike) -> DataFolder:
        """Open (or create) a data folder, its files' tails repaired (:func:`repair_tail`)."""
        folder = cls(Path(root))
        if folder.root.exists() and not folder.root.is_dir():
            raise FileFormatError(f"{str(root)!r} is a file, not a folder; give --data a folder for the records")
        folder.root.mkdir(parents=True, exist_ok=True)
        (folder.root / EMBEDDINGS).mkdir(exist_ok=True)
        for name in (SESSIONS, CHOICES):
            repair_tail(folder.root / name)
        return folder

    # Access ---------------------------------------------------------------------------------------

    def access(self) -> dict[str, Any]:
        """``{"admin": hash, "admin_token", "key", "raters": {rater: hash}}`` (empty if no tokens were made yet).

        Read again only when the file changes (every request asks).
        """
        path = self.root / ACCESS
        try:
            stamp = path.stat().st_mtime_ns
        except FileNotFoundError:
            return {"admin": None, "raters": {}}
        if self._access is None or self._access[0] != stamp:
            try:
                table = json.loads(path.read_text())
                if not isinstance(table, dict) or not isinstance(table.get("raters", {}), dict):
                    raise ValueError("not a table of token hashes")
                table.setdefault("raters", {})
            except (OSError, ValueError) as exc:
                if self._access is None:
                    raise FileFormatError(f"{path}: damaged ({exc}); restore it, or delete it and make new "
                                          "invites with pasta serve invite --data DIR --raters N") from exc
                warnings.warn(f"{path} is damaged ({exc}); the tokens read before it changed still apply",
                              RuntimeWarning, stacklevel=2)
                return self._access[1]  # keep the last good table; try again when the file changes
            self._access = (stamp, table)
        return self._access[1]

    def _change_access(self, change) -> Any:
        """Apply ``change(table)`` to a copy of the access table, write it (owner-only), return what it returns."""
        with self.lock:
            access = json.loads(json.dumps(self.access()))  # a copy: the cached one is not changed in place
            if not access.get("admin_token"):  # the admin token and the key exist from the first change on
                access["admin_token"] = secrets.token_urlsafe(24)
                access["admin"] = token_hash(access["admin_token"])
            access.setdefault("key", secrets.token_hex(32))
            out = change(access)
            write_json(self.root / ACCESS, access, mode=0o600)  # readable by its owner only
            self._access = None
            return out

    def add_raters(self, count: int) -> dict[str, str]:
        """Make ``count`` rater invite tokens (and the admin token and the key, if not made yet).

        Returns:
            The new raters' tokens in clear, ``{rater id: token}``; only their hashes are stored.
        """
        if count < 0:
            raise ValueError(f"the number of raters must be >= 0, got {count}")

        def add(access: dict[str, Any]) -> dict[str, str]:
            new: dict[str, str] = {}
            start = len(access["raters"])  # revoked raters keep their entry, so ids are never reused
            for i in range(count):
                rater = f"rater-{start + i + 1:04d}"
                new[rater] = secrets.token_urlsafe(24)
                access["raters"][rater] = token_hash(new[rater])
            return new

        return self._change_access(add)

    def revoke(self, rater: str) -> None:
        """Invalidate ``rater``'s invite (their records stay; the id is not reused).

        Raises:
            KeyError: No such rater.
        """

        def drop(access: dict[str, Any]) -> None:
            if rater not in access["raters"]:
                raise KeyError(f"no rater {rater!r}")
            access["raters"][rater] = ""

        self._change_access(drop)

    def admin_token(self) -> str:
        """The admin's token in clear (made with the key on first use)."""
        token = self.access().get("admin_token")
        return token if token else self._change_access(lambda access: access["admin_token"])

    def key(self) -> bytes:
        """The folder's secret key (turn tokens and completion codes are made with it)."""
        key = self.access().get("key")
        return bytes.fromhex(key if key else self._change_access(lambda access: access["key"]))

    def mac(self, *parts: object, length: int = 16) -> str:
        """A keyed digest of ``parts``: ``length`` base-32 characters, the same across restarts."""
        digest = hmac.new(self.key(), "\x1f".join(map(str, parts)).encode("utf-8"), hashlib.sha256).digest()
        return base64.b32encode(digest).decode("ascii")[:length]

    def raters(self) -> dict[str, bool]:
        """Every rater ever invited, and whether their invite still opens the app."""
        return {rater: bool(stored) for rater, stored in self.access()["raters"].items()}

    def who(self, token: str | None) -> str | None:
        """The rater id a token opens, ``"admin"`` for the admin token, or ``None``."""
        if not token or len(token) > 100:
            return None
        h = token_hash(token)
        access = self.access()
        if access.get("admin") and secrets.compare_digest(h, access["admin"]):
            return "admin"
        for rater, stored in access["raters"].items():
            if stored and secrets.compare_digest(h, stored):
                return rater
        return None

    # Records --------------------------------------------------------------------------------------

    def add_session(self, record: dict[str, Any]) -> None:
        """Append a session record (flushed and synced)."""
        with self.lock:
            _append(self.root / SESSIONS, record)

    def add_turn(self, record: dict[str, Any], prompt_keys: list[str], prompt_emb: np.ndarray,
                 image_keys: list[str], image_emb: np.ndarray) -> None:
        """Record a turn: its embeddings file, then its line (flushed and synced)."""
        name = f"{record['trajectory_id']}-{record['turn']:02d}.npz"
        with atomic_path(self.root / EMBEDDINGS / name) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, prompt_keys=np.array(prompt_keys), prompt_emb=prompt_emb.astype(np.float32),
                     image_keys=np.array(image_keys), image_emb=image_emb.astype(np.float32))
        with self.lock:
            _append(self.root / CHOICES, record)

    def sessions(self) -> list[dict[str, Any]]:
        """Every session record, in order."""
        return read_jsonl(self.root / SESSIONS)

    def turns(self) -> list[dict[str, Any]]:
        """Every turn record, in order."""
        return read_jsonl(self.root / CHOICES)

    def export(self, extra: dict[str, str] | None = None) -> bytes:
        """The records and embeddings as a zip archive (for the admin), with ``extra`` files ``{name: text}``."""
        import io
        import zipfile

        buf = io.BytesIO()
        with self.lock, zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(self.root.rglob("*")):
                if path.is_file() and path.name != ACCESS and not path.name.endswith(".tmp"):
                    zf.write(path, path.relative_to(self.root).as_posix())
            for name, text in (extra or {}).items():
                zf.writestr(name, text)
        return buf.getvalue()


def now() -> float:
    """Wall-clock time, rounded to milliseconds (records' timings)."""
    return round(time.time(), 3)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a ``.jsonl`` file (none if it does not exist).

    Raises:
        FileFormatError: A line is not a JSON object; the message names the file and the line.
    """
    if not path.is_file():
        return []
    out = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise FileFormatError(f"{path}:{number}: not a JSON record ({exc}); the line is damaged: remove it "
                                  "(the turn it held is lost) and start again") from exc
        if not isinstance(record, dict):
            raise FileFormatError(f"{path}:{number}: not a JSON object")
        out.append(record)
    return out


class RecordError(PastaError, OSError):
    """A record could not be written whole (a full disk): nothing of it is kept, the file is as before."""


def _append(path: Path, record: dict[str, Any]) -> None:
    """Append one record as one line: written whole and synced, or not at all.

    The file's tail is repaired first (:func:`repair_tail`). A write that
    stops short (a full disk) is undone by cutting the file back to its size
    before, and reported, so the caller does not acknowledge a turn that is
    not on disk.

    Raises:
        RecordError: The line could not be written or synced; the file is as before.
    """
    line = (dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
    repair_tail(path)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        try:
            written = os.write(fd, line)  # one write: a reader sees the whole line or, after a kill, a cut one
            if written != len(line):
                raise OSError(errno.ENOSPC, f"wrote {written} of {len(line)} bytes")
            os.fsync(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
                os.fsync(fd)
            raise RecordError(f"{path}: the record could not be written ({exc.strerror or exc}); nothing was "
                              "recorded: free some space and try again") from exc
    finally:
        os.close(fd)


def repair_tail(path: Path) -> None:
    """Make ``path`` end with a whole line: a last line a kill or a full disk cut short is dropped.

    A last line that is a complete record and lacks only its newline is
    kept (the newline is added); one that does not parse is cut.
    """
    if not path.is_file():
        return
    with open(path, "r+b") as fh:
        size = fh.seek(0, os.SEEK_END)
        if size == 0:
            return
        fh.seek(max(0, size - 1))
        if fh.read(1) == b"\n":
            return
        block = min(size, 1 << 20)
        fh.seek(size - block)
        tail = fh.read(block)
        start = tail.rfind(b"\n") + 1
        last = tail[start:]
        try:
            complete = isinstance(json.loads(last.decode("utf-8")), dict)
        except (ValueError, UnicodeDecodeError):
            complete = False
        if complete:
            fh.write(b"\n")
        else:
            fh.truncate(size - block + start)
        fh.flush()
        os.fsync(fh.fileno())
