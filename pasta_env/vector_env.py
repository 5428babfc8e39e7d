"""A native vector version of PastaT2I: N users simulated in one batched computation."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector.utils import batch_space

from pasta_env.config import EnvConfig
from pasta_env.core import BatchCore, ObservationBuffers, ShardedCore, forced_types
from pasta_env.env import EpisodeEndedError, setup
from pasta_env.render import render_frame, render_turn
from pasta_env.spaces import action_space, batched_observation_space, observation_space, validate_actions
from pasta_env.text import LazyTextBatch
from pasta_env.worlds import PromptsArg, World

try:  # Gymnasium >= 1.1 declares the autoreset mode in the metadata.
    from gymnasium.vector import AutoresetMode  # type: ignore[attr-defined]

    _NEXT_STEP: Any = AutoresetMode.NEXT_STEP
except ImportError:  # pragma: no cover - Gymnasium 1.0
    _NEXT_STEP = "NextStep"


def default_threads(num_envs: int) -> int:
    """Worker threads for ``num_envs`` users: one per 256, at most the CPU count and 8."""
    return max(1, min(num_envs // 256, os.cpu_count() or 1, 8))


class PastaT2IVectorEnv(gym.vector.VectorEnv):
    """``num_envs`` PastaT2I users advanced in lockstep by one array computation.

    Same arguments as :class:`pasta_env.env.PastaT2IEnv` plus ``num_envs``.
    Sub-environment ``i`` reset with ``seed=s`` follows exactly the
    trajectory of a single env reset with ``seed=s + i`` and given the same
    slates. Episodes have a fixed horizon, so all sub-environments end
    together; autoreset is *next-step*: the ``step()`` after the final one
    ignores its actions, starts new episodes and returns their first
    observations with zero reward.

    Info is a dict of arrays with a leading ``num_envs`` axis: ``choice`` and
    ``slate`` (the shown, distinct candidates), and with
    ``expose_user_type=True`` the hidden user's ``user_type``,
    ``choice_probs`` and ``utilities``; ``candidate_texts`` and
    ``slate_texts`` render on access (``info["slate_texts"][i][j]``).

    ``num_threads`` splits the users into that many shards stepped on worker
    threads (the trajectories do not change). The default uses one thread per
    256 users, at most one per CPU core and at most 8.

    ``copy=False`` (as Gymnasium's vector envs take it) returns the env's own
    arrays instead of a fresh copy each step: the observation *is* the
    simulation state, candidates included, and the next ``step`` or
    ``reset`` overwrites it (read it, or copy what you keep; the trajectories
    are the same). ``info``'s candidate texts stay readable.

    Memory: building the env costs about 1 KB per user (the batched
    observation space shares its constant bounds instead of copying them;
    100,000 users build in under 200 MB). With the default ``copy=True``,
    running costs about 80 KB per user at the peak of a step when the caller
    keeps the last observation and info while stepping (the simulation state
    ~14 KB, two observations of 20 KB, two turns' candidates, the images),
    so 100,000 users need about 8 GB; with ``copy=False`` about 30 KB per
    user (one observation that is the state, the step's images and
    candidate ids): 100,000 users run in about 3 GB. Add about 100 MB per
    process for the compiled kernels' runtime (numba, loaded by the first
    reset).
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "autoreset_mode": _NEXT_STEP}

    def __init__(self, num_envs: int = 1, num_candidates: int = 25, slate_size: int = 4,
                 images_per_prompt: int = 4, horizon: int = 5, reward: str = "experienced",
                 world: str | World = "synthetic", prompts: PromptsArg = None,
                 expose_user_type: bool = False, render_mode: str | None = None,
                 world_kwargs: dict | None = None, num_threads: int | None = None,
                 config: EnvConfig | None = None, copy: bool = True, **world_options: Any):
        if not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
        self.num_envs = num_envs
        self.config, self.world = setup(config, locals(), self.metadata["render_modes"])
        self.render_mode = render_mode
        serial = not self.world.thread_safe
        threads = (1 if serial else default_threads(num_envs)) if num_threads is None else num_threads
        if not isinstance(threads, int) or not 1 <= threads <= num_envs:
            raise ValueError(f"num_threads must be an integer in 1..num_envs ({num_envs}), got {num_threads!r}")
        if serial and threads > 1:
            raise ValueError(f"world {self.world.name!r} runs its models one batch at a time (thread_safe=False); "
                             "use num_threads=1: its models batch the users themselves")
        self.num_threads = threads
        if not isinstance(copy, bool):
            raise ValueError(f"copy must be True or False, got {copy!r}")
        self.copy = copy
        state = None
        if not copy:  # one block of observation arrays that the core keeps its state in
            layout = BatchCore.layout_of(self.config, self.world, num_envs)
            state = ObservationBuffers(layout).new()[1]
        self._core = (BatchCore(self.world, self.config, num_envs, state) if threads == 1
                      else ShardedCore(self.world, self.config, num_envs, threads, state))
        self.single_observation_space = observation_space(
            self.config, self.world.dim, len(self.world.candidates.categories))
        self.single_action_space = action_space(self.config)
        self.observation_space = batched_observation_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._rngs: list[np.random.Generator] | None = None
        self._needs_reset = True
        self._started = False

    @property
    def core(self) -> BatchCore | ShardedCore:
        """The batched simulation state."""
        return self._core

    def close(self, **kwargs) -> None:
        core = getattr(self, "_core", None)  # absent when __init__ raised
        if isinstance(core, ShardedCore):
            core.close()
        super().close(**kwargs)

    def reset(self, *, seed: int | Sequence[int | None] | None = None,
              options: dict[str, Any] | None = None):
        """Start new episodes in every sub-environment.

        Args:
            seed: ``None``; an int ``s`` (sub-env ``i`` gets ``s + i``); or one
                seed (or ``None``) per sub-environment.
            options: ``{"user_type": k}`` (one type, or one per sub-environment)
                plays users of those types; other keys are ignored.
        """
        if seed is None:
            seeds: list[int | None] = [None] * self.num_envs
        elif isinstance(seed, (int, np.integer)):
            seeds = [int(seed) + i for i in range(self.num_envs)]
            self._np_random, self._np_random_seed = seeding.np_random(int(seed))
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"got {len(seeds)} seeds for {self.num_envs} environments")
        if self._rngs is None:
            self._rngs = [seeding.np_random(s)[0] for s in seeds]
        else:
            self._rngs = [seeding.np_random(s)[0] if s is not None else rng
                          for s, rng in zip(seeds, self._rngs)]
        obs = self._restart(forced_types(options, self.num_envs, self.world.user_model.num_types))
        return obs, self._info(stepped=False)

    def _restart(self, types=None) -> dict[str, np.ndarray]:
        obs = self._core.reset_observe(self._core.draw_uniforms(self._rngs), types)
        self._needs_reset = False
        self._started = True
        return obs

    def step(self, actions):
        if not self._started:
            raise gym.error.ResetNeeded("call reset() before step()")
        n = self.num_envs
        if self._needs_reset:  # next-step autoreset: the actions are ignored
            obs = self._restart()
            zeros = np.zeros(n, bool)
            return obs, np.zeros(n), zeros, zeros.copy(), self._info(stepped=False)
        if self._core.done:  # pragma: no cover - guarded by _needs_reset
            raise EpisodeEndedError("the episodes ended; call reset()")
        slates = validate_actions(actions, n, self.config)
        reward, obs = self._core.step_observe(slates)
        done = self._core.done
        self._needs_reset = done
        return obs, reward, np.full(n, done), np.zeros(n, bool), self._info(stepped=True)

    def render(self) -> tuple | None:  # type: ignore[override]  # ansi texts or RGB frames, one per env
        if self.render_mode == "ansi":
            return tuple(render_turn(self._core, i) for i in range(self.num_envs))
        if self.render_mode == "rgb_array":
            return tuple(render_frame(self._core, i) for i in range(self.num_envs))
        return None

    def _info(self, stepped: bool) -> dict[str, Any]:
        core = self._core
        cands = core.parts("cands")  # joined only if an agent reads them all
        info: dict[str, Any] = {"candidate_texts": LazyTextBatch(cands)}
        if any(c.notes is not None for c in cands):
            info["candidate_notes"] = np.concatenate([np.full(len(c), None, object) if c.notes is None
                                                      else c.notes for c in cands])
        if stepped:
            info.update(slate=core.slate.copy(), slate_texts=LazyTextBatch(core.parts("slate_prompts")),
                        choice=core.choice.copy())
        if self.config.expose_user_type:
            info["user_type"] = core.types.copy()
            if stepped:
                info.update(choice_probs=core.choice_probs.copy(), utilities=core.utilities.copy())
        return info
