"""Loading user-model checkpoints of any kind: EM-trained or hand-set taste models."""

from __future__ import annotations

import os
from pathlib import Path

from simulators.errors import AssetError
from simulators.files import read_npz
from simulators.users.neural import TRAIN_HINT, TrunkHeadsUserModel
from simulators.users.user_model import TasteUserModel, UserModel


def load_user_model(path: str | os.PathLike, dim: int | None = None) -> UserModel:
    """Load any user-model checkpoint: an EM-trained model or a hand-set taste model.

    Args:
        path: The checkpoint.
        dim: If given, the embedding dimension the caller needs.

    Raises:
        AssetError: Missing, unreadable or incompatible checkpoint; the message says which.
    """
    path = Path(path)
    is_taste = "meta" in read_npz(path, "a user-model checkpoint", fix=TRAIN_HINT, error=AssetError)
    model = TasteUserModel.load(path) if is_taste else TrunkHeadsUserModel.load(path, dim)
    if dim is not None and model.dim != dim:
        raise AssetError(f"{path}: the model takes {model.dim}-d embeddings, not {dim}-d")
    return model
