"""Helpers shared by the benchmark scripts: machine facts and atomic JSON output."""

from __future__ import annotations

import os
import platform

import numpy as np

from simulators.atomic import atomic_path, write_json

__all__ = ["atomic_path", "machine", "table", "write_json"]


def machine() -> dict:
    """Facts about the machine a figure was measured on."""
    return {"python": platform.python_version(), "numpy": np.__version__,
            "cpu_count": os.cpu_count(), "platform": platform.platform()}


def table(rows: list[dict], columns: list[str]) -> str:
    """A markdown table of ``rows`` restricted to ``columns``."""
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        out.append("| " + " | ".join(str(r.get(c, "")) for c in columns) + " |")
    return "\n".join(out)
