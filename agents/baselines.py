"""Baseline slate policies: random, random-diverse and LMM-only."""

from __future__ import annotations

from agents.base import Agent, top_diverse
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
    """The paper's LMM-only baseline ("Gemini Flash, no RL"): what the generator itself ranks best.

    Rule: the candidate generator's own ranking (``world.candidates.ranking_scores``;
    in the synthetic world, fidelity to the user's request), top ``L``
    with at most one per category. User-agnostic: no value model, no user
    model, no adaptation to the choices.
    """

    name = "lmm"

    def act_batch(self, obs, info):
        gen = self.world.candidates
        scores = gen.ranking_scores(obs["candidates"], obs["initial_prompt"], obs["current_prompt"])
        return top_diverse(scores, obs["candidate_categories"], self.config.slate_size, len(gen.categories))
