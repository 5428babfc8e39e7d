"""Shared fixtures: the env id and a rollout helper used by several test files.

The tests mirror the packages: ``tests/pasta_env``, ``tests/agents``,
``tests/simulators`` and ``tests/cli`` (the command, the README, interrupts).
"""

from __future__ import annotations

import numpy as np
import pytest

import pasta_env  # noqa: F401  (registers PastaT2I-v0)

ENV_ID = "PastaT2I-v0"


def rollout(env, seed: int, actions: np.ndarray):
    """Play ``actions`` (H, L) from ``reset(seed)``; return obs, rewards and infos."""
    obs, info = env.reset(seed=seed)
    observations, rewards, infos = [obs], [], [info]
    for a in actions:
        obs, r, term, trunc, info = env.step(a)
        observations.append(obs)
        rewards.append(r)
        infos.append(info)
    return observations, rewards, infos


@pytest.fixture(scope="session", autouse=True)
def compiled_kernels():
    """Compile (or load from the on-disk cache) the env's kernels once, before any test is timed.

    On a fresh clone the first step compiles them (seconds); doing it here
    keeps that one-time cost out of the tests with deadlines.
    """
    import gymnasium as gym

    env = gym.make_vec(ENV_ID, num_envs=2, vectorization_mode="vector_entry_point")
    env.reset(seed=0)
    env.step(np.array([[0, 0, 1, 2], [3, 4, 5, 6]]))  # a repeated index: the slate fill runs too
    env.close()


@pytest.fixture
def actions():
    return np.random.default_rng(123).integers(0, 25, (5, 4))
