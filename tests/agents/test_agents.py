"""Agents: legal slates, the Bayesian posterior, and the evaluation harness."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

from agents import AGENTS, Agent, candidate_utilities, make_agent, type_log_posterior
from agents.evaluation import ci95, evaluate, plot_per_turn, public_info
from pasta_env import PRIVILEGED_INFO_KEYS
from tests.conftest import ENV_ID


def make_vec(n, **kw):
    return gym.make_vec(ENV_ID, num_envs=n, vectorization_mode="vector_entry_point",
                        expose_user_type=True, **kw)


ONE_PER_CATEGORY = {"random-diverse", "lmm", "greedy"}


@pytest.mark.parametrize("name", sorted(AGENTS))
def test_agents_emit_legal_slates_that_are_sets(name):
    vec = make_vec(16)
    agent = make_agent(name, vec.world, vec.config, seed=0)
    obs, info = vec.reset(seed=0)
    for _ in range(5):
        slates = agent.act(obs, info if agent.privileged else public_info(info))
        assert vec.action_space.contains(slates.astype(np.int64))
        if name != "random":
            assert all(len(set(row)) == 4 for row in slates.tolist()), "a slate shows distinct candidates"
        if name in ONE_PER_CATEGORY:
            cats = np.take_along_axis(obs["candidate_categories"], slates, axis=1)
            assert all(len(set(row)) == 4 for row in cats.tolist())
        obs, _, _, _, info = vec.step(slates)
        if name != "random":
            np.testing.assert_array_equal(info["slate"], slates)
        assert all(len(set(row)) == 4 for row in info["slate"].tolist())


@pytest.mark.parametrize("name", sorted(AGENTS))
def test_agents_work_with_the_single_env(name):
    env = gym.make(ENV_ID, expose_user_type=True)
    agent = make_agent(name, env.unwrapped.world, env.unwrapped.config, seed=0)
    obs, info = env.reset(seed=1)
    done = False
    while not done:
        slate = agent.act(obs, info)
        assert slate.shape == (4,) and env.action_space.contains(slate.astype(np.int64))
        obs, _, done, _, info = env.step(slate)


def test_lmm_shows_the_generators_own_top_ranked_candidates_one_per_category():
    vec = make_vec(64)
    obs, info = vec.reset(seed=0)
    slates = make_agent("lmm", vec.world, vec.config).act(obs, public_info(info))
    scores = vec.world.candidates.ranking_scores(obs["candidates"], obs["initial_prompt"], obs["current_prompt"])
    cats = obs["candidate_categories"]
    for n in range(64):
        best = {c: max(np.flatnonzero(cats[n] == c), key=lambda i: scores[n, i]) for c in range(5)}
        top4 = sorted(best.values(), key=lambda i: -scores[n, i])[:4]
        assert sorted(slates[n].tolist()) == sorted(top4)


def test_lmm_is_user_agnostic():
    """Same request and candidates, different hidden users: the same slate."""
    vec = make_vec(8)
    obs, info = vec.reset(seed=3, options={"user_type": np.arange(8)})
    obs2, _ = vec.reset(seed=3, options={"user_type": np.arange(8)[::-1].copy()})
    agent = make_agent("lmm", vec.world, vec.config)
    np.testing.assert_array_equal(agent.act(obs, {}), agent.act(obs2, {}))


def test_oracle_without_the_user_type_explains_the_fix():
    env = gym.make(ENV_ID)
    obs, info = env.reset(seed=0)
    agent = make_agent("oracle", env.unwrapped.world, env.unwrapped.config)
    with pytest.raises(ValueError, match="expose_user_type=True"):
        agent.act(obs, info)


def test_unknown_agent_lists_the_known_ones():
    vec = make_vec(1)
    known = "bayes, bayes-diverse, greedy, iql:MODEL, lmm, oracle"
    with pytest.raises(ValueError, match=f"unknown agent .smart.; known agents: {known}"):
        make_agent("smart", vec.world, vec.config)


def test_posterior_concentrates_on_the_true_type_over_long_interactions():
    n = 200
    vec = make_vec(n, horizon=25)
    explorer = make_agent("random-diverse", vec.world, vec.config, seed=0)
    obs, info = vec.reset(seed=0)
    early = None
    for t in range(25):
        obs, _, _, _, info = vec.step(explorer.act(obs, info))
        if t == 0:
            early = np.exp(type_log_posterior(obs, vec.world.user_model))
    post = np.exp(type_log_posterior(obs, vec.world.user_model))
    truth = info["user_type"]
    p_true = post[np.arange(n), truth]
    assert np.allclose(post.sum(axis=1), 1.0)
    assert p_true.mean() > 0.8 and (post.argmax(axis=1) == truth).mean() > 0.85
    assert p_true.mean() > early[np.arange(n), truth].mean() + 0.4


class Recorder(Agent):
    """Records what it was shown at the first turn; plays lmm's slate."""

    privileged = True

    def __init__(self, name, world, config):
        super().__init__(world, config)
        self.name, self.seen = name, []

    def act_batch(self, obs, info):
        if obs["turn"][0] == 0:
            self.seen.append((info["user_type"].copy(), obs["initial_prompt"].copy()))
        return np.tile(np.arange(0, 20, 5), (obs["candidates"].shape[0], 1))


