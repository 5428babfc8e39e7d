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


@pytest.fixture
def actions():
    return np.random.default_rng(123).integers(0, 25, (5, 4))
