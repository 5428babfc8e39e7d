"""Loading user-model checkpoints of any kind: EM-trained or hand-set taste models."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from simulators.errors import AssetError
from simulators.neural_user_model import TrunkHeadsUserModel
from simulators.user_model import TasteUserModel, UserModel


def load_user_model(path: str | os.PathLike, dim: int | None = None) -> UserModel:
    """Load any user-model checkpoint: an EM-trained model or a hand-set taste model.

    Args:
        path: The checkpoint.
        dim: If given, the embedding dimension the caller needs.

    Raises:
        AssetError: Missing, unreadable or incompatible checkpoint; the message says which.
    """
    path = Path(path)
    if not path.is_file():
        raise AssetError(f"user-model checkpoint {str(path)!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            is_taste = "meta" in data.files
    except (OSError, ValueError) as exc:
        raise AssetError(f"{path}: not a user-model checkpoint (cannot read it as .npz: {exc})") from exc
    model = TasteUserModel.load(path) if is_taste else TrunkHeadsUserModel.load(path, dim)
    if dim is not None and model.dim != dim:
        raise AssetError(f"{path}: the model takes {model.dim}-d embeddings, not {dim}-d")
    return model
