"""User models: K latent user types that score images and choose a slate column.

A user model scores an image ``I`` for each user type ``k`` against the
user's own request, the initial prompt ``p0`` they typed: ``s(k, p0, I)``
(PASTA's notation). The prompt the agent showed does not enter the score:
users judge what they see against what they asked for and their taste. A
column's utility aggregates its ``M`` image scores; the user picks a column
with probability ``softmax(tau * R)``.

:class:`UserModel` is the interface the environment and the agents use (numpy,
batch-first, shapes checked). :class:`TasteUserModel` is the hand-set planted
model of the synthetic world: each type has a taste vector in the embedding
space. The EM-trained model fills the same interface.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from simulators.atomic import atomic_path
from simulators.errors import AssetError, ShapeError, check_shape

AGGREGATIONS = ("mean", "max", "softmax")


def aggregate(scores: np.ndarray, how: str = "mean", axis: int = -1, beta: float = 1.0) -> np.ndarray:
    """Aggregate image scores into a column utility.

    Args:
        scores: Scores with the images on ``axis``.
        how: ``"mean"``, ``"max"`` or ``"softmax"`` (a smooth maximum,
            ``sum softmax(beta * s) * s``).
        axis: The image axis.
        beta: Sharpness of the ``"softmax"`` aggregation.

    Returns:
        ``scores`` reduced over ``axis``.
    """
    if how == "mean":
        return scores.sum(axis=axis) * (1.0 / scores.shape[axis])
    if how == "max":
        return scores.max(axis=axis)
    if how == "softmax":
        w = np.exp(beta * (scores - scores.max(axis=axis, keepdims=True)))
        return (w * scores).sum(axis=axis) / w.sum(axis=axis)
    raise ValueError(f"unknown aggregation {how!r}; choose one of {', '.join(AGGREGATIONS)}")


def choice_probabilities(utilities: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(temperature * utilities)`` over the last axis."""
    z = temperature * utilities
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


