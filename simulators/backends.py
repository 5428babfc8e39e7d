"""Shared helpers of the parts with weights: optional imports with install hints, and torch devices."""

from __future__ import annotations

import importlib
from typing import Any

from simulators.errors import DependencyNotInstalled

#: The extra that installs each optional module.
EXTRAS = {
    "torch": "clip", "open_clip": "openclip", "diffusers": "diffusers", "transformers": "lmm",
    "sentence_transformers": "minilm", "PIL": "clip", "ray": "ray",
    "fastapi": "serve", "uvicorn": "serve",
}


def require(module: str, what: str) -> Any:
    """Import an optional module, or raise :class:`DependencyNotInstalled` naming the extra to install.

    Args:
        module: Module to import, e.g. ``"open_clip"``.
        what: What needs it, for the message (e.g. ``"the open_clip encoder"``).
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        extra = EXTRAS.get(module.split(".")[0], "clip")
        raise DependencyNotInstalled(f"{what} needs {module.split('.')[0]}, which is not installed; install it "
                                     f"with pip install 'pasta-t2i[{extra}]'") from exc


def torch_device(device: str | None = None):
    """A ``torch.device``: ``None`` or ``"auto"`` picks the GPU when there is one, else the CPU."""
    torch = require("torch", "this backend")
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def torch_dtype(name: str | None, device) -> Any:
    """A torch dtype by name (``"float32"``, ``"float16"``, ``"bfloat16"``); ``None``: bf16 on a GPU, fp32 on a CPU."""
    torch = require("torch", "this backend")
    if name is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        dtype = getattr(torch, name)
    except AttributeError:
        dtype = None
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unknown dtype {name!r}; use float32, float16 or bfloat16")
    return dtype
