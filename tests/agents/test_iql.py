"""PASTA's agent on d3rlpy: it learns a toy signal, saves and loads, acts by the rules, refuses a wrong env."""

from __future__ import annotations

import json
import shutil

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("d3rlpy")
pytest.importorskip("minari")

from agents import make_agent  # noqa: E402
from agents.model_based import candidate_utilities  # noqa: E402
from agents.offline.iql import IQLAgent, IQLSettings, ModelMismatchError, make_iql, train_iql  # noqa: E402
from pasta_env.config import EnvConfig  # noqa: E402
from pasta_env.datasets import DatasetSpec, generate  # noqa: E402
from simulators.files import FileFormatError  # noqa: E402
from tests.conftest import ENV_ID  # noqa: E402

SETTINGS = IQLSettings(steps=300, batch_size=64, hidden=32, eval_every=150, eval_episodes=64, seed=3)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("iql")
    generate(root / "data", DatasetSpec(episodes=400, policy="random", chunk=200), progress=False,
             make_policy=make_agent)
    history = train_iql([root / "data"], root / "model", SETTINGS, progress=False)
    return root, history


@pytest.fixture(scope="module")
def users():
    env = gym.make_vec(ENV_ID, num_envs=300, vectorization_mode="vector_entry_point")
    obs, _ = env.reset(seed=5)
    return env, obs


def value_correlation(agent, env, obs) -> float:
    """Mean (over users) correlation of f(h, p) with the prior-expected utility of each candidate."""
    u = np.einsum("k,bkc->bc", env.world.user_model.prior, candidate_utilities(obs, env.world.user_model))
    v = agent.values(obs)
    a, b = v - v.mean(1, keepdims=True), u - u.mean(1, keepdims=True)
    return float(((a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))).mean())


def test_a_few_hundred_steps_learn_which_prompts_users_like(toy, users):
    env, obs = users
    untrained = IQLAgent.from_algo(make_iql(SETTINGS, 5, 4, 64), env.world, env.config)
    trained = IQLAgent.load(toy[0] / "model", env.world, env.config)
    assert value_correlation(untrained, env, obs) < 0.3
    assert value_correlation(trained, env, obs) > 0.4


def test_training_writes_history_curves_and_both_model_files(toy):
    root, history = toy
    assert [e["step"] for e in history["evaluations"]] == [0, 150, 300]  # the untrained network first
    assert len(history["losses"]) == 3 and {"critic_loss", "q_loss", "v_loss"} <= set(history["losses"][0])
    refs = history["references"]
    assert set(refs) == {"lmm", "popular", "bayes"}
    assert refs["lmm"]["return_mean"] < refs["popular"]["return_mean"] < refs["bayes"]["return_mean"]
    model = root / "model"
    assert {p.name for p in model.iterdir()} == {"model.d3", "weights.pt", "model.json", "history.json", "curves.png",
                                                 ".pasta-run.json"}
    assert (model / "curves.png").stat().st_size > 5000


def test_the_model_loads_with_d3rlpys_own_loader(toy, users):
    import d3rlpy
    import torch

    env, obs = users
    ours = IQLAgent.load(toy[0] / "model", env.world, env.config)
    theirs = d3rlpy.load_learnable(str(toy[0] / "model" / "model.d3"))
    x = np.random.default_rng(0).random((7, theirs.observation_shape[0])).astype(np.float32)
    a = np.random.default_rng(1).standard_normal((7, 256)).astype(np.float32)
    np.testing.assert_allclose(theirs.predict_value(x, a), ours.algo.predict_value(x, a), rtol=1e-5, atol=1e-5)
    same = IQLAgent.from_algo(theirs, env.world, env.config)
    np.testing.assert_allclose(same.values(obs), ours.values(obs), rtol=1e-5, atol=1e-5)
    assert isinstance(theirs.impl.q_function[0].encoder, torch.nn.Module)


def test_the_slate_value_is_the_mean_of_the_prompt_values(toy, users):
    import torch

    env, obs = users
    agent = IQLAgent.load(toy[0] / "model", env.world, env.config)
    from agents.offline.iql import flat_observations

    x = flat_observations(obs, 5, 4, 64)[:5]
    slate = obs["candidates"][:5, [0, 6, 12, 18]].reshape(5, -1)
    with torch.no_grad():
        q = [q_func(torch.as_tensor(x), torch.as_tensor(slate)).q_value[:, 0].numpy()
             for q_func in agent.algo.impl.q_function]
        f = [q_func._fc(q_func.encoder.per_prompt(torch.as_tensor(x), torch.as_tensor(
            obs["candidates"][:5, [0, 6, 12, 18]])))[..., 0].numpy() for q_func in agent.algo.impl.q_function]
    for qi, fi in zip(q, f):
        np.testing.assert_allclose(qi, fi.mean(axis=1), rtol=1e-5, atol=1e-5)


