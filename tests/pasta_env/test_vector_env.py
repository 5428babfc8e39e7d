"""The native vector env: spaces, autoreset, and equality with single envs."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from tests.conftest import ENV_ID


def make_vec(n, **kw):
    return gym.make_vec(ENV_ID, num_envs=n, vectorization_mode="vector_entry_point", **kw)


def test_vector_spaces_are_batched():
    env = make_vec(3)
    assert env.action_space.shape == (3, 4)
    assert env.observation_space["candidates"].shape == (3, 25, 64)
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert len(info["candidate_texts"]) == 3 and len(info["candidate_texts"][0]) == 25


def test_vector_equals_single_envs_seeded_alike():
    n, seed = 6, 40
    rng = np.random.default_rng(0)
    actions = rng.integers(0, 25, (5, n, 4))
    vec = make_vec(n, expose_user_type=True)
    vobs, vinfo = vec.reset(seed=seed)
    singles = [gym.make(ENV_ID, expose_user_type=True) for _ in range(n)]
    sres = [e.reset(seed=seed + i) for i, e in enumerate(singles)]
    for i in range(n):
        for k in vobs:
            np.testing.assert_array_equal(vobs[k][i], sres[i][0][k])
        assert list(vinfo["candidate_texts"][i]) == list(sres[i][1]["candidate_texts"])
    for t in range(5):
        vobs, vrew, vterm, vtrunc, vinfo = vec.step(actions[t])
        for i, e in enumerate(singles):
            obs, rew, term, trunc, info = e.step(actions[t, i])
            for k in obs:
                np.testing.assert_array_equal(vobs[k][i], obs[k])
            assert vrew[i] == rew and vterm[i] == term and vtrunc[i] == trunc
            assert vinfo["choice"][i] == info["choice"]
            assert vinfo["user_type"][i] == info["user_type"]
            assert list(vinfo["slate_texts"][i]) == list(info["slate_texts"])


def test_next_step_autoreset_continues_each_users_stream():
    n = 3
    vec = make_vec(n)
    vec.reset(seed=10)
    a = np.zeros((n, 4), np.int64)
    for _ in range(5):
        *_, term, _, _ = vec.step(a)
    assert term.all()
    obs, rew, term, trunc, _ = vec.step(a)  # the autoreset step
    assert (rew == 0).all() and not term.any() and (obs["turn"] == 0).all()
    # Single env i: the same second episode after reset() without a seed.
    for i in range(n):
        e = gym.make(ENV_ID)
        e.reset(seed=10 + i)
        for _ in range(5):
            e.step(a[i])
        sobs, _ = e.reset()
        np.testing.assert_array_equal(obs["candidates"][i], sobs["candidates"])


def test_vector_rejects_bad_slates():
    vec = make_vec(2)
    vec.reset(seed=0)
    with pytest.raises(ValueError, match=r"slates must have shape \(2, 4\)"):
        vec.step(np.zeros((3, 4), np.int64))
    with pytest.raises(ValueError, match="out of range 0..24"):
        vec.step(np.full((2, 4), 99))


def test_vector_seed_list_and_render():
    vec = make_vec(2, render_mode="ansi")
    obs, _ = vec.reset(seed=[5, 9])
    single, _ = gym.make(ENV_ID).reset(seed=9)
    np.testing.assert_array_equal(obs["candidates"][1], single["candidates"])
    texts = vec.render()
    assert len(texts) == 2 and all("turn 0/5" in t for t in texts)
    with pytest.raises(ValueError, match="got 3 seeds for 2 environments"):
        vec.reset(seed=[1, 2, 3])


def test_threaded_shards_give_the_same_trajectories():
    n = 7
    rng = np.random.default_rng(1)
    actions = rng.integers(0, 25, (6, n, 4))
    results = []
    for threads in (1, 3):
        vec = make_vec(n, num_threads=threads, expose_user_type=True, render_mode="ansi")
        assert vec.num_threads == threads
        obs, info = vec.reset(seed=3)
        trace = [(obs, info["user_type"], list(info["candidate_texts"][6]))]
        for t in range(6):
            obs, rew, term, _, info = vec.step(actions[t])
            trace.append((obs, rew, term, info.get("choice"), list(info["candidate_texts"][6]),
                          list(vec.render())))
        vec.close()
        results.append(trace)
    for a, b in zip(*results):
        for x, y in zip(a, b):
            if isinstance(x, dict):
                for k in x:
                    np.testing.assert_array_equal(x[k], y[k])
            else:
                np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    with pytest.raises(ValueError, match="num_threads must be an integer in 1..num_envs"):
        make_vec(2, num_threads=5)


@pytest.mark.parametrize("threads", [1, 2])
def test_large_batches_equal_single_envs_across_episodes(threads):
    """A large batch, on one thread or sharded: two whole episodes, autoreset between, equal single envs
    seeded alike, the history's zeros of unplayed turns included."""
    n, seed, users = 40, 7, (0, 17, 39)
    rng = np.random.default_rng(5)
    actions = rng.integers(0, 25, (11, n, 4))
    vec = make_vec(n, num_threads=threads)
    vobs, _ = vec.reset(seed=seed)
    singles = {i: gym.make(ENV_ID) for i in users}
    sobs = {i: e.reset(seed=seed + i)[0] for i, e in singles.items()}
    for t in range(11):
        for i in users:
            for k in vobs:
                np.testing.assert_array_equal(vobs[k][i], sobs[i][k], err_msg=f"step {t}, user {i}, {k}")
        vobs, vrew, vterm, _, _ = vec.step(actions[t])
        for i, e in singles.items():
            if t == 5:  # the vector env's autoreset step: the single env starts its next episode
                sobs[i] = e.reset()[0]
                assert vrew[i] == 0
            else:
                sobs[i], rew, term, _, _ = e.step(actions[t, i])
                assert vrew[i] == rew and vterm[i] == term
    assert (vobs["turn"] == 5).all() and not (vobs["history_slate_images"] == 0).all()
    vec.close()


@pytest.mark.parametrize("threads", [1, 3])
def test_copy_false_returns_the_envs_own_arrays_on_the_same_trajectories(threads):
    fresh = gym.make_vec(ENV_ID, num_envs=30, vectorization_mode="vector_entry_point", num_threads=threads)
    own = gym.make_vec(ENV_ID, num_envs=30, vectorization_mode="vector_entry_point", num_threads=threads,
                       copy=False)
    a, _ = fresh.reset(seed=4)
    b, _ = own.reset(seed=4)
    first = b
    rng = np.random.default_rng(2)
    for t in range(12):  # two episodes and the autoresets between them
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"step {t}: {key}")
        kept = {k: v.copy() for k, v in b.items()}
        slates = rng.integers(0, 25, (30, 4))
        a, ra, *_ = fresh.step(slates)
        b, rb, *_ = own.step(slates)
        np.testing.assert_array_equal(ra, rb)
        assert all(b[k] is first[k] for k in b)  # the same arrays, overwritten
        assert t == 4 or not all(np.array_equal(kept[k], b[k]) for k in ("candidates", "history_mask"))
    with pytest.raises(ValueError, match="copy must be True or False"):
        gym.make_vec(ENV_ID, num_envs=2, vectorization_mode="vector_entry_point", copy="no")
