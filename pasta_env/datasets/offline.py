"""The bridge to d3rlpy: a dataset as an ``MDPDataset`` with episodes aligned as the env played them.

d3rlpy's own Minari loader joins episodes end to end and puts the last
observation of one episode at the start of the next; this converter builds
every episode from its own arrays: the ``H`` observations before each
action (d3rlpy keeps no observation after a terminal step), the actions,
the rewards and ``terminals`` set on the last turn (``timeouts`` never: the
horizon ends the episode).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pasta_env.config import EnvConfig
from pasta_env.datasets.dataset import TrajectoryDataset
from pasta_env.datasets.layout import Layout
from pasta_env.spaces import observation_space
from simulators.backends import require

#: The observation keys in the order they are flattened by default.
OBSERVATION_KEYS: tuple[str, ...] = (
    "candidates", "candidate_categories", "action_mask", "turn", "initial_prompt", "current_prompt",
    "history_prompts", "history_images", "history_choices", "history_mask", "history_rewards", "history_rated",
    "history_slate_prompts", "history_slate_images",
)
ACTIONS = ("embeddings", "indices")


def flat_observation_layout(layout: Layout, keys: Sequence[str] = OBSERVATION_KEYS) -> dict[str, tuple[int, int,
                                                                                                    tuple[int, ...]]]:
    """Where each observation key sits in a flattened observation: ``{key: (start, stop, shape)}``.

    The shapes are the env's observation space's; the order is ``keys``'.
    """
    config = EnvConfig(num_candidates=layout.num_candidates, slate_size=layout.slate_size, horizon=layout.horizon)
    shapes = {k: tuple(space.shape or ()) for k, space in observation_space(config, layout.dim, 1).spaces.items()}
    out, start = {}, 0
    for k in keys:
        if k not in shapes:
            raise ValueError(f"unknown observation key {k!r}; the keys are {', '.join(OBSERVATION_KEYS)}")
        size = int(np.prod(shapes[k], dtype=np.int64))
        out[k] = (start, start + size, shapes[k])
        start += size
    return out


def transition_arrays(dataset: TrajectoryDataset, keys: Sequence[str] = OBSERVATION_KEYS,
                      action: str = "embeddings") -> dict[str, np.ndarray]:
    """The arrays of :func:`to_d3rlpy`, without d3rlpy: ``observations`` ``(E*H, D)``, ``actions``,
    ``rewards`` ``(E*H, 1)``, ``terminals`` and ``timeouts`` ``(E*H,)``, episode-major."""
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {', '.join(ACTIONS)}, got {action!r}")
    layout = dataset.layout
    slots = flat_observation_layout(layout, keys)
    E, H, L, d = len(dataset), layout.horizon, layout.slate_size, layout.dim
    width = max((stop for _, stop, _ in slots.values()), default=0)
    obs = np.empty((E, H, width), np.float32)
    for t in range(H):
        o = dataset.observations(t)
        for k, (a, b, _) in slots.items():
            obs[:, t, a:b] = o[k].reshape(E, -1)
    arrays = dataset.arrays(("candidates", "actions", "rewards"))
    slates = arrays["actions"]
    if action == "embeddings":
        shown = np.take_along_axis(arrays["candidates"][:, :H], slates[..., None], axis=2)  # (E, H, L, d)
        acts = shown.astype(np.float32).reshape(E * H, L * d)
    else:
        acts = slates.astype(np.float32).reshape(E * H, L)
    terminals = np.zeros((E, H), np.float32)
    terminals[:, -1] = 1.0
    return {"observations": obs.reshape(E * H, width), "actions": acts,
            "rewards": arrays["rewards"].astype(np.float32).reshape(E * H, 1),
            "terminals": terminals.reshape(-1), "timeouts": np.zeros(E * H, np.float32)}


def to_d3rlpy(dataset: TrajectoryDataset, keys: Sequence[str] = OBSERVATION_KEYS, action: str = "embeddings") -> Any:
    """A d3rlpy ``MDPDataset`` of the dataset's selected episodes.

    Args:
        dataset: A loaded dataset (or a view of it).
        keys: Observation keys to flatten into d3rlpy's observation vector, in
            order (:func:`flat_observation_layout` says where each one lands).
        action: ``"embeddings"``: the shown prompts' embeddings, ``L * d``
            continuous values (PASTA's representation); ``"indices"``: the
            ``L`` candidate indices as floats.

    Memory: ``E * H`` observations of ``4 * D`` bytes (all keys: D = 4,999
    for the default sizes, about 20 KB a step, 3 GB for 30,000 episodes);
    pass fewer ``keys`` for less.
    """
    d3rlpy = require("d3rlpy", "the d3rlpy bridge")
    a = transition_arrays(dataset, keys, action)
    return d3rlpy.dataset.MDPDataset(
        observations=a["observations"], actions=a["actions"], rewards=a["rewards"], terminals=a["terminals"],
        timeouts=a["timeouts"], action_space=d3rlpy.ActionSpace.CONTINUOUS, action_size=a["actions"].shape[1])
