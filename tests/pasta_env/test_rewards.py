"""The feedback channel: the reward's law, what it rewards, and past rewards in the observation."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pasta_env.rewards import (
    EULER_GAMMA,
    REWARDS,
    draw_experienced,
    expected_reward,
    inclusive_value,
    reward_log_likelihood,
)
from tests.conftest import ENV_ID

#: The Kolmogorov-Smirnov statistic's critical value at the 0.1% level is about 1.95 / sqrt(n).
KS_001 = 1.95


def one_step(n: int, seed: int, reward: str = "experienced"):
    env = gym.make_vec(ENV_ID, num_envs=n, vectorization_mode="vector_entry_point", expose_user_type=True,
                       reward=reward, num_threads=1)  # one core: its uniforms are one array
    obs, info = env.reset(seed=seed)
    slates = np.argsort(np.random.default_rng(seed).random((n, 25)), axis=1)[:, :4]
    obs, r, *_, info = env.step(slates)
    return env, obs, r, info


def ks_gumbel(z: np.ndarray) -> float:
    """The largest gap between the empirical CDF of ``z`` and the standard Gumbel CDF."""
    z = np.sort(z)
    cdf = np.exp(-np.exp(-z))
    n = len(z)
    return float(max((np.arange(1, n + 1) / n - cdf).max(), (cdf - np.arange(n) / n).max()))


def test_the_experienced_reward_is_the_best_columns_gumbel_value_whichever_column_won():
    n = 20_000
    env, obs, r, info = one_step(n, seed=0)
    tau = env.unwrapped.world.user_model.temperature
    util = info["utilities"]
    # The kernel draws exactly the documented law from the step's reward uniform.
    core = env.unwrapped.core
    np.testing.assert_allclose(r, draw_experienced(util, tau, core.u[:, core.layout.reward(0)]), rtol=1e-6)
    z = tau * (r - inclusive_value(util, tau)) + EULER_GAMMA  # standard Gumbel if the law holds
    assert ks_gumbel(z) < KS_001 / math.sqrt(n)
    assert abs(r.mean() - inclusive_value(util, tau).mean()) < 4 * (math.pi / math.sqrt(6) / tau) / math.sqrt(n)
    # The winner's value does not depend on which column won: the user's favourite or another.
    fav = info["choice"] == util.argmax(axis=1)
    a, b = np.sort(z[fav]), np.sort(z[~fav])
    grid = np.concatenate([a, b])
    gap = np.abs(np.searchsorted(a, grid, "right") / len(a) - np.searchsorted(b, grid, "right") / len(b)).max()
    assert gap < KS_001 * math.sqrt((len(a) + len(b)) / (len(a) * len(b)))
    # Choices follow softmax(tau * u), as before.
    freq = np.bincount(info["choice"], minlength=4) / n
    p = info["choice_probs"].mean(axis=0)
    assert np.all(np.abs(freq - p) < 4 * np.sqrt(p * (1 - p) / n))


def test_the_reward_likelihood_is_the_gumbel_density():
    rng = np.random.default_rng(1)
    util = rng.normal(10, 3, (3, 8, 4))
    tau = 1.3
    for r in (5.0, 12.0, 30.0):
        got = np.exp(reward_log_likelihood(np.full(3, r), util, np.zeros(3, int), tau, "experienced"))
        z = tau * (r - inclusive_value(util, tau)) + EULER_GAMMA
        np.testing.assert_allclose(got, tau * np.exp(-z - np.exp(-z)), rtol=1e-12)
    # It integrates to one.
    grid = np.linspace(-20, 60, 200_001)
    dens = np.exp(reward_log_likelihood(grid, np.broadcast_to(util[0, :1], (len(grid), 1, 4)),
                                        np.zeros(len(grid), int), tau, "experienced"))[:, 0]
    assert abs(dens.sum() * (grid[1] - grid[0]) - 1) < 1e-6


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(-30, 30), min_size=2, max_size=6), st.integers(0, 5), st.floats(0, 40),
       st.floats(0.05, 5))
def test_showing_a_better_option_never_lowers_the_expected_reward(utils, column, better, tau):
    u = np.array(utils)
    column %= len(u)
    v = u.copy()
    v[column] += better
    assert expected_reward(v, tau, "experienced") >= expected_reward(u, tau, "experienced") - 1e-9
    # ... and junk beside the best option earns less than good options do.
    assert expected_reward(np.maximum(u, u.max() - 1), tau, "experienced") >= expected_reward(u, tau, "experienced")


def test_the_chosen_utility_reward_pays_for_junk_which_is_why_it_is_not_the_default():
    good, junk = np.array([10.0, 9.0, 9.0, 9.0]), np.array([10.0, -20.0, -20.0, -20.0])
    assert expected_reward(junk, 1.0, "chosen-utility") > expected_reward(good, 1.0, "chosen-utility")
    assert expected_reward(junk, 1.0, "experienced") < expected_reward(good, 1.0, "experienced")
    assert REWARDS[0] == "experienced"


@pytest.mark.parametrize("reward", REWARDS)
def test_past_rewards_in_the_observation_are_the_rewards_step_returned(reward):
    slates = np.random.default_rng(2).integers(0, 25, (5, 3, 4))
    single = [gym.make(ENV_ID, reward=reward) for _ in range(3)]
    vec = gym.make_vec(ENV_ID, num_envs=3, vectorization_mode="vector_entry_point", reward=reward)
    vobs, _ = vec.reset(seed=40)
    sobs = [env.reset(seed=40 + i)[0] for i, env in enumerate(single)]
    assert not vobs["history_rewards"].any() and not vobs["history_rated"].any()
    returned = []
    for t in range(5):
        vobs, vr, *_ = vec.step(slates[t])
        returned.append(vr)
        for i, env in enumerate(single):
            sobs[i], sr, *_ = env.step(slates[t, i])
            assert sr == vr[i]
            np.testing.assert_array_equal(sobs[i]["history_rewards"], vobs["history_rewards"][i])
        np.testing.assert_array_equal(vobs["history_rewards"][:, :t + 1], np.stack(returned, axis=1))
        assert (vobs["history_rated"][:, :t + 1] == 1).all() and not vobs["history_rated"][:, t + 1:].any()
        assert vobs["history_rewards"].dtype == np.float32
    assert np.all(np.stack(returned).astype(np.float32) == np.stack(returned))  # float32 values, kept exactly
    vobs, *_ = vec.step(slates[0])  # next-step autoreset: the history starts empty again
    assert not vobs["history_rewards"].any()


def test_one_turns_feedback_identifies_the_type_only_under_the_deterministic_rewards():
    from agents.evaluation import evaluate

    noisy = evaluate(["bayes"], episodes=512, seed=3, num_envs=512, progress=False).agents["bayes"]
    exact = evaluate(["bayes"], episodes=512, seed=3, num_envs=512, progress=False,
                     reward="chosen-utility").agents["bayes"]
    assert noisy.true_type_mass[:, 0].mean() < 0.6 < 0.95 < exact.true_type_mass[:, 0].mean()
    entropy = math.log(8) - 0.01
    told = noisy.information[:, 0].mean(axis=0)  # choice, reward, both
    assert told[2] < 0.75 * entropy and told[0] < told[2] and told[1] < told[2]
    assert exact.information[:, 0, 1].mean() > 0.95 * entropy
