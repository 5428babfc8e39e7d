"""PastaT2I on a torch device: ``num_envs`` users of the synthetic world simulated where the policy runs.

``gym.make_vec("PastaT2I-v0", num_envs=N, vectorization_mode="vector_entry_point", device="cuda")``
builds :class:`PastaT2ITorchVectorEnv`: observations, rewards and flags are
tensors on that device, actions are taken there, and nothing crosses to the
host per step but the slates' range check (one scalar). ``device=None`` (the
default) builds the numpy vector env on the compiled CPU kernels instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import gymnasium as gym
import numpy as np
from gymnasium.vector.utils import batch_space

from pasta_env.core import forced_types
from pasta_env.env import setup
from pasta_env.spaces import action_space, batched_observation_space, observation_space
from pasta_env.text import LazyTexts
from pasta_env.torch_core import CounterUniforms, TorchCore
from pasta_env.vector_env import _NEXT_STEP, PastaT2IVectorEnv
from pasta_env.worlds import PromptsArg, World, world_takes
from simulators.backends import check_torch_device, require


def backend_device(device: Any):
    """``device`` as a ``torch.device`` the torch backend can run on here, or a ``ValueError`` naming the fix."""
    torch = require("torch", f"device={device!r} (the torch backend)")
    if not isinstance(device, (str, torch.device)):
        raise ValueError(f"device must be a torch device name such as 'cuda' or 'cpu', got {device!r}")
    dev = check_torch_device(device, "device", instead="device='cpu', or leave device unset for the numpy path")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r}: the torch backend runs on 'cpu' and 'cuda' devices, not "
                         f"{dev.type!r}")
    return dev


class _DeviceTexts(Sequence):
    """Per-environment candidate texts of a device batch: ``texts[i][j]``, row ``i`` copied to the host on access."""

    __slots__ = ("_ids", "_emb", "_space")

    def __init__(self, ids, emb, space):
        self._ids, self._emb, self._space = ids, emb, space

    def __len__(self) -> int:
        return int(self._ids.shape[0])

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(len(self))[i]]
        from simulators.text.prompts import PhrasePrompts

        ids = self._ids[int(i)].to("cpu").numpy().astype(np.int32)
        emb = self._emb[int(i)].to("cpu").numpy()
        return LazyTexts(PhrasePrompts(self._space, ids, emb))

    def __repr__(self) -> str:
        return f"candidate texts of {len(self)} envs"


class PastaT2ITorchVectorEnv(gym.vector.VectorEnv):
    """``num_envs`` users of the synthetic world advanced in lockstep by torch code on ``device``.

    The same MDP as :class:`pasta_env.vector_env.PastaT2IVectorEnv` (the
    same spaces, observation keys, dtypes, rewards and next-step autoreset),
    computed by :class:`pasta_env.torch_core.TorchCore` with randomness
    drawn on the device (:class:`pasta_env.torch_core.CounterUniforms`):

    * ``reset`` and ``step`` return observations as a dict of tensors on
      ``device`` and rewards, ``terminated`` and ``truncated`` as tensors
      (float32, bool, bool) there; the spaces stay Gymnasium's (numpy)
      spaces, which describe the tensors' shapes, dtypes and bounds.
    * ``step`` takes ``(num_envs, L)`` integer slates as a tensor on any
      device (moved to ``device``) or an array; a wrong shape, a non-integer
      dtype or an index outside ``0..L_C-1`` raises ``ValueError``.
    * Seeding: ``reset(seed=s)`` gives sub-environment ``i`` the seed
      ``s + i``; each autoreset starts that seed's next episode. Equal seeds
      give equal episodes on one device, and CPU and GPU draw the same
      uniforms (integer hashing); the float math after the draws may differ
      in the last bits between devices. The draws are not numpy's: a seed
      gives another episode here than on the numpy path, from the same
      distributions.
    * ``info``: ``slate`` and ``choice`` tensors after a step,
      ``candidate_texts`` (``info["candidate_texts"][i][j]``, copied to the
      host when read), and with ``expose_user_type=True`` ``user_type``,
      ``choice_probs`` and ``utilities``.
    * ``copy=True`` (default) returns fresh tensors each step; ``copy=False``
      returns the state tensors themselves, overwritten by the next step
      (the candidates are new tensors every turn either way).

    The synthetic world only (its candidate generator, image model and a
    trunk-and-heads or taste user model); ``render_mode`` is not supported
    (render a few users on the numpy path).

    Args:
        num_envs: Number of users.
        device: A torch device name or ``torch.device`` (``"cuda"``, ``"cuda:1"``, ``"cpu"``).
        **kwargs: As :class:`pasta_env.vector_env.PastaT2IVectorEnv` takes
            them (sizes, ``reward``, ``world``, ``prompts``, ``expose_user_type``,
            ``world_kwargs``, ``config``, world options).
    """

    metadata = {"render_modes": [], "autoreset_mode": _NEXT_STEP}

    def __init__(self, num_envs: int = 1, device: Any = "cpu", num_candidates: int = 25, slate_size: int = 4,
                 images_per_prompt: int = 4, horizon: int = 5, reward: str = "experienced",
                 world: str | World = "synthetic", prompts: PromptsArg = None, expose_user_type: bool = False,
                 render_mode: str | None = None, world_kwargs: dict | None = None, config=None, copy: bool = True,
                 **world_options: Any):
        if not isinstance(num_envs, int) or isinstance(num_envs, bool) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
        if render_mode is not None:
            raise ValueError(f"render_mode={render_mode!r} is not supported by the torch backend; render a few users "
                             "on the numpy path (device unset)")
        if not isinstance(copy, bool):
            raise ValueError(f"copy must be True or False, got {copy!r}")
        self.device = backend_device(device)
        self.torch = require("torch")
        self.num_envs, self.copy, self.render_mode = num_envs, copy, None
        self.config, self.world = setup(config, locals(), [])
        self._core = TorchCore(self.world, self.config, num_envs, self.device)
        self._uniforms = CounterUniforms(self.torch)
        self.single_observation_space = observation_space(
            self.config, self.world.dim, len(self.world.candidates.categories))
        self.single_action_space = action_space(self.config)
        self.observation_space = batched_observation_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        torch = self.torch
        self._seeds = torch.zeros(num_envs, dtype=torch.int64, device=self.device)
        self._episodes = torch.zeros(num_envs, dtype=torch.int64, device=self.device)
        self._zeros = torch.zeros(num_envs, dtype=torch.float32, device=self.device)
        self._false = torch.zeros(num_envs, dtype=torch.bool, device=self.device)
        self._started = False
        self._needs_reset = True

    @property
    def core(self) -> TorchCore:
        """The batched simulation state (tensors on :attr:`device`)."""
        return self._core

    def reset(self, *, seed: int | Sequence[int | None] | None = None, options: dict[str, Any] | None = None):
        """Start new episodes in every sub-environment.

        Args:
            seed: ``None`` (fresh entropy); an int ``s`` (sub-env ``i`` gets
                ``s + i``); or one seed (or ``None``) per sub-environment.
            options: ``{"user_type": k}`` (one type, or one per sub-environment).
        """
        torch, n = self.torch, self.num_envs
        entropy = np.random.default_rng()
        if seed is None:
            if not self._started:
                self._seeds = torch.as_tensor(entropy.integers(0, 2 ** 63, n), device=self.device)
        elif isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
            if seed < 0:
                raise ValueError(f"seed must be a non-negative integer, got {seed}")
            # Sub-env i gets s + i (modulo 2**63, the seeds' range).
            values = (np.arange(n, dtype=np.uint64) + np.uint64(int(seed) % 2 ** 63)) % np.uint64(2 ** 63)
            self._seeds = torch.as_tensor(values.astype(np.int64), device=self.device)
            self._np_random, self._np_random_seed = gym.utils.seeding.np_random(int(seed))
        else:
            seeds = list(cast(Sequence, seed))
            if len(seeds) != n:
                raise ValueError(f"got {len(seeds)} seeds for {n} environments")
            old = self._seeds.to("cpu").numpy() if self._started else entropy.integers(0, 2 ** 63, n)
            for s in seeds:
                if s is not None and (not isinstance(s, (int, np.integer)) or isinstance(s, bool) or s < 0):
                    raise ValueError(f"seeds must be non-negative integers or None, got {s!r}")
            values = [int(s) & (2 ** 63 - 1) if s is not None else int(o) for s, o in zip(seeds, old)]
            self._seeds = torch.as_tensor(values, dtype=torch.int64, device=self.device)
        if seed is not None:
            self._episodes.zero_()
        elif self._started:
            self._episodes += 1
        types = forced_types(options, n, self.world.user_model.num_types)
        obs = self._restart(types)
        return obs, self._info(stepped=False)

    def _restart(self, types=None) -> dict[str, Any]:
        core = self._core
        core.reset(self._uniforms.draw(self._seeds, self._episodes, core.layout.size), types)
        self._started, self._needs_reset = True, False
        return core.observation(self.copy)

    def step(self, actions):
        if not self._started:
            raise gym.error.ResetNeeded("call reset() before step()")
        if self._needs_reset:  # next-step autoreset: the actions are ignored, each env's next episode starts
            self._episodes += 1
            obs = self._restart()
            return obs, self._zeros.clone(), self._false.clone(), self._false.clone(), self._info(stepped=False)
        slates = self._check_actions(actions)
        reward = self._core.step(slates)
        done = self._core.done
        self._needs_reset = done
        terminated = self._false.clone().fill_(done)
        return self._core.observation(self.copy), reward, terminated, self._false.clone(), self._info(stepped=True)

    def _check_actions(self, actions):
        """Slates as an int64 tensor on the device, or a ``ValueError`` naming what is wrong."""
        torch, cfg = self.torch, self.config
        L, C, n = cfg.slate_size, cfg.num_candidates, self.num_envs
        if isinstance(actions, torch.Tensor):
            a = actions
        else:
            arr = np.asarray(actions)
            if arr.dtype.kind not in "iu":
                raise ValueError(f"slates must hold integers 0..{C - 1}, got dtype {arr.dtype}")
            a = torch.as_tensor(arr)
        if tuple(a.shape) != (n, L):
            raise ValueError(f"slates must have shape ({n}, {L}) (candidate indices 0..{C - 1}), got {tuple(a.shape)}")
        if a.dtype.is_floating_point or a.dtype.is_complex or a.dtype == torch.bool:
            raise ValueError(f"slates must hold integers 0..{C - 1}, got dtype {a.dtype}")
        a = a.to(self.device, torch.int64)
        bad = (a < 0) | (a >= C)
        if bool(bad.any()):
            raise ValueError(f"slate index {int(a[bad][0])} is out of range 0..{C - 1}")
        return a

    def _info(self, stepped: bool) -> dict[str, Any]:
        core = self._core
        info: dict[str, Any] = {
            "candidate_texts": _DeviceTexts(core.cand_ids, core.state["candidates"], core.tables.space)}
        if stepped:
            info.update(slate=core.slate.clone(), choice=core.choice.clone())
        if self.config.expose_user_type:
            info["user_type"] = core.types.clone()
            if stepped:
                info.update(choice_probs=core.choice_probs.clone(), utilities=core.utilities.clone())
        return info


def make_vector_env(num_envs: int = 1, device: Any = None, **kwargs: Any) -> gym.vector.VectorEnv:
    """The vector entry point of ``PastaT2I-v0``: the numpy env, or with ``device`` the torch env there.

    Args:
        num_envs: Number of users.
        device: ``None`` (default): :class:`pasta_env.vector_env.PastaT2IVectorEnv`
            on the compiled CPU kernels, numpy arrays in and out; a torch
            device (``"cuda"``, ``"cuda:1"``, ``"cpu"``): :class:`PastaT2ITorchVectorEnv`,
            the synthetic world on that device, tensors in and out. For a
            world whose factory takes a ``device`` option (the clip world:
            where its models run) it stays that option, on the numpy env.
        **kwargs: The env's arguments.
    """
    world = kwargs.get("world", "synthetic")
    if device is None:
        return PastaT2IVectorEnv(num_envs=num_envs, **kwargs)
    if isinstance(world, str) and world != "synthetic" and world_takes(world, "device"):
        # A world with models of its own (the clip world) takes device= as its option: where they run.
        return PastaT2IVectorEnv(num_envs=num_envs, device=device, **kwargs)
    return PastaT2ITorchVectorEnv(num_envs=num_envs, device=device, **kwargs)
