"""Observation and action spaces of PastaT2I, and action validation."""

from __future__ import annotations

from typing import Any, cast

import numpy as np
from gymnasium import spaces

from pasta_env.config import EnvConfig
from simulators.jit import lazy_module

#: :mod:`pasta_env.kernels` (numba), imported on the first call.
kernels = lazy_module("pasta_env.kernels")
#: Rewards are float32 values of any size (finite bounds: Gymnasium's checker warns of infinite ones).
_F32_MAX = float(np.finfo(np.float32).max)


def observation_space(config: EnvConfig, dim: int, num_categories: int) -> spaces.Dict:
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
        "history_rewards": spaces.Box(-_F32_MAX, _F32_MAX, shape=(H,), dtype=np.float32),
        "history_rated": spaces.MultiBinary(H),
        "history_slate_prompts": emb(H, L),
        "history_slate_images": emb(H, L),
    })


def batched_observation_space(single: spaces.Dict, n: int) -> spaces.Dict:
    """``single`` batched over ``n`` environments, with bounds shared, not copied.

    Gymnasium's ``batch_space`` stores every bound of every environment
    (about 40 KB per env here, 4 GB for 100,000 envs). The embedding boxes
    here have the same bounds for every environment, so their batched
    ``low``/``high``/``bounded_*`` arrays are read-only broadcast views of
    the single env's: a few hundred bytes per env remain (the categorical
    parts). ``contains``, ``sample`` and equality behave as with
    ``batch_space``.
    """
    from gymnasium.vector.utils import batch_space

    parts: dict[str, spaces.Space] = {}
    for key, space in single.spaces.items():
        if isinstance(space, spaces.Box):
            box = spaces.Box(space.low[None], space.high[None], dtype=cast(Any, space.dtype))
            shape = (n, *space.shape)
            box._shape = shape
            for attr in ("low", "high", "bounded_below", "bounded_above"):
                setattr(box, attr, np.broadcast_to(getattr(space, attr), shape))
            parts[key] = box
        else:
            parts[key] = batch_space(space, n)
    return spaces.Dict(parts)


def action_space(config: EnvConfig) -> spaces.MultiDiscrete:
    """``MultiDiscrete([L_C] * L)``: the candidate index shown in each column."""
    return spaces.MultiDiscrete(np.full(config.slate_size, config.num_candidates))


def distinct_slates(slates: np.ndarray, num_candidates: int) -> np.ndarray:
    """Make every slate a set of distinct candidates (what the env shows).

    The rule: a column that repeats the index of an earlier column is
    replaced by the lowest candidate index that appears nowhere in the
    slate; several such columns take the lowest free indices in column
    order. Slates without repeats are returned unchanged (the same array).
    One compiled kernel applies it to any number of slates.

    Args:
        slates: ``(N, L)`` int64 candidate indices in ``0..num_candidates-1``.
        num_candidates: ``L_C`` (at least ``L``).

    Returns:
        ``(N, L)`` slates whose entries are distinct within each row.
    """
    out = np.empty(slates.shape, np.int64)
    if kernels().distinct_slates(np.asarray(slates, np.int64), int(num_candidates), out) == 0:
        return slates
    return out


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
    if arr.size <= 64:  # a few slates: Python's min and max beat two array reductions
        values = arr.ravel().tolist()
        out_of_range = bool(values) and (min(values) < 0 or max(values) >= C)
    else:
        out_of_range = bool(arr.min() < 0 or arr.max() >= C)
    if out_of_range:
        bad = arr[(arr < 0) | (arr >= C)].flat[0]
        raise ValueError(f"slate index {bad} is out of range 0..{C - 1}")
    return arr.astype(np.int64, copy=False)
