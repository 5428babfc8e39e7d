"""Loading user-model checkpoints of any kind: EM-trained or hand-set taste models."""

from __future__ import annotations

import os
from pathlib import Path

from simulators.errors import AssetError
from simulators.files import read_npz
from simulators.users.neural import TRAIN_HINT, TrunkHeadsUserModel
from simulators.users.user_model import TasteUserModel, UserModel

#: The entry-point group through which other packages register user-model loaders:
#: ``kind = "module:load"`` with ``load(path, dim=None) -> UserModel``; ``KIND:PATH`` then loads with it.
ENTRY_POINT_GROUP = "pasta_t2i.user_models"


def user_model_kinds() -> tuple[str, ...]:
    """The user-model kinds other packages declare (``KIND:PATH`` loads a checkpoint with that kind's loader)."""
    from importlib.metadata import entry_points

    return tuple(sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)))


def load_user_model(path: str | os.PathLike, dim: int | None = None) -> UserModel:
    """Load any user-model checkpoint: an EM-trained model, a hand-set taste model, or a declared kind.

    Args:
        path: The checkpoint; ``KIND:PATH`` loads ``PATH`` with the loader a
            package declares under ``KIND`` (entry-point group
            ``pasta_t2i.user_models``).
        dim: If given, the embedding dimension the caller needs.

    Raises:
        AssetError: Missing, unreadable or incompatible checkpoint; the message says which.
    """
    kind, sep, rest = str(path).partition(":")
    if sep and kind in user_model_kinds():
        from importlib.metadata import entry_points

        (ep,) = [e for e in entry_points(group=ENTRY_POINT_GROUP) if e.name == kind]
        model = ep.load()(rest, dim=dim)
        if dim is not None and model.dim != dim:
            raise AssetError(f"{path}: the model takes {model.dim}-d embeddings, not {dim}-d")
        return model
    path = Path(path)
    is_taste = "meta" in read_npz(path, "a user-model checkpoint", fix=TRAIN_HINT, error=AssetError)
    model = TasteUserModel.load(path) if is_taste else TrunkHeadsUserModel.load(path, dim)
    if dim is not None and model.dim != dim:
        raise AssetError(f"{path}: the model takes {model.dim}-d embeddings, not {dim}-d")
    return model
