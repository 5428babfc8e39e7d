"""pasta-t2i: personalized multi-turn text-to-image generation as an RL environment.

Importing this package registers ``PastaT2I-v0`` with Gymnasium::

    import gymnasium as gym
    import pasta_env  # noqa: F401

    env = gym.make("PastaT2I-v0")
    vec = gym.make_vec("PastaT2I-v0", num_envs=64, vectorization_mode="vector_entry_point")
"""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

from pasta_env import clip_world as _clip_world  # noqa: F401  (registers the "clip" world; loads no model)
from pasta_env.config import EnvConfig
from pasta_env.env import PRIVILEGED_INFO_KEYS, EpisodeEndedError, PastaT2IEnv
from pasta_env.vector_env import PastaT2IVectorEnv
from pasta_env.worlds import World, make_world, read_prompts, register_world, world_names

__all__ = [
    "PRIVILEGED_INFO_KEYS", "EnvConfig", "EpisodeEndedError", "PastaT2IEnv", "PastaT2IVectorEnv", "World",
    "make_world", "read_prompts", "register_world", "world_names",
]
__version__ = "0.1.0"

ENV_ID = "PastaT2I-v0"

if ENV_ID not in registry:
    register(
        id=ENV_ID,
        entry_point="pasta_env.env:PastaT2IEnv",
        vector_entry_point="pasta_env.torch_vector_env:make_vector_env",
    )
