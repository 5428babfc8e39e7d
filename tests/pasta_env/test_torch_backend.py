"""The synthetic world's torch backend against the numba path: values, distributions, agents, the vector API."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from scipy import stats

from pasta_env.config import EnvConfig
from pasta_env.core import BatchCore
from pasta_env.worlds import make_world, planted_user_model
from tests.conftest import ENV_ID

torch = pytest.importorskip("torch")

from pasta_env.torch_core import CounterUniforms, TorchCore, distinct_slates  # noqa: E402
from pasta_env.torch_vector_env import PastaT2ITorchVectorEnv  # noqa: E402


def make_torch_vec(n: int, **kwargs):
    return gym.make_vec(ENV_ID, num_envs=n, vectorization_mode="vector_entry_point", device="cpu", **kwargs)


def as_numpy(obs: dict) -> dict:
    return {k: v.cpu().numpy() for k, v in obs.items()}


def play_both(world, config: EnvConfig, users: int, seed: int, chunk: int | None = None):
    """Both cores from the same uniforms and slates; yields (turn, numba core, torch core, rewards, rewards)."""
    a = BatchCore(world, config, users)
    b = TorchCore(world, config, users, "cpu", chunk=chunk)
    rng = np.random.default_rng(seed)
    u = rng.random((users, a.layout.size), dtype=np.float32)
    a.reset(u)
    b.reset(torch.as_tensor(u))
    for t in range(config.horizon):
        yield t, a, b, None, None
        slates = rng.integers(0, config.num_candidates, (users, config.slate_size))
        ra = a.step(slates)
        rb = b.step(torch.as_tensor(slates)).numpy()
        yield t, a, b, ra, rb


@pytest.mark.parametrize("reward", ["experienced", "chosen-utility", "expected-utility"])
def test_the_same_uniforms_give_the_numba_paths_episode_within_rounding(reward):
    world = make_world("synthetic")
    config = EnvConfig(reward=reward)
    users = 1500
    agree = np.ones(users, bool)  # users whose choices agreed on every turn so far
    for t, a, b, ra, rb in play_both(world, config, users, seed=1, chunk=512):
        if ra is None:  # before the step: the candidates
            assert (a.types == b.types.numpy()).all() and (a.prompt_index == b.prompt_index.numpy()).all()
            np.testing.assert_array_equal(a.cands.ids[agree], b.cand_ids.numpy()[agree])
            np.testing.assert_allclose(a.cands.embeddings[agree], b.state["candidates"].numpy()[agree], atol=1e-6)
            continue
        np.testing.assert_array_equal(a.slate, b.slate.numpy())
        np.testing.assert_allclose(a.utilities[agree], b.utilities.numpy()[agree], atol=1e-4)
        np.testing.assert_allclose(a.choice_probs[agree], b.choice_probs.numpy()[agree], atol=1e-5)
        np.testing.assert_allclose(ra[agree], rb[agree], atol=1e-4)
        same = a.choice == b.choice.numpy()
        assert same[agree].mean() > 0.999, f"turn {t}: choices differ for {(~same[agree]).sum()} users"
        agree &= same
    obs_a, obs_b = a.observation(), as_numpy(b.observation())
    assert obs_a.keys() == obs_b.keys()
    for key in obs_a:
        assert obs_a[key].dtype == obs_b[key].dtype and obs_a[key].shape == obs_b[key].shape, key
        np.testing.assert_allclose(obs_a[key][agree].astype(np.float64), obs_b[key][agree].astype(np.float64),
                                   atol=1e-4, err_msg=key)


def test_the_taste_user_model_and_other_sizes_agree_with_the_numba_path_too():
    world = make_world("synthetic", user_model=planted_user_model(), num_candidates=10)
    config = EnvConfig(num_candidates=10, slate_size=3, images_per_prompt=2, horizon=3)
    for _, a, b, ra, rb in play_both(world, config, 800, seed=2):
        np.testing.assert_array_equal(a.cands.ids, b.cand_ids.numpy())
        if ra is not None:
            np.testing.assert_allclose(a.utilities, b.utilities.numpy(), atol=1e-4)
            np.testing.assert_allclose(ra, rb, atol=1e-4)
            assert (a.choice == b.choice.numpy()).mean() > 0.99


def test_a_candidate_banks_first_turn_is_proposed_on_the_device(tmp_path):
    from simulators.candidates.bank import build_bank
    from simulators.candidates.language_model import LanguageModelCandidateGenerator
    from simulators.text.encoders import StaticTextEncoder
    from tests.simulators.test_bank import REQUESTS, Replies

    build_bank(REQUESTS, LanguageModelCandidateGenerator(Replies(), StaticTextEncoder.load()), tmp_path / "bank.json")
    world = make_world("synthetic", prompts=REQUESTS, candidates=str(tmp_path / "bank.json"))
    first = None
    for t, a, b, ra, _ in play_both(world, EnvConfig(horizon=2), 60, seed=3):
        if ra is None:
            np.testing.assert_array_equal(a.cands.ids, b.cand_ids.numpy())
            np.testing.assert_allclose(a.cands.embeddings, b.state["candidates"].numpy(), atol=1e-6)
            first = b.cand_ids.numpy() if t == 0 else first
    given = [world.candidates.first_turn[r.astype(np.int32).tobytes()] for r in world.initial_prompts.ids]
    assert all(any((f == g).all() for g in given) for f in first)  # the bank's candidates, not the rules'


def test_repeated_slate_indices_are_filled_as_the_numpy_rule_fills_them():
    from pasta_env.spaces import distinct_slates as numpy_rule

    rng = np.random.default_rng(0)
    for C, L in ((25, 4), (5, 4), (4, 4), (6, 3)):
        slates = rng.integers(0, C, (5000, L))
        slates[:50] = slates[:50, :1]  # every column the same
        np.testing.assert_array_equal(distinct_slates(torch, torch.as_tensor(slates), C).numpy(), numpy_rule(slates, C))


def _reference_uniform(seed: int, episode: int, j: int) -> float:
    """The counter hash in plain Python integers (what the tensor code must compute bit for bit)."""
    m = 0xFFFFFFFF

    def mix(h):
        h ^= h >> 16
        h = (h * 0x85EBCA6B) & m
        h ^= h >> 13
        h = (h * 0xC2B2AE35) & m
        return h ^ (h >> 16)

    s0, s1, e0, e1 = seed & m, (seed >> 32) & m, episode & m, (episode >> 32) & m
    a = mix(s0 ^ 0x9E3779B9)
    b = mix(s1 ^ ((a * 0x27D4EB2F) & m) ^ 0x165667B1)
    a = mix(a ^ ((e0 * 0xC2B2AE3D) & m) ^ b)
    b = mix(b ^ (((e1 ^ 0x61C88647) * 0x85EBCA77) & m) ^ a)
    x = mix(a ^ (((j + 1) * 0x9E3779B1) & m))
    y = mix(b ^ ((x * 0x7FEB352D) & m) ^ j)
    return (mix(x ^ ((y * 0x846CA68B) & m)) >> 8) * 2.0 ** -24


def test_device_uniforms_are_the_hash_bit_for_bit_and_look_uniform_and_independent():
    gen = CounterUniforms(torch)
    seeds = torch.tensor([0, 1, 2 ** 40 + 7, 2 ** 63 - 1], dtype=torch.int64)
    episodes = torch.tensor([0, 5, 2 ** 33, 1], dtype=torch.int64)
    u = gen.draw(seeds, episodes, 7)
    want = [[_reference_uniform(int(s), int(e), j) for j in range(7)] for s, e in zip(seeds, episodes)]
    np.testing.assert_array_equal(u.numpy(), np.array(want, np.float32))
    # 100,000 consecutive seeds (as reset(seed=s) gives sub-environments), 98 draws each (one episode).
    n = 100_000
    seeds = torch.arange(n, dtype=torch.int64) + 12345
    first = gen.draw(seeds, torch.zeros(n, dtype=torch.int64), 98).numpy()
    second = gen.draw(seeds, torch.ones(n, dtype=torch.int64), 98).numpy()
    assert first.dtype == np.float32 and 0.0 <= first.min() and first.max() < 1.0
    assert np.all(first * 2 ** 24 == np.floor(first * 2 ** 24))  # 24-bit grid, as float32 draws
    for sample in (first[:, 0], first[:, 97], first.ravel()[::97], second[:, 3]):
        assert stats.kstest(sample, "uniform").pvalue > 1e-3
    # Neighbouring seeds, neighbouring draws and the next episode are uncorrelated (|r| < 5 / sqrt(n)).
    for x, y in ((first[:-1, 0], first[1:, 0]), (first[:, 0], first[:, 1]), (first[:, 5], second[:, 5])):
        assert abs(np.corrcoef(x, y)[0, 1]) < 5 / np.sqrt(n)
    assert len(np.unique(first[:, 0])) > 0.99 * n


@pytest.fixture(scope="module")
def many_users():
    """100,000 users per backend, each with its own draws, random slates; per turn: utility, choice, reward."""
    n, config = 100_000, EnvConfig()
    out = {}
    for backend in ("numba", "torch"):
        if backend == "numba":
            env = gym.make_vec(ENV_ID, num_envs=n, vectorization_mode="vector_entry_point", expose_user_type=True,
                               copy=False)
        else:
            env = make_torch_vec(n, expose_user_type=True, copy=False)
        env.reset(seed=0)
        rng = np.random.default_rng(7)
        turns = []
        for _ in range(config.horizon):
            _, reward, _, _, info = env.step(rng.integers(0, 25, (n, 4)))
            util, choice = np.asarray(info["utilities"]), np.asarray(info["choice"])
            turns.append({"utility": np.take_along_axis(util, choice[:, None], 1)[:, 0],
                          "best": util.max(1), "choice": choice, "reward": np.asarray(reward, np.float64)})
        out[backend] = turns
        env.close()
    return out


@pytest.mark.parametrize("stat", ["utility", "best", "reward"])
def test_per_turn_distributions_match_the_numba_path_on_100k_users(many_users, stat):
    for t, (a, b) in enumerate(zip(many_users["numba"], many_users["torch"])):
        res = stats.ks_2samp(a[stat], b[stat])
        assert res.pvalue > 1e-3, f"turn {t}: {stat} differs (KS {res.statistic:.4f}, p {res.pvalue:.2g})"
        se = np.sqrt(a[stat].var() / len(a[stat]) + b[stat].var() / len(b[stat]))
        assert abs(a[stat].mean() - b[stat].mean()) < 4 * se


def test_per_turn_choices_match_the_numba_path_on_100k_users(many_users):
    for t, (a, b) in enumerate(zip(many_users["numba"], many_users["torch"])):
        table = np.stack([np.bincount(a["choice"], minlength=4), np.bincount(b["choice"], minlength=4)])
        assert stats.chi2_contingency(table).pvalue > 1e-3, f"turn {t}: {table}"


def _returns(agent_name: str, backend: str, users: int, seed: int) -> np.ndarray:
    from agents import make_agent

    if backend == "numba":
        env = gym.make_vec(ENV_ID, num_envs=users, vectorization_mode="vector_entry_point")
    else:
        env = make_torch_vec(users)
    agent = make_agent(agent_name, env.unwrapped.world if backend == "numba" else env.world, env.config, seed=seed)
    obs, info = env.reset(seed=seed)
    agent.reset(seed)
    total = np.zeros(users)
    for _ in range(env.config.horizon):
        obs = obs if backend == "numba" else as_numpy(obs)
        obs, reward, *_, info = env.step(agent.act(obs, info))
        total += np.asarray(reward)
    env.close()
    return total


def test_the_agents_rank_the_same_on_both_backends():
    names, users = ("random", "lmm", "popular", "bayes"), 3000
    means = {}
    for name in names:
        a, b = _returns(name, "numba", users, 11), _returns(name, "torch", users, 11)
        se = np.sqrt(a.var() / users + b.var() / users)
        assert abs(a.mean() - b.mean()) < 4 * se, f"{name}: {a.mean():.3f} vs {b.mean():.3f} (se {se:.3f})"
        means[name] = (a.mean(), b.mean())
    order_numba = sorted(names, key=lambda k: means[k][0])
    order_torch = sorted(names, key=lambda k: means[k][1])
    assert order_numba == order_torch, means
    assert order_torch[0] == "random" and order_torch[-1] == "bayes"


def test_the_vector_api_contract_shapes_dtypes_spaces_and_next_step_autoreset():
    env = make_torch_vec(6, expose_user_type=True)
    assert isinstance(env, PastaT2ITorchVectorEnv) and env.num_envs == 6
    assert env.metadata["autoreset_mode"] is not None
    obs, info = env.reset(seed=5)
    assert env.observation_space.contains(as_numpy(obs))
    assert all(isinstance(v, torch.Tensor) and v.device.type == "cpu" for v in obs.values())
    assert set(info) == {"candidate_texts", "user_type"} and isinstance(info["candidate_texts"][0][0], str)
    for t in range(env.config.horizon):
        obs, reward, terminated, truncated, info = env.step(torch.as_tensor(env.action_space.sample()))
        assert env.observation_space.contains(as_numpy(obs))
        assert reward.dtype == torch.float32 and reward.shape == (6,)
        assert terminated.dtype == torch.bool and bool(terminated.all()) == (t == env.config.horizon - 1)
        assert not bool(truncated.any())
        assert int(obs["turn"][0]) == t + 1 and info["slate"].shape == (6, 4) and info["choice"].shape == (6,)
        assert (obs["history_rewards"][:, t] == reward).all()
    # Next-step autoreset: the actions are ignored, new episodes start (the seeds' next ones), zero reward.
    obs, reward, terminated, truncated, info = env.step(torch.zeros((6, 4), dtype=torch.int64))
    assert (reward == 0).all() and not bool(terminated.any()) and (obs["turn"] == 0).all()
    assert "slate" not in info and not bool(obs["history_mask"].any())
    again = make_torch_vec(6, expose_user_type=True)
    obs2, _ = again.reset(seed=5)
    assert not torch.equal(obs["candidates"], obs2["candidates"])  # the second episode is not the first


def test_seeds_reproduce_episodes_and_sub_environment_i_is_seed_s_plus_i():
    def episode(env, seed, n):
        obs, info = env.reset(seed=seed)
        out = [obs["candidates"].clone()]
        g = np.random.default_rng(0)
        for _ in range(3):
            obs, reward, *_ = env.step(g.integers(0, 25, (n, 4)))
            out += [obs["history_slate_images"].clone(), reward.clone()]
        return out

    a, b = make_torch_vec(4), make_torch_vec(4)
    for x, y in zip(episode(a, 9, 4), episode(b, 9, 4)):
        assert torch.equal(x, y)
    for x, y in zip(episode(a, 9, 4), episode(b, [9, 10, 11, 12], 4)):
        assert torch.equal(x, y)
    assert not torch.equal(episode(a, 9, 4)[0], episode(b, 10, 4)[0])
    one = make_torch_vec(1)
    assert torch.equal(episode(one, 11, 1)[0][0], episode(a, 9, 4)[0][2])  # env 2 of seed 9 is seed 11
    # seed=None: fresh entropy, then each reset continues with the streams' next episodes.
    c = make_torch_vec(4)
    first = c.reset()[0]["candidates"].clone()
    assert not torch.equal(first, c.reset()[0]["candidates"])


def test_user_type_option_copy_false_and_errors_that_name_the_fix():
    env = make_torch_vec(3, expose_user_type=True)
    _, info = env.reset(seed=0, options={"user_type": 2})
    assert (info["user_type"] == 2).all()
    with pytest.raises(ValueError, match="0..7"):
        env.reset(options={"user_type": 8})
    shared = make_torch_vec(3, copy=False)
    obs, _ = shared.reset(seed=0)
    nxt, *_ = shared.step(np.zeros((3, 4), np.int64))
    assert nxt["history_mask"] is obs["history_mask"] and int(obs["history_mask"][0, 0]) == 1
    huge = make_torch_vec(3)
    huge.reset(seed=2 ** 63 - 2)  # seeds run on modulo 2**63, as the streams' keys do
    assert huge.unwrapped._seeds.tolist() == [2 ** 63 - 2, 2 ** 63 - 1, 0]
    with pytest.raises(ValueError, match="non-negative"):
        huge.reset(seed=-1)
    with pytest.raises(gym.error.ResetNeeded):
        make_torch_vec(2).step(np.zeros((2, 4), np.int64))
    for bad, message in ((np.zeros((3, 5), np.int64), r"shape \(3, 4\)"), (np.zeros((3, 4)), "integers"),
                         (torch.ones((3, 4), dtype=torch.bool), "integers"), (np.full((3, 4), "a"), "integers"),
                         (np.full((3, 4), 25), "out of range 0..24"), (np.full((3, 4), -1), "out of range")):
        with pytest.raises(ValueError, match=message):
            env.step(bad)
    for device, message in (("gpu", "not a torch device"), (7, "device name"), ("mps", "'cpu' and 'cuda'")):
        with pytest.raises(ValueError, match=message):
            gym.make_vec(ENV_ID, num_envs=2, vectorization_mode="vector_entry_point", device=device)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            gym.make_vec(ENV_ID, num_envs=2, vectorization_mode="vector_entry_point", device="cuda")
    from dataclasses import replace

    world = make_world("synthetic")

    class OwnUsers(type(world.user_model)):  # type: ignore[misc]  # a user model the backend cannot port
        pass

    own = replace(world, user_model=OwnUsers(**{f: getattr(world.user_model, f) for f in
                                                ("prior", "temperature", "aggregation", "type_names", "trunk_w",
                                                 "trunk_b", "head_w", "head_b")}))
    with pytest.raises(ValueError, match="OwnUsers user model. Leave device unset"):
        gym.make_vec(ENV_ID, num_envs=2, vectorization_mode="vector_entry_point", device="cpu", world=own)
    with pytest.raises(ValueError, match="render"):
        make_torch_vec(2, render_mode="ansi")
    with pytest.raises(ValueError, match="belongs to the vector env"):
        gym.make(ENV_ID, device="cpu")


def test_without_a_device_make_vec_still_builds_the_numpy_env():
    from pasta_env import PastaT2IVectorEnv

    env = gym.make_vec(ENV_ID, num_envs=2, vectorization_mode="vector_entry_point")
    assert type(env) is PastaT2IVectorEnv
    obs, _ = env.reset(seed=0)
    assert isinstance(obs["candidates"], np.ndarray)


def test_a_world_with_a_device_option_of_its_own_keeps_it_on_the_numpy_env():
    from dataclasses import replace

    from pasta_env import PastaT2IVectorEnv, register_world
    from pasta_env.worlds import make_synthetic_world, world_names

    seen = []

    def factory(prompts=None, num_candidates=25, device="cpu"):  # like the clip world: its models' device
        seen.append(device)
        return replace(make_synthetic_world(prompts=prompts, num_candidates=num_candidates), name="with-device")

    if "with-device" not in world_names():
        register_world("with-device", factory)
    env = gym.make_vec(ENV_ID, num_envs=2, vectorization_mode="vector_entry_point", world="with-device",
                       device="meta-device-of-the-world")
    assert type(env) is PastaT2IVectorEnv and seen == ["meta-device-of-the-world"]
    single = gym.make(ENV_ID, world="with-device", device="cpu")  # the single env passes it on too
    assert seen[-1] == "cpu" and single.unwrapped.world.name == "with-device"
