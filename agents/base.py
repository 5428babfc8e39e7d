"""The agent interface: anything with ``reset`` and ``act`` can be evaluated.

Agents act on *batched* observations (a leading ``num_envs`` axis, as the
vector env returns them) and return slates of shape ``(num_envs, L)``.
:meth:`Agent.act` also accepts a single env's observation (no batch axis)
and then returns one slate ``(L,)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pasta_env.config import EnvConfig
from pasta_env.worlds import World


class Agent:
    """Base class of slate policies.

    Args:
        world: The world the agent plays in (its user model, categories...).
        config: The MDP sizes.
        seed: Seed of the agent's own randomness.
    """

    name = "agent"
    #: Whether the agent needs the hidden user type (``info["user_type"]``). The
    #: evaluation harness shows privileged information only to agents that say so.
    privileged = False
    #: Whether the agent is built from a model file (named ``NAME:MODEL``, built by ``load``).
    needs_model = False

    def __init__(self, world: World, config: EnvConfig, seed: int | None = None):
        self.world = world
        self.config = config
        self.rng = np.random.default_rng(seed)

    def reset(self, seed: int | None = None) -> None:
        """Forget everything episode-specific; reseed if ``seed`` is given."""
        if seed is not None:
            self.rng = np.random.default_rng(seed)

    def act(self, obs: dict[str, np.ndarray], info: dict[str, Any] | None = None) -> np.ndarray:
        """Choose slates.

        Args:
            obs: A batched observation (or a single env's).
            info: The env's info of the last step (batched, or a single env's).

        Returns:
            ``(num_envs, L)`` candidate indices, or ``(L,)`` for a single env.
        """
        single = np.asarray(obs["candidates"]).ndim == 2
        if single:
            obs = {k: np.asarray(v)[None] for k, v in obs.items()}
            info = {k: (v if k == "candidate_texts" else np.asarray([v])) for k, v in (info or {}).items()
                    if k in ("user_type", "candidate_texts")}
        slates = self.act_batch(obs, info or {})
        return slates[0] if single else slates

    def act_batch(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray:
        """Choose ``(num_envs, L)`` slates for a batched observation."""
        raise NotImplementedError


def best_per_category(values: np.ndarray, categories: np.ndarray, num_categories: int) -> tuple:
    """For each category, the candidate with the highest value.

    Args:
        values: ``(N, C)`` candidate values.
        categories: ``(N, C)`` category of each candidate.
        num_categories: Number of categories.

    Returns:
        ``(index, value)``, each ``(N, num_categories)``; a category without
        candidates gets value ``-inf``.
    """
    masked = np.where(categories[:, None, :] == np.arange(num_categories)[None, :, None],
                      values[:, None, :], -np.inf)
    index = masked.argmax(axis=2)
    return index, np.take_along_axis(masked, index[..., None], axis=2)[..., 0]


def top_diverse(values: np.ndarray, categories: np.ndarray, slate_size: int,
                num_categories: int) -> np.ndarray:
    """Top-``L`` candidates by value with at most one per category.

    When there are fewer categories than slate columns, the remaining
    columns repeat the best candidate.
    """
    index, best = best_per_category(values, categories, num_categories)
    order = np.argsort(-best, axis=1, kind="stable")
    picks = np.take_along_axis(index, order, axis=1)
    if picks.shape[1] < slate_size:
        pad = np.repeat(picks[:, :1], slate_size - picks.shape[1], axis=1)
        picks = np.concatenate([picks, pad], axis=1)
    return picks[:, :slate_size]