def test_acting_shows_one_candidate_per_category_and_the_best_ones(toy, users):
    env, obs = users
    agent = make_agent(f"iql:{toy[0] / 'model'}", env.world, env.config)
    slates = agent.act(obs, {})
    cats = np.take_along_axis(obs["candidate_categories"], slates, axis=1)
    assert all(len(set(row)) == 4 for row in cats.tolist())
    values = agent.values(obs)
    best_per_cat = np.stack([np.where(obs["candidate_categories"] == c, values, -np.inf).max(axis=1)
                             for c in range(5)], axis=1)
    chosen = np.take_along_axis(values, slates, axis=1)
    np.testing.assert_allclose(np.sort(chosen, axis=1), np.sort(best_per_cat, axis=1)[:, 1:])
    single = gym.make(ENV_ID)
    o, _ = single.reset(seed=2)
    assert agent.act(o).shape == (4,)


def test_a_model_for_another_env_gets_a_clear_error(toy, tmp_path, users):
    env, _ = users
    with pytest.raises(ModelMismatchError, match="trained for slate_size 4, this env has 3"):
        IQLAgent.load(toy[0] / "model", env.world, EnvConfig(slate_size=3))
    other = tmp_path / "other"
    shutil.copytree(toy[0] / "model", other)
    meta = json.loads((other / "model.json").read_text())
    meta["layout"]["dim"] = 384
    (other / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelMismatchError, match="trained for dim 384, this env has 64"):
        IQLAgent.load(other, env.world, env.config)
    with pytest.raises(FileFormatError, match="does not exist"):
        IQLAgent.load(tmp_path / "missing", env.world, env.config)
    with pytest.raises(ValueError, match="agent 'iql' needs a model: write iql:PATH"):
        make_agent("iql", env.world, env.config)
    with pytest.raises(ValueError, match="agent 'oracle' takes no model"):
        make_agent("oracle:x", env.world, env.config)


