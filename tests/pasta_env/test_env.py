"""The PastaT2I-v0 contract: spaces, seeding, episode end, errors, rendering."""

from __future__ import annotations

import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from pasta_env import PRIVILEGED_INFO_KEYS, EpisodeEndedError, PastaT2IEnv
from tests.conftest import ENV_ID, rollout


def test_check_env_passes_without_warnings():
    env = gym.make(ENV_ID)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped, skip_render_check=True)


def test_make_with_module_prefix_imports_the_package():
    code = ("import gymnasium as gym\n"
            "env = gym.make('pasta_env:PastaT2I-v0')\n"
            "obs, info = env.reset(seed=0)\n"
            "print(obs['candidates'].shape)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "(25, 64)"


def test_default_spaces_have_the_paper_sizes():
    env = gym.make(ENV_ID)
    assert env.action_space == gym.spaces.MultiDiscrete([25] * 4)
    obs_space = env.observation_space
    assert obs_space["candidates"].shape == (25, 64)
    assert obs_space["history_slate_images"].shape == (5, 4, 64)
    assert obs_space["turn"].n == 6
    for key, space in obs_space.spaces.items():
        if isinstance(space, gym.spaces.Box):
            assert np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high)), key


def test_episode_terminates_after_horizon_without_truncation(actions):
    env = gym.make(ENV_ID)
    env.reset(seed=1)
    flags = [env.step(a)[2:4] for a in actions]
    assert flags == [(False, False)] * 4 + [(True, False)]
    with pytest.raises(EpisodeEndedError, match="reset"):
        env.step(actions[0])


def test_observation_tracks_turns_and_history(actions):
    env = gym.make(ENV_ID)
    observations, _, infos = rollout(env, 2, actions)
    for t, obs in enumerate(observations):
        assert env.observation_space.contains(obs)
        assert obs["turn"] == t
        assert obs["history_mask"].tolist() == [1] * t + [0] * (5 - t)
        assert not obs["history_prompts"][t:].any()
    last = observations[-1]
    choices = [info["choice"] for info in infos[1:]]
    assert last["history_choices"].tolist() == choices
    # The chosen prompt becomes the current prompt.
    np.testing.assert_allclose(last["current_prompt"], last["history_prompts"][-1])
    np.testing.assert_allclose(observations[0]["current_prompt"], observations[0]["initial_prompt"])


def test_same_seed_same_trajectory(actions):
    a = rollout(gym.make(ENV_ID), 7, actions)
    b = rollout(gym.make(ENV_ID), 7, actions)
    c = rollout(gym.make(ENV_ID), 8, actions)
    for oa, ob in zip(a[0], b[0]):
        for k in oa:
            np.testing.assert_array_equal(oa[k], ob[k])
    assert a[1] == b[1]
    assert [list(i["candidate_texts"]) for i in a[2]] == [list(i["candidate_texts"]) for i in b[2]]
    assert a[1] != c[1]


def test_reset_mid_episode_starts_fresh(actions):
    env = gym.make(ENV_ID)
    env.reset(seed=3)
    env.step(actions[0])
    env.step(actions[1])
    obs, _ = env.reset(seed=3)
    fresh, _ = gym.make(ENV_ID).reset(seed=3)
    for k in obs:
        np.testing.assert_array_equal(obs[k], fresh[k])
    assert obs["turn"] == 0


def test_info_has_texts_and_choices_but_nothing_of_the_hidden_user(actions):
    env = gym.make(ENV_ID)
    _, info = env.reset(seed=0)
    assert len(info["candidate_texts"]) == 25
    assert len(set(info["candidate_texts"])) == 25
    assert info["categories"][:5] == ("rephrase",) * 5
    assert isinstance(info["prompt"], str) and info["prompt"]
    _, reward, *_, info2 = env.step(actions[0])
    assert len(info2["slate_texts"]) == 4 and 0 <= info2["choice"] < 4
    np.testing.assert_array_equal(info2["slate"], actions[0])
    for key in PRIVILEGED_INFO_KEYS:
        assert key not in info and key not in info2


