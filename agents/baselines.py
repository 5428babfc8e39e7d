"""Baseline slate policies: random, random-diverse and LMM-only."""

from __future__ import annotations

import numpy as np

from agents.base import Agent, best_per_category


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
        cats = obs["candidate_categories"]
        n_cat = len(self.world.candidates.categories)
        keys = self.rng.random(cats.shape)
        index, _ = best_per_category(keys, cats, n_cat)
        order = np.argsort(self.rng.random((cats.shape[0], n_cat)), axis=1)
        picks = np.take_along_axis(index, order, axis=1)
        return picks[:, : self.config.slate_size] if n_cat >= self.config.slate_size else np.resize(
            picks, (cats.shape[0], self.config.slate_size))


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
        n, c = cats.shape
        n_cat = len(self.world.candidates.categories)
        first = np.argmax(cats[:, None, :] == np.arange(n_cat)[None, :, None], axis=2)  # (N, n_cat)
        order = np.arange(self.config.slate_size) % n_cat
        return first[:, order]
