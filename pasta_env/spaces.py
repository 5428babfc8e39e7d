"""Observation and action spaces of PastaT2I, and action validation."""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

from pasta_env.config import EnvConfig


def observation_space(config: EnvConfig, dim: int, num_categories: int = 5) -> spaces.Dict:
    """The single-environment observation space.

    Args:
        config: MDP sizes.
        dim: Embedding dimension ``d``.
        num_categories: Number of candidate categories.
    """
    C, H, L = config.num_candidates, config.horizon, config.slate_size

    def emb(*shape):
        return spaces.Box(-1.0, 1.0, shape=(*shape, dim), dtype=np.float32)

    return spaces.Dict({
        "candidates": emb(C),
        "candidate_categories": spaces.MultiDiscrete(np.full(C, num_categories)),
        "action_mask": spaces.MultiBinary(C),
        "turn": spaces.Discrete(H + 1),
        "initial_prompt": emb(),
        "current_prompt": emb(),
        "history_prompts": emb(H),
        "history_images": emb(H),
        "history_choices": spaces.MultiDiscrete(np.full(H, L)),
        "history_mask": spaces.MultiBinary(H),
        "history_slate_prompts": emb(H, L),
        "history_slate_images": emb(H, L),
    })


def action_space(config: EnvConfig) -> spaces.MultiDiscrete:
    """``MultiDiscrete([L_C] * L)``: the candidate index shown in each column."""
    return spaces.MultiDiscrete(np.full(config.slate_size, config.num_candidates))


def random_diverse_slates(categories: np.ndarray, slate_size: int, num_categories: int,
                          rng: np.random.Generator) -> np.ndarray:
    """Random slates with at most one candidate per category.

    Each slate takes ``slate_size`` random categories and a random candidate
    of each; with fewer categories than columns the categories repeat.

    Args:
        categories: ``(N, C)`` category of each candidate.
        slate_size: Columns ``L``.
        num_categories: Number of categories.
        rng: Source of the draws.

    Returns:
        ``(N, L)`` candidate indices.
    """
    n = categories.shape[0]
    keys = np.where(categories[:, None, :] == np.arange(num_categories)[None, :, None],
                    rng.random(categories.shape)[:, None, :], -1.0)
    best = keys.argmax(axis=2)  # a random candidate of each category, (N, num_categories)
    order = np.argsort(rng.random((n, num_categories)), axis=1)
    picks = np.take_along_axis(best, order, axis=1)
    return picks[:, :slate_size] if num_categories >= slate_size else np.resize(picks, (n, slate_size))


def validate_actions(action, batch: int | None, config: EnvConfig) -> np.ndarray:
    """Check slates and return them as an ``int64`` array.

    Args:
        action: A slate ``(L,)`` (``batch=None``) or slates ``(batch, L)``.
        batch: Number of environments, or ``None`` for a single slate.
        config: MDP sizes.

    Raises:
        ValueError: Wrong shape, a non-integer dtype (floats, NaN, bools,
            objects) or an index outside ``0..L_C-1``; the message names the
            problem and the allowed range.
    """
    arr = np.asarray(action)
    L, C = config.slate_size, config.num_candidates
    want = (L,) if batch is None else (batch, L)
    what = "slate" if batch is None else "slates"
    if arr.shape != want:
        raise ValueError(f"{what} must have shape {want} (candidate indices 0..{C - 1}), got {arr.shape}")
    if arr.dtype.kind not in "iu":
        extra = " (it contains NaN)" if arr.dtype.kind == "f" and np.isnan(arr).any() else ""
        raise ValueError(f"{what} must hold integers 0..{C - 1}, got dtype {arr.dtype}{extra}")
    if arr.size and (arr.min() < 0 or arr.max() >= C):
        bad = arr[(arr < 0) | (arr >= C)].flat[0]
        raise ValueError(f"slate index {bad} is out of range 0..{C - 1}")
    return arr.astype(np.int64, copy=False)
