"""The ceiling: the slate search is exact, and exploits written here beat neither the oracle nor bayes."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest

from agents import Agent, candidate_utilities
from agents.evaluation import ci95, evaluate
from agents.model_based import BayesAgent, best_known_type_slates, best_slates, slate_objective
from pasta_env.rewards import REWARDS


def brute_force(util, future, belief, tau, cats, L, one_per_category, reward):
    """The best slate by trying every one in Python."""
    out = []
    for n in range(util.shape[0]):
        best, arg = -np.inf, None
        for s in combinations(range(util.shape[2]), L):
            if one_per_category and len(set(cats[n, list(s)])) < L:
                continue
            f = None if future is None else future[n][:, list(s)]
            v = float(belief[n] @ slate_objective(util[n][:, list(s)], f, tau, reward))
            if v > best + 1e-12:
                best, arg = v, s
        out.append(arg)
    return np.array(out)


def value(util, future, belief, tau, slates, reward):
    rows = np.arange(len(slates))[:, None]
    f = None if future is None else future[rows[:, :, None], np.arange(util.shape[1])[None, :, None],
                                             slates[:, None, :]]
    u = util[rows[:, :, None], np.arange(util.shape[1])[None, :, None], slates[:, None, :]]
    return np.einsum("nk,nk->n", belief, slate_objective(u, f, tau, reward))


@pytest.mark.parametrize("reward", REWARDS)
@pytest.mark.parametrize("lookahead", [False, True])
@pytest.mark.parametrize("one_per_category", [False, True])
def test_the_slate_search_finds_the_best_of_every_slate(reward, lookahead, one_per_category):
    rng = np.random.default_rng(7)
    for trial in range(6):
        N, K, C, L = 5, int(rng.integers(1, 5)), int(rng.integers(5, 11)), int(rng.integers(2, 5))
        util = rng.normal(0, rng.uniform(0.5, 4), (N, K, C))
        if trial % 2:
            util = np.round(util)  # ties, and candidates equal for every type
        future = rng.normal(0, 2, (N, K, C)) if lookahead else None
        belief = rng.dirichlet(np.ones(K) * 0.5, size=N)
        cats = np.stack([rng.permutation(np.arange(C) % 5) for _ in range(N)])  # every category in every row
        tau = float(rng.uniform(0.2, 3))
        got = best_slates(util, future, belief, tau, cats, L, one_per_category, reward)
        want = brute_force(util, future, belief, tau, cats, L, one_per_category, reward)
        np.testing.assert_allclose(value(util, future, belief, tau, got, reward),
                                   value(util, future, belief, tau, want, reward), rtol=1e-9, atol=1e-9)
        assert all(len(set(row)) == L for row in got.tolist())
    known = best_known_type_slates(util[:, 0], None if future is None else future[:, 0], tau, L, reward)
    one = np.zeros((N, 1)) + 1
    np.testing.assert_allclose(value(util[:, :1], None if future is None else future[:, :1], one, tau, known, reward),
                               value(util[:, :1], None if future is None else future[:, :1], one, tau,
                                     brute_force(util[:, :1], None if future is None else future[:, :1], one, tau,
                                                 cats, L, False, reward), reward), rtol=1e-9, atol=1e-9)


class RewardMatcher(Agent):
    """Written here, not privileged: plays bayes first, then guesses the type whose predicted rewards match
    the observed ones best and shows the slate with that type's highest expected reward."""

    name = "reward-matcher"

    def __init__(self, world, config):
        super().__init__(world, config)
        self.first = BayesAgent(world, config)

    def act_batch(self, obs, info):
        if not obs["history_mask"].any():
            return self.first.act_batch(obs, info)
        users = self.world.user_model
        images = obs["history_slate_images"][..., None, :]
        req = np.broadcast_to(obs["initial_prompt"][:, None, None, :], images.shape[:-2] + images.shape[-1:])
        util = users.utilities(req, images)  # (N, H, L, K)
        tau = users.temperature
        predicted = np.log(np.exp(tau * util).sum(axis=2)) / tau  # (N, H, K): what each type's reward averages
        if self.config.reward != "experienced":
            predicted = np.take_along_axis(util, obs["history_choices"][:, :, None, None], axis=2)[:, :, 0]
        err = ((obs["history_rewards"][..., None] - predicted) ** 2 * obs["history_mask"][..., None]).sum(axis=1)
        guess = err.argmin(axis=1)
        cand = candidate_utilities(obs, users)[np.arange(len(guess)), guess]
        return best_known_type_slates(cand, None, tau, self.config.slate_size, self.config.reward)


class Decoys(Agent):
    """Written here, knows the type: its best candidate beside the three it likes least."""

    name = "decoys"
    privileged = True

    def act_batch(self, obs, info):
        util = candidate_utilities(obs, self.world.user_model)[np.arange(len(info["user_type"])), info["user_type"]]
        order = np.argsort(util, axis=1)
        return np.concatenate([order[:, -1:], order[:, :self.config.slate_size - 1]], axis=1)


class KnownTop(Agent):
    """Knows the type: its four best candidates."""

    name = "known-top"
    privileged = True

    def act_batch(self, obs, info):
        util = candidate_utilities(obs, self.world.user_model)[np.arange(len(info["user_type"])), info["user_type"]]
        return np.argsort(-util, axis=1)[:, :self.config.slate_size]


def paired(result, a, b):
    x = result.agents[a].returns - result.agents[b].returns
    return x.mean(), ci95(x)


def test_reading_rewards_or_showing_decoys_beats_neither_the_oracle_nor_bayes():
    from pasta_env.config import EnvConfig
    from pasta_env.worlds import build_world

    world, config = build_world("synthetic", None, 25, None), EnvConfig()
    probes = [RewardMatcher(world, config), Decoys(world, config), KnownTop(world, config)]
    result = evaluate(["bayes", "oracle", *probes], episodes=400, seed=8, num_envs=400, progress=False, world=world)
    for probe in ("reward-matcher", "decoys", "known-top"):
        mean, half = paired(result, probe, "oracle")
        assert mean <= half, (probe, mean, half)
    for probe in ("reward-matcher", "decoys"):
        mean, half = paired(result, probe, "bayes")
        assert mean <= half, (probe, mean, half)


def test_under_the_chosen_utility_reward_the_same_probes_do_win():
    """The probes above are not toothless: on the old reward, decoys beat four good prompts, and reading
    the reward beats bayes."""
    from pasta_env.config import EnvConfig
    from pasta_env.worlds import build_world

    world, config = build_world("synthetic", None, 25, None), EnvConfig(reward="chosen-utility")
    probes = [RewardMatcher(world, config), Decoys(world, config), KnownTop(world, config)]
    result = evaluate(["bayes", *probes], episodes=400, seed=8, num_envs=400, progress=False, world=world,
                      reward="chosen-utility")
    mean, half = paired(result, "decoys", "known-top")
    assert mean > half > 0
    mean, half = paired(result, "reward-matcher", "bayes")
    assert mean > half > 0