def test_exposed_info_has_the_users_utilities_and_choice_probabilities(actions):
    env = gym.make(ENV_ID, reward="chosen-utility", expose_user_type=True)
    env.reset(seed=0)
    _, reward, *_, info = env.step(actions[0])
    probs, util = info["choice_probs"], info["utilities"]
    assert probs.shape == util.shape == (4,)
    assert np.isclose(probs.sum(), 1.0)
    assert reward == pytest.approx(util[info["choice"]])


def test_slate_texts_are_the_shown_candidates(actions):
    env = gym.make(ENV_ID)
    _, info = env.reset(seed=4)
    shown = [info["candidate_texts"][i] for i in actions[0]]
    _, _, _, _, info = env.step(actions[0])
    assert list(info["slate_texts"]) == shown


def test_expected_reward_is_probability_weighted(actions):
    env = gym.make(ENV_ID, reward="expected-utility", expose_user_type=True)
    env.reset(seed=5)
    _, reward, *_, info = env.step(actions[0])
    assert reward == pytest.approx(float(info["choice_probs"] @ info["utilities"]), rel=1e-5)


def test_expose_user_type():
    env = gym.make(ENV_ID, expose_user_type=True)
    types = {env.reset(seed=s)[1]["user_type"] for s in range(60)}
    assert types == set(range(8))
    _, info = env.reset(seed=0)
    assert info["user_type_name"] == env.unwrapped.world.user_model.type_names[info["user_type"]]


@pytest.mark.parametrize("action, shown", [
    ([3, 3, 3, 3], [3, 0, 1, 2]),
    ([0, 1, 0, 1], [0, 1, 2, 3]),
    ([24, 2, 24, 0], [24, 2, 1, 0]),
    ([7, 8, 9, 10], [7, 8, 9, 10]),
])
def test_a_repeated_index_is_legal_and_filled_by_the_documented_rule(action, shown):
    env = gym.make(ENV_ID)
    _, info0 = env.reset(seed=6)
    obs, *_, info = env.step(np.array(action))
    assert info["slate"].tolist() == shown
    assert list(info["slate_texts"]) == [info0["candidate_texts"][i] for i in shown]
    np.testing.assert_allclose(obs["history_slate_prompts"][0], obs_candidates(env, seed=6)[shown])


def obs_candidates(env, seed):
    obs, _ = gym.make(ENV_ID).reset(seed=seed)
    return obs["candidates"]


def test_every_sampled_action_shows_a_set():
    env = gym.make(ENV_ID)
    env.reset(seed=0)
    env.action_space.seed(0)
    for _ in range(40):
        _, _, done, _, info = env.step(env.action_space.sample())
        assert len(set(info["slate"].tolist())) == 4
        if done:
            env.reset()


@pytest.mark.parametrize("action, match", [
    (np.array([0, 1, 2]), r"shape \(4,\)"),
    (np.array([[0, 1, 2, 3]]), r"shape \(4,\)"),
    (np.array([0.0, 1.0, 2.0, 3.0]), "integers 0..24, got dtype float64"),
    (np.array([0, np.nan, 2, 3]), "NaN"),
    (np.array([0, 1, 2, 25]), "slate index 25 is out of range 0..24"),
    (np.array([0, -1, 2, 3]), "slate index -1 is out of range 0..24"),
    (np.array([True, False, True, False]), "dtype bool"),
    ("0123", r"shape \(4,\)"),
])
def test_invalid_actions_get_clear_errors(action, match):
    env = gym.make(ENV_ID)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=match):
        env.step(action)
    # Nothing was lost: the episode is still at turn 0 and can go on.
    obs, *_ = env.step(np.array([0, 1, 2, 3]))
    assert obs["turn"] == 1


def test_step_before_reset_is_an_error():
    env = PastaT2IEnv()
    with pytest.raises(gym.error.ResetNeeded):
        env.step(np.zeros(4, np.int64))


