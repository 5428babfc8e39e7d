"""What a trajectory dataset stores per episode, and how full observations are rebuilt from it.

An observation of PastaT2I holds about 20 KB, half of it history that earlier
observations already hold. A dataset stores, per episode of ``H`` turns,
only what is new at each point (``E`` episodes, ``C`` candidates, ``L``
columns, ``d``-dimensional embeddings):

================= ================== ===================================================
array             shape              what
================= ================== ===================================================
``candidates``    (E, H+1, C, d)     the candidate embeddings of observation ``t``
``last_images``   (E, H+1, L, d)     mean image embedding of each column shown at turn
                                     ``t-1`` (zero at ``t=0``)
``last_choice``   (E, H+1)           the column chosen at turn ``t-1`` (-1 at ``t=0``)
``actions``       (E, H, L)          the slate shown at turn ``t`` (repeats already filled
                                     by the env's rule, so the slate that was played)
``rewards``       (E, H)             reward of turn ``t``
``terminations``  (E, H)             ``True`` at the last turn
``truncations``   (E, H)             always ``False`` (no time limit)
``request``       (E, d)             the user's initial prompt
``seeds``         (E,)               the env seed of the episode
``user_type``     (E,)               the hidden user type (a label for analysis; never
                                     part of an observation)
``explored``      (E, H)             the slate was random (epsilon mixing), not the policy's
================= ================== ===================================================

Every other part of an observation is a function of these:
``current_prompt`` and ``history_prompts`` are the chosen candidates,
``history_slate_prompts`` the shown ones, ``history_images`` and
``history_choices`` come from ``last_images``/``last_choice``,
``history_rewards`` are the earlier ``rewards`` (every generated turn is
rated), ``candidate_categories`` is fixed by the world (stored once),
``turn`` and the masks follow from ``t``. :func:`full_observations` rebuilds them.

Embeddings are stored as ``float16`` by default: unit vectors in [-1, 1]
keep a relative error below 2^-11 (absolute below 2.5e-4), and the
dataset benchmark measures that agents choose the same slates on the
rounded observations. ``float32`` stores them exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from gymnasium import spaces

#: Per-episode arrays and their dtypes (embeddings take the dataset's precision).
EMBEDDING_ARRAYS = ("candidates", "last_images", "request")
ARRAY_DTYPES: dict[str, str] = {
    "last_choice": "int64", "actions": "int64", "rewards": "float64", "terminations": "bool",
    "truncations": "bool", "seeds": "int64", "user_type": "int64", "explored": "bool",
}
ARRAYS: tuple[str, ...] = ("candidates", "last_images", "last_choice", "actions", "rewards", "terminations",
                           "truncations", "request", "seeds", "user_type", "explored")
PRECISIONS = ("float16", "float32")


@dataclass(frozen=True)
class Layout:
    """The sizes of a dataset's arrays.

    Attributes:
        horizon: Turns per episode ``H``.
        num_candidates: Candidates per observation ``C``.
        slate_size: Columns per slate ``L``.
        dim: Embedding dimension ``d``.
        precision: ``"float16"`` or ``"float32"`` for embeddings.
    """

    horizon: int
    num_candidates: int
    slate_size: int
    dim: int
    precision: str = "float16"

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")

    def shapes(self, episodes: int) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """Shape and dtype of every array for ``episodes`` episodes."""
        E, H, C, L, d = episodes, self.horizon, self.num_candidates, self.slate_size, self.dim
        shape = {"candidates": (E, H + 1, C, d), "last_images": (E, H + 1, L, d), "last_choice": (E, H + 1),
                 "actions": (E, H, L), "rewards": (E, H), "terminations": (E, H), "truncations": (E, H),
                 "request": (E, d), "seeds": (E,), "user_type": (E,), "explored": (E, H)}
        return {k: (shape[k], np.dtype(self.precision if k in EMBEDDING_ARRAYS else ARRAY_DTYPES[k]))
                for k in ARRAYS}

    def bytes_per_episode(self) -> int:
        """Bytes one episode takes in the arrays."""
        return sum(int(np.prod(s[1:])) * dt.itemsize for s, dt in self.shapes(1).values())

    def observation_space(self) -> spaces.Dict:
        """The stored (compact) observation space, as a Minari dataset declares it."""
        C, L, d = self.num_candidates, self.slate_size, self.dim
        dt = np.dtype(self.precision).type
        return spaces.Dict({
            "candidates": spaces.Box(-1.0, 1.0, (C, d), dt),
            "last_images": spaces.Box(-1.0, 1.0, (L, d), dt),
            "last_choice": spaces.Discrete(L + 1, start=-1),
        })

    def action_space(self) -> spaces.MultiDiscrete:
        """The env's action space: a slate of ``L`` candidate indices."""
        return spaces.MultiDiscrete(np.full(self.slate_size, self.num_candidates))


def full_observations(arrays: dict[str, np.ndarray], categories: np.ndarray, t: int) -> dict[str, np.ndarray]:
    """Rebuild the env's observation ``t`` (``0..H``) of a batch of episodes.

    Args:
        arrays: Per-episode arrays of :data:`ARRAYS` with a leading episode axis
            (``candidates``, ``last_images``, ``last_choice``, ``actions``,
            ``rewards`` and ``request`` are read).
        categories: ``(C,)`` category of each candidate.
        t: Observation index.

    Returns:
        The observation dict of the env's observation space, batched over
        episodes, embeddings as ``float32``.
    """
    cands, images = arrays["candidates"], arrays["last_images"]
    choice, actions, request, rewards = arrays["last_choice"], arrays["actions"], arrays["request"], arrays["rewards"]
    E, horizon1, C, d = cands.shape
    H, L = horizon1 - 1, actions.shape[2]
    if not 0 <= t <= H:
        raise ValueError(f"observation index must be in 0..{H}, got {t}")
    rows = np.arange(E)[:, None]
    f32 = np.float32
    hist_slate_prompts = np.zeros((E, H, L, d), f32)
    hist_slate_images = np.zeros((E, H, L, d), f32)
    hist_prompts = np.zeros((E, H, d), f32)
    hist_images = np.zeros((E, H, d), f32)
    hist_choices = np.zeros((E, H), np.int64)
    mask = np.zeros((E, H), np.int8)
    hist_rewards = np.zeros((E, H), f32)
    for j in range(t):
        shown = cands[rows, j, actions[:, j]]  # (E, L, d)
        c = choice[:, j + 1]
        hist_slate_prompts[:, j] = shown
        hist_slate_images[:, j] = images[:, j + 1]
        hist_prompts[:, j] = shown[rows[:, 0], c]
        hist_images[:, j] = images[rows[:, 0], j + 1, c]
        hist_choices[:, j] = c
        mask[:, j] = 1
        hist_rewards[:, j] = rewards[:, j]
    return {
        "candidates": cands[:, t].astype(f32),
        "candidate_categories": np.broadcast_to(np.asarray(categories, np.int64), (E, C)).copy(),
        "action_mask": np.ones((E, C), np.int8),
        "turn": np.full(E, t, np.int64),
        "initial_prompt": request.astype(f32),
        "current_prompt": request.astype(f32) if t == 0 else hist_prompts[:, t - 1].copy(),
        "history_prompts": hist_prompts,
        "history_images": hist_images,
        "history_choices": hist_choices,
        "history_mask": mask,
        "history_rewards": hist_rewards,
        "history_rated": mask.copy(),
        "history_slate_prompts": hist_slate_prompts,
        "history_slate_images": hist_slate_images,
    }
