"""IQL that reads the user: the history encoder's belief over types, the mixture critic, and their acting rules."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("d3rlpy")
pytest.importorskip("minari")

import torch  # noqa: E402

from agents import make_agent  # noqa: E402
from agents.model_based import best_slates, type_log_posterior  # noqa: E402
from agents.offline.iql import IQLAgent, IQLSettings, flat_observations, make_iql, train_iql, type_values  # noqa: E402
from pasta_env.datasets import DatasetSpec, generate  # noqa: E402
from pasta_env.datasets.preferences import trajectory_preferences  # noqa: E402
from simulators.users.em import EMConfig, train_user_model  # noqa: E402
from tests.conftest import ENV_ID  # noqa: E402


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """600 episodes of lmm with 30% random slates, a user model fitted to them, users played for three turns."""
    root = tmp_path_factory.mktemp("belief")
    generate(root / "data", DatasetSpec(episodes=600, policy="lmm", epsilon=0.3, chunk=600), progress=False,
             make_policy=make_agent)
    train_user_model(trajectory_preferences(root / "data"), EMConfig(num_types=4, epochs=3, num_inits=1),
                     progress=False, out=root / "um.npz")
    env = gym.make_vec(ENV_ID, num_envs=64, vectorization_mode="vector_entry_point")
    obs, info = env.reset(seed=7)
    random = make_agent("random", env.world, env.config, seed=1)
    for _ in range(3):  # histories with choices and rewards
        obs, *_, info = env.step(random.act(obs, info))
    return root, env, obs


def test_the_belief_starts_as_the_fitted_models_posterior(world):
    """The torch filter (choices and Gumbel rewards) equals the numpy posterior bayes:MODEL computes."""
    from simulators.users.checkpoint import load_user_model

    root, env, obs = world
    algo = make_iql(IQLSettings(hidden=16, user_model=str(root / "um.npz")), 5, 4, 64)
    x = torch.as_tensor(flat_observations(obs, 5, 4, 64))
    want = np.exp(type_log_posterior(obs, load_user_model(root / "um.npz")))
    for q_func in algo.impl.q_function:
        with torch.no_grad():
            got = q_func.encoder.history.type_belief(x).numpy()
        np.testing.assert_allclose(got, want, atol=2e-4)
    assert want.max(axis=1).mean() > 0.5  # three turns of feedback: the belief is not the prior


def test_the_mixture_critic_is_the_belief_weighted_inclusive_value(world):
    root, env, obs = world
    algo = make_iql(IQLSettings(hidden=16, critic="mixture", user_model=str(root / "um.npz")), 5, 4, 64)
    x = torch.as_tensor(flat_observations(obs, 5, 4, 64))
    picks = np.array([0, 6, 12, 18])
    slate = torch.as_tensor(obs["candidates"][:, picks])
    with torch.no_grad():
        for q_func in algo.impl.q_function:
            q = q_func(x, slate.reshape(len(x), -1)).q_value[:, 0]
            v, belief = q_func.encoder.type_values(x, slate)  # (N, L, K), (N, K)
            tau = q_func.encoder.temperature()
            mixture = (belief * torch.logsumexp(tau * v, dim=1) / tau).sum(dim=1)
            torch.testing.assert_close(q, q_func._fc.weight[0, 0] * mixture + q_func._fc.bias[0])
        assert float(algo.impl.q_function[0]._fc.weight) == 1.0  # the mixture's value, to start


@pytest.mark.parametrize("one_per_category", [True, False])
def test_the_mixture_critic_acts_with_bayes_slate_search(world, one_per_category):
    root, env, obs = world
    algo = make_iql(IQLSettings(hidden=16, critic="mixture", user_model=str(root / "um.npz")), 5, 4, 64)
    agent = IQLAgent.from_algo(algo, env.world, env.config, one_per_category=one_per_category)
    slates = agent.act(obs, {})
    with torch.no_grad():
        v, belief, tau = type_values(algo, torch.as_tensor(flat_observations(obs, 5, 4, 64)),
                                     torch.as_tensor(obs["candidates"]))
    want = best_slates(v.double().numpy(), None, belief.double().numpy(), float(tau), obs["candidate_categories"], 4,
                       one_per_category)
    np.testing.assert_array_equal(slates, want)
    cats = np.take_along_axis(obs["candidate_categories"], slates, axis=1)
    if one_per_category:
        assert all(len(set(row)) == 4 for row in cats.tolist())
    else:
        assert any(len(set(row)) < 4 for row in cats.tolist())  # the search is free to repeat a category


def test_the_mean_critic_with_a_belief_still_decomposes_exactly(world):
    root, env, obs = world
    algo = make_iql(IQLSettings(hidden=16, user_model=str(root / "um.npz")), 5, 4, 64)
    x = torch.as_tensor(flat_observations(obs, 5, 4, 64))
    prompts = torch.as_tensor(obs["candidates"][:, [1, 7, 13, 19]])
    with torch.no_grad():
        for q_func in algo.impl.q_function:
            q = q_func(x, prompts.reshape(len(x), -1)).q_value[:, 0]
            f = q_func._fc(q_func.encoder.per_prompt(x, prompts))[..., 0]
            torch.testing.assert_close(q, f.mean(dim=1))


def test_a_trained_belief_model_saves_loads_and_acts_the_same(world):
    root, env, obs = world
    settings = IQLSettings(steps=20, batch_size=32, hidden=16, critic="mixture", user_model=str(root / "um.npz"),
                           one_per_category=False, eval_every=0, eval_episodes=16)
    train_iql([root / "data"], root / "model", settings, progress=False)
    loaded = make_agent(f"iql:{root / 'model'}", env.world, env.config)
    assert loaded.one_per_category is False
    slates = loaded.act(obs, {})
    with torch.no_grad():
        v, belief, tau = type_values(loaded.algo, torch.as_tensor(flat_observations(obs, 5, 4, 64)),
                                     torch.as_tensor(obs["candidates"]))
    np.testing.assert_array_equal(slates, best_slates(v.double().numpy(), None, belief.double().numpy(), float(tau),
                                                      obs["candidate_categories"], 4, False))


def test_settings_that_cannot_work_are_refused(world):
    root, _, _ = world
    with pytest.raises(ValueError, match="mixture critic needs a belief"):
        IQLSettings(critic="mixture")
    with pytest.raises(ValueError, match="differs from the user model's 4 types"):
        make_iql(IQLSettings(belief_types=6, user_model=str(root / "um.npz")), 5, 4, 64)


class _HistoryZeroed(IQLAgent):
    """The same network, shown no history (every turn looks unplayed): what acting without reading the user gives."""

    def act_batch(self, obs, info):
        obs = {**obs, "history_mask": np.zeros_like(obs["history_mask"]),
               "history_rated": np.zeros_like(obs["history_rated"])}
        return super().act_batch(obs, info)


def _slate_value_gain(trained, zeroed, env) -> np.ndarray:
    """Per user: how much more the trained agent's slates are worth to the true user than the history-zeroed
    network's, on the same observations (turns 2-5, where there is feedback to read; the expected reward of the
    slate for the user's type, so no outcome noise)."""
    from agents.model_based import candidate_utilities
    from pasta_env.rewards import expected_reward

    obs, info = env.reset(seed=123)
    users = env.world.user_model
    gain = np.zeros(env.num_envs)
    for turn in range(5):
        mine = trained.act(obs, info)
        if turn:
            rows = np.arange(env.num_envs)
            util = candidate_utilities(obs, users)[rows, info["user_type"]]  # (N, C) the true type's
            for slates, sign in ((mine, 1.0), (zeroed.act(obs, info), -1.0)):
                picked = np.take_along_axis(util, slates, axis=1)
                gain += sign * expected_reward(picked, users.temperature, env.config.reward) / 4
        obs, _, _, _, info = env.step(mine)
    return gain


