"""The EM-trained user model in numpy: a shared trunk with one linear head per type.

``s(k, p0, I) = head_k(f(p0, I))`` with shared features
``f(p0, I) = [I, p0 * I, relu(W [I, p0 * I] + b)]``: the image, its
elementwise agreement with the user's request ``p0`` (the initial prompt),
and a small learned non-linear part. A linear head over ``[I, p0 * I]``
alone already expresses "likes images near a taste direction, and images
that show what was asked for"; the hidden units let the model learn
interactions beyond that.

Training happens in torch (:mod:`simulators.users.em`); this module evaluates the
same function in numpy so the environment needs no torch. Checkpoints are
``.npz`` files (arrays plus a JSON header) read by both.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from simulators.atomic import atomic_path
from simulators.errors import AssetError, ShapeError
from simulators.files import read_npz
from simulators.jit import kernels
from simulators.users.user_model import UserModel

FORMAT = "pasta-user-model"
TRAIN_HINT = "train one with `pasta train-user-model`"
VERSION = 1
ARRAYS = ("trunk_w", "trunk_b", "head_w", "head_b", "prior")


@dataclass(frozen=True)
class TrunkHeadsUserModel(UserModel):
    """Numpy evaluation of the trunk-and-heads user model.

    Attributes:
        trunk_w: ``(h, 2d)`` hidden layer weights.
        trunk_b: ``(h,)`` hidden layer bias.
        head_w: ``(K, 2d + h)`` one linear head per type.
        head_b: ``(K,)`` head biases.
        info: Free-form provenance (data, training settings, metrics).
    """

    trunk_w: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    trunk_b: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    head_w: np.ndarray = field(default_factory=lambda: np.zeros((1, 2), np.float32))
    head_b: np.ndarray = field(default_factory=lambda: np.zeros(1, np.float32))
    info: dict = field(default_factory=dict)
    # Weight blocks derived in __post_init__ (see there).
    _w_img: np.ndarray = field(init=False, repr=False, compare=False, default_factory=lambda: np.zeros(0))
    _w_agree: np.ndarray = field(init=False, repr=False, compare=False, default_factory=lambda: np.zeros(0))
    _a: np.ndarray = field(init=False, repr=False, compare=False, default_factory=lambda: np.zeros(0))
    _c: np.ndarray = field(init=False, repr=False, compare=False, default_factory=lambda: np.zeros(0))
    _h: np.ndarray = field(init=False, repr=False, compare=False, default_factory=lambda: np.zeros(0))

    def __post_init__(self):
        super().__post_init__()
        for name in ("trunk_w", "trunk_b", "head_w", "head_b"):
            object.__setattr__(self, name, np.asarray(getattr(self, name), np.float32))
        h, two_d = self.trunk_w.shape
        K = self.num_types
        if two_d % 2 or self.trunk_b.shape != (h,) or self.head_w.shape != (K, two_d + h) \
                or self.head_b.shape != (K,):
            raise ShapeError(
                f"inconsistent user-model arrays: trunk_w {self.trunk_w.shape}, trunk_b "
                f"{self.trunk_b.shape}, head_w {self.head_w.shape}, head_b {self.head_b.shape} "
                f"for {K} types (expected (h, 2d), (h,), ({K}, 2d + h), ({K},))")
        d = two_d // 2
        # The weights split by input block, so no call concatenates features:
        # s_k = <I, a_k> + <p * I, c_k> + <relu(I W_I + (p * I) W_P + b), h_k> + bias_k.
        parts = {"_w_img": self.trunk_w[:, :d].T, "_w_agree": self.trunk_w[:, d:].T,
                 "_a": self.head_w[:, :d], "_c": self.head_w[:, d:two_d], "_h": self.head_w[:, two_d:]}
        for name, value in parts.items():
            object.__setattr__(self, name, np.ascontiguousarray(value))

    @property
    def dim(self) -> int:
        return int(self.trunk_w.shape[1] // 2)

    @property
    def hidden(self) -> int:
        """Hidden units of the trunk."""
        return int(self.trunk_w.shape[0])

    def _hidden(self, prompts: np.ndarray, images: np.ndarray, flat: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """``(agree, hidden)``: ``p * I`` and the trunk's hidden units, ``(..., M, d)`` and ``(..., M, h)``.

        Args:
            prompts: ``(..., d)`` requests.
            images: ``(..., M, d)`` images.
            flat: Run the products on the images flattened to 2-D: one BLAS
                call instead of a stack of tiny ``(M, d) @ (d, h)`` products,
                much faster for large batches, but the rounding of a row then
                depends on the batch size. (The environment scores through
                :meth:`type_scores`' compiled kernel, whose rows never depend
                on the batch.)
        """
        agree = images * prompts[..., None, :]
        if not flat:
            hid = images @ self._w_img
            hid += agree @ self._w_agree
        else:
            d = images.shape[-1]
            hid = (images.reshape(-1, d) @ self._w_img).reshape(*images.shape[:-1], -1)
            hid += (agree.reshape(-1, d) @ self._w_agree).reshape(hid.shape)
        hid += self.trunk_b
        np.maximum(hid, 0.0, out=hid)
        return agree, hid

    def features(self, prompts: np.ndarray, images: np.ndarray) -> np.ndarray:
        """``(..., M, 2d + h)`` shared features ``[I, p * I, hidden]`` of images ``(..., M, d)``."""
        agree, hid = self._hidden(prompts, images)
        return np.concatenate([images, agree, hid], axis=-1)

    def _scores(self, prompts, images):
        agree, hid = self._hidden(prompts, images, flat=True)
        d, h = images.shape[-1], hid.shape[-1]
        s = images.reshape(-1, d) @ self._a.T
        s += agree.reshape(-1, d) @ self._c.T
        s += hid.reshape(-1, h) @ self._h.T
        s += self.head_b
        return s.reshape(*images.shape[:-1], -1)

    def type_scores(self, prompts, images, types):
        """Scores ``(B, ..., M)`` for one type per batch row, by one compiled kernel.

        Each row is computed alone in a fixed order, so a user's scores do
        not depend on how many users are scored with it (single env ==
        vector env, bit for bit).
        """
        images = np.asarray(images, np.float32)
        B, M, d = images.shape[0], images.shape[-2], images.shape[-1]
        lead = images.shape[1:-2]
        imgs = np.ascontiguousarray(images.reshape(B, -1, M, d))
        reqs = np.asarray(prompts, np.float32)
        if reqs.shape != (*images.shape[:-2], d):
            reqs = np.broadcast_to(reqs, (*images.shape[:-2], d))
        out = np.empty(imgs.shape[:3], np.float32)
        kernels().trunk_heads_scores(reqs.reshape(B, -1, d), imgs, np.asarray(types, np.intp), self._w_img,
                                   self._w_agree, self.trunk_b, self._a, self._c, self._h, self.head_b, out)
        return out.reshape(B, *lead, M)

    def save(self, path: str | os.PathLike) -> None:
        """Write the checkpoint (``.npz`` arrays + JSON header) via a temp file and a rename."""
        header = {"format": FORMAT, "version": VERSION, "kind": "trunk-heads", "dim": self.dim,
                  "hidden": self.hidden, "num_types": self.num_types, "temperature": self.temperature,
                  "aggregation": self.aggregation, "type_names": list(self.type_names), "info": self.info}
        with atomic_path(path, suffix=".tmp") as tmp, open(tmp, "wb") as fh:
            np.savez(fh, header=np.array(json.dumps(header)), trunk_w=self.trunk_w, trunk_b=self.trunk_b,
                     head_w=self.head_w, head_b=self.head_b, prior=self.prior)

    @classmethod
    def load(cls, path: str | os.PathLike, dim: int | None = None) -> TrunkHeadsUserModel:
        """Read a checkpoint written by :meth:`save`.

        Args:
            path: The checkpoint.
            dim: If given, the embedding dimension the caller needs.

        Raises:
            AssetError: Missing file, not a checkpoint, unknown version, missing
                arrays, or a dimension other than ``dim``; the message says which.
        """
        path = Path(path)
        arrays = read_npz(path, "a user-model checkpoint", fix=TRAIN_HINT, error=AssetError,
                          finite=("trunk_w", "trunk_b", "head_w", "head_b", "prior"))
        if "header" not in arrays:
            raise AssetError(f"{path}: not a user-model checkpoint (no header)")
        try:
            header = json.loads(str(arrays["header"]))
        except ValueError as exc:
            raise AssetError(f"{path}: not a user-model checkpoint (unreadable header)") from exc
        if not isinstance(header, dict):
            raise AssetError(f"{path}: not a user-model checkpoint (its header is a {type(header).__name__}, not a "
                             "table)")
        if header.get("format") != FORMAT:
            raise AssetError(f"{path}: not a user-model checkpoint (format {header.get('format')!r})")
        if header.get("version") != VERSION:
            raise AssetError(f"{path}: checkpoint version {header.get('version')} is not supported "
                             f"(this pasta-t2i reads version {VERSION}); retrain or upgrade")
        missing = [a for a in ARRAYS if a not in arrays]
        if missing:
            raise AssetError(f"{path}: checkpoint lacks arrays {', '.join(missing)}")
        _check_header(path, header, arrays)
        if dim is not None and header["dim"] != dim:
            raise AssetError(f"{path}: the model takes {header['dim']}-d embeddings, this world uses "
                             f"{dim}-d ones; train a model on this world's embeddings")
        try:
            return cls(prior=arrays["prior"], temperature=float(header["temperature"]),
                       aggregation=header["aggregation"], type_names=tuple(header["type_names"]),
                       trunk_w=arrays["trunk_w"], trunk_b=arrays["trunk_b"], head_w=arrays["head_w"],
                       head_b=arrays["head_b"], info=header.get("info", {}))
        except (ShapeError, ValueError) as exc:
            raise AssetError(f"{path}: corrupt checkpoint ({exc})") from exc


#: Largest weight magnitude a sound checkpoint holds (trained weights are of order 1-100).
MAX_WEIGHT = 1e6


def _check_header(path: Path, header: dict, arrays: dict[str, np.ndarray]) -> None:
    """Raise :class:`AssetError` naming the field of a header that does not fit its arrays or is out of range."""
    def bad(field: str, why: str) -> AssetError:
        return AssetError(f"{path}: checkpoint header field {field!r} {why}; the file is damaged ({TRAIN_HINT})")

    temperature = header.get("temperature")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not \
            (np.isfinite(temperature) and temperature > 0):
        raise bad("temperature", f"is {temperature!r}, not a positive finite number")
    prior = arrays["prior"]
    names = header.get("type_names")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or len(names) != prior.size:
        raise bad("type_names", f"must list {prior.size} names (one per type), got {names!r}"[:200])
    d = arrays["trunk_w"].shape[1] // 2 if arrays["trunk_w"].ndim == 2 else None
    if header.get("dim") != d or isinstance(header.get("dim"), bool):
        raise bad("dim", f"is {header.get('dim')!r} but the arrays are {d}-d")
    if header.get("num_types", prior.size) != prior.size:
        raise bad("num_types", f"is {header.get('num_types')!r} but the prior has {prior.size} types")
    if not isinstance(header.get("info", {}), dict):
        raise bad("info", "is not a table")
    for name in ARRAYS:
        a = arrays[name]
        if a.dtype.kind != "f":
            raise AssetError(f"{path}: array {name!r} holds {a.dtype} values, not floats; the file is damaged")
        if a.size and float(np.abs(a).max()) > MAX_WEIGHT:
            raise AssetError(f"{path}: array {name!r} holds values of magnitude {float(np.abs(a).max()):.3g} "
                             f"(over {MAX_WEIGHT:g}); the file is damaged ({TRAIN_HINT})")


def checkpoint_run(path: str | os.PathLike) -> dict | None:
    """The run identity a checkpoint's header records (``None`` for a file without one)."""
    arrays = read_npz(path, "a user-model checkpoint", fix=TRAIN_HINT, error=AssetError)
    header = json.loads(str(arrays["header"])) if "header" in arrays else {}
    run = header.get("info", {}).get("run") if isinstance(header, dict) else None
    return run if isinstance(run, dict) else None