def test_common_random_numbers_across_agents():
    vec = make_vec(1)
    a, b = Recorder("a", vec.world, vec.config), Recorder("b", vec.world, vec.config)
    result = evaluate([a, b], episodes=70, seed=5, num_envs=32, progress=False)
    types_a = np.concatenate([t for t, _ in a.seen])
    types_b = np.concatenate([t for t, _ in b.seen])
    np.testing.assert_array_equal(types_a, types_b)
    np.testing.assert_array_equal(np.concatenate([p for _, p in a.seen]),
                                  np.concatenate([p for _, p in b.seen]))
    assert len(types_a) == 70 and len(set(types_a.tolist())) > 1
    # Same slates on the same users: identical returns.
    np.testing.assert_array_equal(result.agents["a"].returns, result.agents["b"].returns)


def test_the_reference_agents_bracket_the_problem():
    result = evaluate(["random", "lmm", "popular", "greedy", "bayes", "oracle"], episodes=600, seed=11,
                      progress=False)
    diffs = {(c["a"], c["b"]): c for c in result.comparisons()}
    assert result.ranking()[0] == "oracle"
    for pair in [("oracle", "bayes"), ("bayes", "greedy"), ("bayes", "popular"), ("greedy", "lmm"),
                 ("lmm", "random")]:
        assert diffs[pair]["mean_difference"] > diffs[pair]["ci95"] > 0, pair
    bayes = result.agents["bayes"].utilities.mean(axis=0)
    assert np.all(np.diff(bayes) > 0), "bayes's utility rises as its posterior finds the user"


class DuplicateShower(Agent):
    """Shows the true type's best candidate in every column (a repeated index)."""

    name = "duplicates"
    privileged = True

    def act_batch(self, obs, info):
        util = candidate_utilities(obs, self.world.user_model)
        best = util[np.arange(len(info["user_type"])), info["user_type"]].argmax(axis=1)
        return np.repeat(best[:, None], self.config.slate_size, axis=1)


def test_oracle_is_at_least_every_agent_and_a_duplicate_shower():
    names = ["random", "lmm", "popular", "greedy", "bayes", "planner"]
    vec = make_vec(1)
    result = evaluate([*names, "oracle", DuplicateShower(vec.world, vec.config)], episodes=300, seed=21,
                      progress=False)
    oracle = result.agents["oracle"].returns
    for name in [*names, "duplicates"]:
        diff = oracle - result.agents[name].returns
        assert diff.mean() + ci95(diff) > 0, name


def test_planner_is_not_worse_than_bayes_beyond_noise():
    result = evaluate(["bayes", "planner"], episodes=400, seed=4, progress=False)
    diff = result.agents["planner"].returns - result.agents["bayes"].returns
    assert diff.mean() + ci95(diff) > 0


class InfoSpy(Agent):
    """Records every info key it is given; plays the generator's first candidates."""

    name = "spy"

    def __init__(self, world, config, privileged=False):
        super().__init__(world, config)
        self.privileged = privileged
        self.keys: set[str] = set()

    def act_batch(self, obs, info):
        self.keys |= set(info)
        return np.tile(np.arange(0, 20, 5), (obs["candidates"].shape[0], 1))


def test_the_hidden_user_never_reaches_a_non_privileged_agent():
    vec = make_vec(1)
    spy, insider = InfoSpy(vec.world, vec.config), InfoSpy(vec.world, vec.config, privileged=True)
    insider.name = "insider"
    evaluate([spy, insider], episodes=20, seed=0, num_envs=8, progress=False)
    assert spy.keys and not spy.keys & set(PRIVILEGED_INFO_KEYS)
    assert {"user_type", "utilities", "choice_probs"} <= insider.keys
    # The env itself keeps them out of info unless asked.
    env = gym.make(ENV_ID)
    obs, info = env.reset(seed=0)
    _, _, _, _, info2 = env.step(np.array([0, 5, 10, 15]))
    assert not (set(info) | set(info2)) & set(PRIVILEGED_INFO_KEYS)
    with pytest.raises(ValueError, match="privileged = True"):
        evaluate(["random"], episodes=2, expose_user_type=True, progress=False)


def test_json_has_the_documented_keys(tmp_path):
    result = evaluate(["random", "greedy"], episodes=40, seed=0, num_envs=16, progress=False)
    payload = json.loads(json.dumps(result.to_dict()))
    assert set(payload) == {"settings", "agents", "comparisons", "ranking", "elapsed_s"}
    summary = payload["agents"]["greedy"]
    assert set(summary) == {"episodes", "return_mean", "return_ci95", "return_std",
                            "per_turn_utility_mean", "per_turn_utility_ci95", "choice_entropy_mean",
                            "choice_entropy_per_turn", "true_type_mass_mean", "true_type_mass_per_turn",
                            "information_per_turn", "request_kept_rate", "request_cosine_mean", "seconds"}
    assert summary["episodes"] == 40 and len(summary["per_turn_utility_mean"]) == 5
    assert payload["settings"]["slate_size"] == 4 and payload["settings"]["seed"] == 0
    plot_per_turn(result, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_evaluation_with_a_prompt_file(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("a watercolor of my grandmother's garden\na robot reading a newspaper\n")
    result = evaluate(["lmm", "oracle"], episodes=20, seed=0, prompts=str(path), progress=False)
    assert result.settings["prompts"] == str(path)
    assert result.agents["oracle"].returns.mean() > result.agents["lmm"].returns.mean()


def test_registries_refuse_a_second_entry_under_one_name():
    from agents import register_agent
    from pasta_env.worlds import make_synthetic_world, register_world

    class Impostor(Agent):
        name = "bayes"

    with pytest.raises(ValueError, match="an agent named 'bayes' is already registered"):
        register_agent(Impostor)
    register_agent(AGENTS["bayes"])  # the same class again is harmless
    with pytest.raises(ValueError, match="a world named 'synthetic' is already registered"):
        register_world("synthetic", lambda **kw: make_synthetic_world(**kw))
    register_world("synthetic", make_synthetic_world)