def test_ansi_render_describes_the_turn(actions):
    env = gym.make(ENV_ID, render_mode="ansi")
    _, info = env.reset(seed=0)
    assert "turn 0/5" in env.render()
    _, _, _, _, info = env.step(actions[0])
    text = env.render()
    assert "turn 1/5" in text and "user picked column" in text
    for shown in info["slate_texts"]:
        assert shown in text
    assert info["categories"][actions[0][0]] in text
    assert "utility" not in text, "the user's utilities are hidden unless expose_user_type=True"
    exposed = gym.make(ENV_ID, render_mode="ansi", expose_user_type=True)
    exposed.reset(seed=0)
    exposed.step(actions[0])
    assert "utility" in exposed.render()


def test_rgb_array_render_draws_the_slate_grid_with_the_chosen_column_framed(actions):
    from pasta_env.vector_env import PastaT2IVectorEnv

    env = gym.make(ENV_ID, render_mode="rgb_array")
    env.reset(seed=0)
    blank = env.render()
    assert blank.dtype == np.uint8 and blank.ndim == 3 and blank.shape[2] == 3
    green = np.array([40, 170, 60], np.uint8)
    assert not (blank == green).all(axis=2).any()  # no choice yet
    _, _, _, _, info = env.step(actions[0])
    frame = env.render()
    assert frame.shape == blank.shape
    framed = np.flatnonzero((frame == green).all(axis=2).any(axis=0))
    width = (frame.shape[1] - 4) // 4  # four columns and their gaps
    assert framed.min() // width == framed.max() // width == info["choice"]
    tiles = frame[10:-10, 10:-10].reshape(-1, 3)
    assert len(np.unique(tiles, axis=0)) > 8  # images differ, so do their tiles
    vec = PastaT2IVectorEnv(num_envs=2, render_mode="rgb_array")
    vec.reset(seed=0)
    vec.step(np.stack([actions[0], actions[0]]))
    frames = vec.render()
    assert len(frames) == 2 and frames[0].shape == frame.shape
    np.testing.assert_array_equal(frames[0], frame)  # sub-env 0 is the single env seeded 0


