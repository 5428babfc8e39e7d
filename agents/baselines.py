"""Baseline slate policies: random, random-diverse and LMM-only."""

from __future__ import annotations

import numpy as np

from agents.base import Agent
from pasta_env.spaces import random_diverse_slates


class RandomAgent(Agent):
    """Uniform over the action space: ``L`` independent candidate indices."""

    name = "random"

    def act_batch(self, obs, info):
        n = obs["candidates"].shape[0]
        return self.rng.integers(0, self.config.num_candidates, (n, self.config.slate_size))


class RandomDiverseAgent(Agent):
    """``L`` random categories, a random candidate in each (at most one per category)."""

    name = "random-diverse"

    def act_batch(self, obs, info):
        return random_diverse_slates(obs["candidate_categories"], self.config.slate_size,
                                     len(self.world.candidates.categories), self.rng)


class LMMAgent(Agent):
    """The paper's LMM-only baseline: what the candidate generator shows by itself.

    Rule: the generator's first candidate in each category, categories taken
    in the generator's own order (rephrase, add detail, change style, change
    subject, creative leap), for as many columns as the slate has. With the
    default slate of 4 that is the first rephrase, added detail, style
    change and subject change. No value model and no user model are used.
    """

    name = "lmm"

    def act_batch(self, obs, info):
        cats = obs["candidate_categories"]
        n_cat = len(self.world.candidates.categories)
        first = np.argmax(cats[:, None, :] == np.arange(n_cat)[None, :, None], axis=2)  # (N, n_cat)
        order = np.arange(self.config.slate_size) % n_cat
        return first[:, order]