def test_an_interrupted_training_resumes_to_the_same_weights(toy, tmp_path, monkeypatch):
    import torch

    import agents.offline.iql as iql

    settings = IQLSettings(steps=40, batch_size=32, hidden=16, eval_every=20, eval_episodes=16, seed=1)
    data = [toy[0] / "data"]
    train_iql(data, tmp_path / "whole", settings, progress=False)
    real, calls = iql.evaluate_agent, {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 6:  # the untrained network, lmm, popular, bayes, step 20; then step 40
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(iql, "evaluate_agent", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_iql(data, tmp_path / "resumed", settings, progress=False)
    assert (tmp_path / "resumed" / ".state" / "history.json").is_file()
    monkeypatch.setattr(iql, "evaluate_agent", real)
    history = train_iql(data, tmp_path / "resumed", settings, progress=False)
    assert [e["step"] for e in history["evaluations"]] == [0, 20, 40]
    a = torch.load(tmp_path / "whole" / "weights.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "weights.pt", weights_only=True)
    for name in ("q_funcs", "value_func"):
        for k, v in a[name].items():
            assert torch.equal(v, b[name][k]), (name, k)
    assert not (tmp_path / "resumed" / ".state").exists()


def test_evaluate_compares_a_trained_model_with_the_baselines(toy):
    from agents.evaluation import evaluate

    model = f"iql:{toy[0] / 'model'}"
    result = evaluate([model, "random"], episodes=64, seed=1, progress=False)
    assert set(result.agents) == {model, "random"}
    assert result.agents[model].returns.mean() > result.agents["random"].returns.mean()


def _twins(toy):
    """Two IQLs initialised alike and a batch sampler over the toy data."""
    from agents.offline.iql import _Sampler

    settings = IQLSettings(batch_size=32, hidden=16, seed=2)
    return make_iql(settings, 5, 4, 64), make_iql(settings, 5, 4, 64), _Sampler([toy[0] / "data"], [1.0], 32, seed=0)


def test_device_batches_train_exactly_as_d3rlpys_own_update(toy):
    """The sampler's on-device batches and d3rlpy's ``algo.update`` on the same numpy batch: same weights."""
    import d3rlpy
    import torch

    from agents.offline.iql import update

    ours, theirs, sampler = _twins(toy)
    for _ in range(5):
        batch = sampler.sample()
        update(ours, batch)
        theirs.update(d3rlpy.dataset.TransitionMiniBatch(
            observations=batch.observations.numpy(), actions=batch.actions.numpy(), rewards=batch.rewards.numpy(),
            next_observations=batch.next_observations.numpy(), next_actions=batch.next_actions.numpy(),
            terminals=batch.terminals.numpy(), intervals=batch.intervals.numpy(), transitions=[]))
    assert ours.grad_step == theirs.grad_step == 5
    for a, b in zip(ours.impl.q_function.parameters(), theirs.impl.q_function.parameters()):
        assert torch.equal(a, b)


def test_the_critic_only_step_updates_the_critic_as_d3rlpy_does(toy):
    """Skipping the (unused) actor leaves the critics, their targets and the value function as d3rlpy's step does."""
    import torch

    from agents.offline.iql import update

    ours, theirs, sampler = _twins(toy)
    for _ in range(5):
        batch = sampler.sample()
        metrics = update(ours, batch, train_actor=False)
        update(theirs, batch, train_actor=True)
    assert set(metrics) == {"critic_loss", "q_loss", "v_loss"} and metrics["q_loss"].dim() == 0
    for name in ("q_funcs", "targ_q_funcs", "value_func"):
        for a, b in zip(getattr(ours.impl.modules, name).parameters(), getattr(theirs.impl.modules, name).parameters()):
            assert torch.equal(a, b), name
    # the actor is what differs: untouched in ours
    assert not all(torch.equal(a, b) for a, b in zip(ours.impl.modules.policy.parameters(),
                                                       theirs.impl.modules.policy.parameters()))


def test_a_flipped_byte_in_the_weights_is_caught_at_load(toy, tmp_path, users):
    env, _ = users
    damaged = tmp_path / "damaged"
    shutil.copytree(toy[0] / "model", damaged)
    raw = bytearray((damaged / "weights.pt").read_bytes())
    raw[len(raw) // 2] ^= 0x40  # one bit, deep in a tensor: torch would load it without complaint
    (damaged / "weights.pt").write_bytes(bytes(raw))
    with pytest.raises(FileFormatError, match="checksum differs from the recorded one"):
        IQLAgent.load(damaged, env.world, env.config)


class _Planted:
    """A pickle payload that would create a file if it were ever unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_planted_pickle_in_the_weights_is_never_run(toy, tmp_path, users, monkeypatch):
    import hashlib
    import pickle

    env, _ = users
    planted = tmp_path / "planted"
    shutil.copytree(toy[0] / "model", planted)
    marker = tmp_path / "pwned"
    (planted / "weights.pt").write_bytes(pickle.dumps(_Planted(str(marker))))
    meta = json.loads((planted / "model.json").read_text())  # an attacker edits the checksum too
    meta["weights_sha256"] = hashlib.sha256((planted / "weights.pt").read_bytes()).hexdigest()
    (planted / "model.json").write_text(json.dumps(meta))
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # even where torch's default is lowered
    with pytest.raises(FileFormatError, match="cannot load the weights"):
        IQLAgent.load(planted, env.world, env.config)
    assert not marker.exists()


def test_a_damaged_dataset_is_refused_before_training(toy, tmp_path):
    import h5py

    from pasta_env.datasets.store import ARRAY_GROUP, DATA_DIR, MAIN_FILE

    data = tmp_path / "data"
    shutil.copytree(toy[0] / "data", data)
    with h5py.File(data / DATA_DIR / MAIN_FILE, "r+") as f:
        rewards = f[f"{ARRAY_GROUP}/rewards"]
        rewards[0, 0] = rewards[0, 0] + 1.0  # what a flipped byte does to a number
    settings = IQLSettings(steps=2, batch_size=8, hidden=8, eval_every=0, eval_episodes=4)
    with pytest.raises(FileFormatError, match="array 'rewards' differs from its checksum"):
        train_iql([data], tmp_path / "m", settings, progress=False)
    assert not (tmp_path / "m" / "model.json").exists()
    history = train_iql([data], tmp_path / "m", settings, progress=False, check_data=False)  # the user's call
    assert history["step"] == 2


def test_a_model_folder_of_another_run_is_refused_unless_overwrite(toy, tmp_path):
    from simulators.errors import OutputError

    settings = IQLSettings(steps=2, batch_size=8, hidden=8, eval_every=0, eval_episodes=4)
    train_iql([toy[0] / "data"], tmp_path / "m", settings, progress=False)
    other = IQLSettings(steps=2, batch_size=8, hidden=8, eval_every=0, eval_episodes=4, seed=9)
    with pytest.raises(OutputError, match="was written by a run with other arguments"):
        train_iql([toy[0] / "data"], tmp_path / "m", other, progress=False)
    train_iql([toy[0] / "data"], tmp_path / "m", other, progress=False, overwrite=True)
    assert json.loads((tmp_path / "m" / "model.json").read_text())["settings"]["seed"] == 9
