"""Helpers shared by the benchmark scripts: machine facts and atomic JSON output."""

from __future__ import annotations

import json
import os
import platform
import tempfile
from pathlib import Path

import numpy as np


def machine() -> dict:
    """Facts about the machine a figure was measured on."""
    return {"python": platform.python_version(), "numpy": np.__version__,
            "cpu_count": os.cpu_count(), "platform": platform.platform()}


def write_json(path: str | os.PathLike, payload: dict) -> None:
    """Write ``payload`` as JSON via a temp file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".json")
    with os.fdopen(fd, "w") as fh:
        json.dump(payload, fh, indent=2)
    os.replace(tmp, path)


def table(rows: list[dict], columns: list[str]) -> str:
    """A markdown table of ``rows`` restricted to ``columns``."""
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        out.append("| " + " | ".join(str(r.get(c, "")) for c in columns) + " |")
    return "\n".join(out)