@pytest.fixture(scope="module")
def strong_tastes(tmp_path_factory):
    """A toy world of eight user types whose taste outweighs their request: the best slate depends on which the
    user is (bayes beats popular by about 10 points here, 0.4 with two types), which only their choices and
    ratings tell. 600 episodes of lmm with 30% random slates."""
    from pasta_env.worlds import planted_user_model

    root = tmp_path_factory.mktemp("strong-tastes")
    planted_user_model(num_types=8, scale=40.0, intent=4.0).save(root / "users.npz")  # taste over request
    generate(root / "data", DatasetSpec(episodes=600, policy="lmm", epsilon=0.3, chunk=600,
                                        world_options={"user_model": str(root / "users.npz")}),
             progress=False, make_policy=make_agent)
    return root


def test_a_few_hundred_steps_learn_to_read_the_users_feedback(strong_tastes):
    """The mixture critic learned from scratch (random types, the belief's likelihood loss beside TD), 400 steps on
    the toy: the trained network's slates are worth more to the user than the same network's shown no history
    (it conditions on what the user chose and rated). One training seed; the interval is over 1,000 users."""
    from pasta_env.datasets.manifest import env_config_of, read_manifest, world_of
    from pasta_env.vector_env import PastaT2IVectorEnv

    root = strong_tastes
    settings = IQLSettings(steps=400, batch_size=64, hidden=32, eval_every=0, eval_episodes=8, seed=0,
                           critic="mixture", one_per_category=False, belief_types=8, belief_loss=1.0, belief_lr=3e-2)
    train_iql([root / "data"], root / "learned", settings, progress=False)
    kwargs = read_manifest(root / "data")["env_kwargs"]
    config = dataclasses.replace(env_config_of(kwargs), expose_user_type=True)
    users = PastaT2IVectorEnv(num_envs=1000, world=world_of(kwargs), config=config)
    trained = IQLAgent.load(root / "learned", users.world, users.config)
    zeroed = _HistoryZeroed(users.world, users.config, algo=trained.algo, one_per_category=trained.one_per_category)
    gain = _slate_value_gain(trained, zeroed, users)
    half = 1.96 * gain.std(ddof=1) / np.sqrt(len(gain))
    assert gain.mean() - half > 0, (gain.mean(), half)