def test_importing_the_package_loads_no_model_library():
    import subprocess
    import sys

    # numba (the compiled kernels) loads on the first reset, not on import or gym.make.
    code = ("import sys, gymnasium as gym, pasta_env, agents, pasta_env.clip_world\n"
            "heavy = ('torch', 'open_clip', 'diffusers', 'transformers', 'numba')\n"
            "env = gym.make('PastaT2I-v0')\n"
            "print(sorted(m for m in heavy if m in sys.modules))\n"
            "env.reset(seed=0)\n"
            "print(sorted(m for m in heavy if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "['numba']"]


def test_kernels_run_uncached_with_one_warning_where_nothing_is_writable():
    """A read-only install with no writable cache folder: numba finds no place to cache, the env still runs."""
    import subprocess
    import sys

    code = ("import warnings, numpy as np, numba.core.caching as caching, gymnasium as gym, pasta_env\n"
            "caching.CacheImpl._locator_classes = []  # as if no folder could hold the cache\n"
            "env = gym.make('PastaT2I-v0')\n"
            "with warnings.catch_warnings(record=True) as caught:\n"
            "    warnings.simplefilter('always')\n"
            "    obs, _ = env.reset(seed=3)\n"
            "    obs, reward, *_ = env.step(np.array([0, 1, 2, 3]))\n"
            "from simulators.jit import _uncached\n"
            "print(sum('NUMBA_CACHE_DIR' in str(w.message) for w in caught), len(_uncached) >= 5, repr(reward))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    warned, uncached, reward = out.stdout.split()
    env = gym.make(ENV_ID)
    env.reset(seed=3)
    assert (warned, uncached) == ("1", "True") and float(reward) == env.step(np.array([0, 1, 2, 3]))[1]


@pytest.mark.parametrize("kwargs, match", [
    ({"reward": "best"}, "reward must be one of experienced, chosen-utility, expected-utility, got 'best'$"),
    ({"reward": "chosen"}, "got 'chosen' .it was renamed 'chosen-utility'."),
    ({"slate_size": 0}, "slate_size must be a positive integer"),
    ({"num_candidates": 5, "slate_size": 6}, "slate_size .6. must not exceed num_candidates .5."),
    ({"num_candidates": 24}, "the synthetic world proposes 5, 10, 15, 20 or 25 candidates"),
    ({"world": "nowhere"}, "unknown world 'nowhere'; registered worlds: clip, synthetic"),
    ({"render_mode": "human"}, "render_mode must be None or 'ansi'"),
])
def test_bad_arguments_get_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PastaT2IEnv(**kwargs)


def test_smaller_configurations_run():
    env = gym.make(ENV_ID, num_candidates=10, slate_size=3, images_per_prompt=2, horizon=3)
    obs, info = env.reset(seed=0)
    assert obs["candidates"].shape == (10, 64) and len(set(info["candidate_texts"])) == 10
    for _t in range(3):
        obs, r, term, _, info = env.step(env.action_space.sample())
    assert term and obs["history_slate_images"].shape == (3, 3, 64)


def test_a_config_object_replaces_the_loose_arguments():
    from pasta_env import EnvConfig, PastaT2IVectorEnv

    cfg = EnvConfig(num_candidates=10, slate_size=3, horizon=2)
    env = PastaT2IEnv(config=cfg)
    vec = PastaT2IVectorEnv(num_envs=2, config=cfg)
    assert env.config is cfg and vec.config is cfg
    obs, _ = env.reset(seed=0)
    assert obs["candidates"].shape == (10, 64) and env.action_space.shape == (3,)
    with pytest.raises(ValueError, match="pass either config= or slate_size, horizon, not both"):
        PastaT2IEnv(config=cfg, slate_size=2, horizon=4)
    with pytest.raises(ValueError, match="config must be an EnvConfig, got dict"):
        PastaT2IEnv(config={"horizon": 2})


def test_a_column_chosen_from_outside_drives_the_episode():
    slates = np.random.default_rng(5).integers(0, 25, (5, 4))
    free, given, other = (gym.make(ENV_ID, expose_user_type=True).unwrapped for _ in range(3))
    assert isinstance(given, PastaT2IEnv) and isinstance(other, PastaT2IEnv)
    for env in (free, given, other):
        env.reset(seed=9)
    for t, slate in enumerate(slates):  # given the column the simulated user draws, nothing else changes
        obs_f, r_f, *_, info_f = free.step(slate)
        obs_g, r_g, *_, info_g = given.step_with_choice(slate, info_f["choice"])
        assert info_g["chosen_by"] == "given" and "chosen_by" not in info_f
        assert r_f == r_g and info_f["choice"] == info_g["choice"]
        for k in set(obs_f) - {"history_rewards", "history_rated"}:
            np.testing.assert_array_equal(obs_f[k], obs_g[k], err_msg=f"turn {t}: {k}")
        # A given column is a person's choice: no rating is recorded, so agents that read ratings skip it.
        assert obs_f["history_rated"][t] == 1 and obs_f["history_rewards"][t] == np.float32(r_f)
        assert obs_g["history_rated"][t] == 0 and obs_g["history_rewards"][t] == 0
    free.reset(seed=9)
    _, _, *_, drawn = free.step(slates[0])
    column = (drawn["choice"] + 1) % 4  # another column than the user's: the episode follows it
    obs, reward, *_, info = other.step_with_choice(slates[0], column)
    assert info["choice"] == column and obs["history_choices"][0] == column
    np.testing.assert_array_equal(obs["current_prompt"], obs["history_slate_prompts"][0, column])
    assert obs["history_rated"][0] == 0 and np.isfinite(reward)
    for bad in (4, -1, 1.0, True):
        with pytest.raises(ValueError, match="column must be an integer"):
            other.step_with_choice(slates[1], bad)
    with pytest.raises(ValueError, match="before choose"):
        other.choose(0)
    shown = other.show(slates[1])  # show, look, show another slate, then choose: only the last one counts
    assert list(shown["slate_texts"]) and len(shown["slate"]) == 4
    last = other.show(slates[2])
    obs, *_, info = other.choose(2)
    assert obs["turn"] == 2 and list(info["slate"]) == list(last["slate"]) and info["choice"] == 2
    np.testing.assert_array_equal(obs["history_slate_prompts"][1, 2], obs["current_prompt"])