@dataclass(frozen=True)
class UserModel:
    """Interface of a user simulator with ``K`` latent types.

    Subclasses implement :meth:`_scores`; everything else is shared.

    Attributes:
        prior: ``(K,)`` probabilities of the user types.
        temperature: ``tau`` of the choice softmax.
        aggregation: How image scores become a column utility.
        type_names: A readable name per type.
    """

    prior: np.ndarray
    temperature: float
    aggregation: str = "mean"
    type_names: tuple[str, ...] = field(default=())

    def __post_init__(self):
        prior = np.asarray(self.prior, dtype=np.float64)
        if prior.ndim != 1 or prior.size == 0 or np.any(prior < 0) or not np.isclose(prior.sum(), 1):
            raise ValueError("prior must be a non-empty vector of non-negative numbers summing to 1")
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(
                f"unknown aggregation {self.aggregation!r}; choose one of {', '.join(AGGREGATIONS)}"
            )
        if not self.type_names:
            object.__setattr__(self, "type_names", tuple(f"type-{k}" for k in range(prior.size)))
        object.__setattr__(self, "prior", prior)

    @property
    def num_types(self) -> int:
        """Number of user types ``K``."""
        return int(self.prior.size)

    @property
    def dim(self) -> int:
        """Embedding dimension the model takes."""
        raise NotImplementedError

    def _scores(self, prompts: np.ndarray, images: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def scores(self, requests: np.ndarray, images: np.ndarray) -> np.ndarray:
        """Score images for every user type.

        Args:
            requests: ``(..., d)`` embeddings of the users' requests (initial
                prompts), one per group of images.
            images: ``(..., M, d)`` image embeddings.

        Returns:
            ``(..., M, K)`` scores ``s(k, p0, I)``.
        """
        d = self.dim
        check_shape("requests", requests, (*requests.shape[:-1], d))
        check_shape("images", images, (*requests.shape[:-1], None, d))
        return self._scores(requests, images)

    def utilities(self, requests: np.ndarray, images: np.ndarray) -> np.ndarray:
        """Column utilities ``(..., K)``: image scores aggregated over ``M``."""
        return aggregate(self.scores(requests, images), self.aggregation, axis=-2)

    def prompt_utilities(self, requests: np.ndarray, prompts: np.ndarray) -> np.ndarray:
        """Utility ``(..., K)`` of showing a prompt, judged by its embedding alone.

        A cheap estimate of the utility of a prompt's images for agents that
        plan before images exist: the prompt embedding stands in for its
        images.

        Args:
            requests: The users' requests, broadcastable to ``prompts``
                (e.g. ``(N, 1, d)`` against ``(N, C, d)``).
            prompts: ``(..., d)`` embeddings of the prompts to judge.
        """
        requests = np.broadcast_to(requests, prompts.shape)
        return self.scores(requests, prompts[..., None, :])[..., 0, :]

    def type_scores(self, requests: np.ndarray, images: np.ndarray, types: np.ndarray) -> np.ndarray:
        """Scores ``(B, ..., M)`` for one user type per batch row.

        Args:
            requests: ``(B, ..., d)`` request embeddings.
            images: ``(B, ..., M, d)`` image embeddings.
            types: ``(B,)`` user type of each row.
        """
        s = self.scores(requests, images)
        idx = np.asarray(types).reshape(-1, *([1] * (s.ndim - 1)))
        return np.take_along_axis(s, np.broadcast_to(idx, (*s.shape[:-1], 1)), axis=-1)[..., 0]

    def choice_probs(self, utilities: np.ndarray) -> np.ndarray:
        """Choice probabilities over the last axis (the slate's columns)."""
        return choice_probabilities(utilities, self.temperature)

    def log_likelihood(self, utilities: np.ndarray, choice: np.ndarray) -> np.ndarray:
        """Log probability of each type choosing ``choice``.

        Args:
            utilities: ``(..., K, L)`` column utilities for every type.
            choice: ``(...)`` chosen column indices.

        Returns:
            ``(..., K)`` log-likelihoods.
        """
        z = self.temperature * utilities
        z = z - z.max(axis=-1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
        idx = np.asarray(choice)[..., None, None]
        idx = np.broadcast_to(idx, (*logp.shape[:-1], 1))
        return np.take_along_axis(logp, idx, axis=-1)[..., 0]


@dataclass(frozen=True)
class TasteUserModel(UserModel):
    """A user type is a taste direction in the embedding space; every user has an intent.

    ``s(k, p0, I) = scale * <w_k, I> + intent * <p0, I> + bias_k``: every user
    wants images of what they asked for (the intent term), and a type likes
    images close to its taste. A request leaves most of the picture open
    (style, setting, light, mood); the taste term says how a type fills it.

    Attributes:
        tastes: ``(K, d)`` unit taste vectors.
        scale: Weight of the taste term.
        intent: Weight of fidelity to the user's request.
        bias: ``(K,)`` offset per type (empty: zeros).
    """

    tastes: np.ndarray = field(default_factory=lambda: np.zeros((1, 1), np.float32))
    scale: float = 10.0
    intent: float = 2.0
    bias: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))

    def __post_init__(self):
        super().__post_init__()
        tastes = np.asarray(self.tastes, dtype=np.float32)
        if tastes.ndim != 2 or tastes.shape[0] != self.num_types:
            raise ShapeError(
                f"tastes: expected shape ({self.num_types}, d) to match the prior, got {tastes.shape}"
            )
        bias = np.zeros(self.num_types, np.float32) if np.size(self.bias) == 0 else self.bias
        object.__setattr__(self, "tastes", tastes)
        object.__setattr__(self, "bias", np.asarray(bias, dtype=np.float32))

    @property
    def dim(self) -> int:
        return int(self.tastes.shape[1])

    def _scores(self, requests, images):
        taste = images @ (self.scale * self.tastes.T)
        fidelity = np.einsum("...md,...d->...m", images, requests)[..., None]
        return taste + self.intent * fidelity + self.bias

    def type_scores(self, requests: np.ndarray, images: np.ndarray, types: np.ndarray) -> np.ndarray:
        """Scores ``(B, ..., M)`` for one type per batch row, without the other types."""
        w = self.scale * self.tastes[types]
        w = w.reshape(w.shape[0], *([1] * (images.ndim - 2)), w.shape[1])
        x = np.einsum("...d,...d->...", images, w + self.intent * requests[..., None, :])
        return x + self.bias[types].reshape(-1, *([1] * (x.ndim - 1)))

    def save(self, path: str | os.PathLike) -> None:
        """Write the model to an ``.npz`` file (via a temp file and a rename)."""
        path = Path(path)
        meta = {"kind": "taste", "temperature": self.temperature, "aggregation": self.aggregation,
                "scale": self.scale, "intent": self.intent, "type_names": list(self.type_names)}
        with atomic_path(path, suffix=".tmp") as tmp, open(tmp, "wb") as fh:
            np.savez(fh, prior=self.prior, tastes=self.tastes, bias=self.bias,
                     meta=np.array(json.dumps(meta)))

    @classmethod
    def load(cls, path: str | os.PathLike) -> TasteUserModel:
        """Read a model written by :meth:`save`."""
        from simulators.files import read_npz

        data = read_npz(path, "a taste user model", required=("meta", "prior", "tastes", "bias"),
                        finite=("prior", "tastes", "bias"), fix="write one with .save()", error=AssetError)
        try:
            meta = json.loads(str(data["meta"]))
            if meta.get("kind") != "taste":
                raise AssetError(f"{path}: not a taste user model (kind {meta.get('kind')!r})")
            return cls(prior=data["prior"], temperature=meta["temperature"],
                       aggregation=meta["aggregation"], type_names=tuple(meta["type_names"]),
                       tastes=data["tastes"], scale=meta["scale"], intent=meta["intent"],
                       bias=data["bias"])
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise AssetError(f"{path}: cannot read a user model ({exc}); write one with .save()") from exc

