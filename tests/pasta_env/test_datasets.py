"""Trajectory datasets: what is stored rebuilds the env's observations; Minari, Parquet and d3rlpy read it."""

from __future__ import annotations

import shutil

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("h5py")
pytest.importorskip("minari")
pytest.importorskip("pyarrow")

from agents import make_agent  # noqa: E402
from pasta_env.datasets import (  # noqa: E402
    DatasetSpec,
    IncompleteDatasetError,
    generate,
    load,
    read_manifest,
    verify,
)
from pasta_env.datasets.offline import OBSERVATION_KEYS, flat_observation_layout, transition_arrays  # noqa: E402
from simulators.files import BusyError, OutputError, WriteLock  # noqa: E402
from tests.conftest import ENV_ID  # noqa: E402

SPEC = DatasetSpec(episodes=24, policy="lmm", seed=7, epsilon=0.25, chunk=8)
SAMPLE = (0, 5, 13, 23)  # episodes of every chunk, not only the first


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    folder = tmp_path_factory.mktemp("datasets") / "lmm"
    generate(folder, SPEC, progress=False, make_policy=make_agent)
    return folder


def as_stored(x: np.ndarray, key: str = "") -> np.ndarray:
    """What the dataset keeps of an env array: float16-rounded embeddings, exact rewards and integers."""
    return x.astype(np.float16).astype(np.float32) if x.dtype == np.float32 and key != "history_rewards" else x


def replay(seed: int, slates: np.ndarray):
    env = gym.make(ENV_ID)
    obs, info = env.reset(seed=seed)
    out = [(obs, info, None, None)]
    for a in slates:
        obs, r, term, trunc, info = env.step(a)
        out.append((obs, info, r, term))
    return out


def test_stored_episodes_rebuild_the_env_observations_step_by_step(small):
    ds = load(small)
    assert len(ds) == 24 and ds.total_steps == 120
    for i in SAMPLE:
        ep = ds[i]
        assert ep.seed == SPEC.seed + i and ep.id == i
        steps = replay(ep.seed, ep.actions)
        for t, (obs, _, reward, term) in enumerate(steps):
            for k, v in obs.items():
                np.testing.assert_array_equal(ep.observations[k][t], as_stored(np.asarray(v), k),
                                              err_msg=f"{i}/{t}/{k}")
            if t:
                assert ep.rewards[t - 1] == reward and ep.terminations[t - 1] == term
    assert not ds[0].truncations.any()


def test_the_policy_and_epsilon_mixing_are_what_the_dataset_says(small):
    ds = load(small)
    a = ds.arrays()
    assert 0.1 < a["explored"].mean() < 0.4  # epsilon 0.25 over 120 turns
    env = ds.recover_environment()
    lmm = make_agent("lmm", env.unwrapped.world, env.unwrapped.config)
    for i in range(len(ds)):
        obs, _ = env.reset(seed=int(a["seeds"][i]))  # the policy acted on the exact observation
        if not a["explored"][i, 0]:
            np.testing.assert_array_equal(lmm.act(obs), a["actions"][i, 0])


def test_minari_reads_the_dataset_and_recovers_the_env(small):
    import minari

    mds = load(small).minari()
    assert mds.total_episodes == 24 and mds.total_steps == 120
    arrays = load(small).arrays()
    for ep in mds.iterate_episodes(list(SAMPLE)):
        i = int(ep.id)
        assert len(ep.observations["candidates"]) == len(ep.actions) + 1 == 6
        np.testing.assert_array_equal(ep.observations["candidates"], arrays["candidates"][i])
        np.testing.assert_array_equal(ep.observations["last_choice"], arrays["last_choice"][i])
        np.testing.assert_array_equal(ep.actions, arrays["actions"][i])
        np.testing.assert_array_equal(ep.rewards, arrays["rewards"][i])
        assert ep.terminations.tolist() == [False] * 4 + [True]
    meta = next(iter(mds.storage.get_episode_metadata([13])))
    assert meta["seed"] == SPEC.seed + 13 and meta["total_steps"] == 5
    env = mds.recover_environment()
    assert env.spec.id == ENV_ID and env.unwrapped.config.num_candidates == 25
    assert isinstance(minari.MinariDataset(small / "data").observation_space, gym.spaces.Dict)


def test_minari_load_dataset_finds_it_under_its_id(tmp_path, monkeypatch):
    import minari

    spec = DatasetSpec(episodes=6, policy="random", chunk=6)
    generate(tmp_path / "pasta-t2i" / "random-v0", spec, progress=False, make_policy=make_agent)
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    mds = minari.load_dataset("pasta-t2i/random-v0")
    assert mds.total_episodes == 6 and mds.spec.dataset_id == "pasta-t2i/random-v0"


def test_turns_parquet_holds_the_texts_the_env_showed(small):
    table = load(small).turns()
    assert table.num_rows == 24 * 5
    rows = table.to_pylist()
    for i in (5, 23):
        ep = load(small)[i]
        steps = replay(ep.seed, ep.actions)
        for t in range(5):
            row = rows[i * 5 + t]
            info, after = steps[t][1], steps[t + 1][1]
            assert (row["episode"], row["turn"], row["seed"]) == (i, t, ep.seed)
            assert row["candidates"] == list(info["candidate_texts"])
            assert row["categories"] == list(info["categories"])
            assert row["slate"] == after["slate"].tolist() and row["choice"] == after["choice"]
            assert row["chosen_prompt"] == after["slate_texts"][after["choice"]]
            assert row["reward"] == ep.rewards[t]
        assert rows[i * 5]["initial_prompt"] == steps[0][1]["prompt"] == rows[i * 5]["prompt"]
        assert rows[i * 5 + 1]["prompt"] == rows[i * 5]["chosen_prompt"]


def interrupted_policy(chunks_before_interrupt: int):
    """A policy factory whose agent raises KeyboardInterrupt when the given chunk starts."""
    calls = {"n": 0}

    def make(name, world, config, seed):
        agent = make_agent(name, world, config, seed)
        reset = agent.reset

        def interrupting_reset(seed=None):
            calls["n"] += 1
            if calls["n"] > chunks_before_interrupt:
                raise KeyboardInterrupt
            reset(seed)

        agent.reset = interrupting_reset
        return agent

    return make


def test_an_interrupted_run_never_looks_complete_and_resumes_to_the_same_arrays(small, tmp_path):
    folder = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        generate(folder, SPEC, progress=False, make_policy=interrupted_policy(2))
    assert sorted(p.name for p in (folder / ".partial").glob("chunk-*.npz")) == ["chunk-00000.npz",
                                                                                 "chunk-00001.npz"]
    assert not (folder / "data").exists() and not (folder / "manifest.json").exists()
    with pytest.raises(IncompleteDatasetError, match="rerun the same"):
        load(folder)
    report = verify(folder)
    assert not report.ok and "unfinished" in report.problems[0]
    generate(folder, SPEC, progress=False, make_policy=make_agent)  # the rerun does the last chunk only
    whole, resumed = load(small).arrays(), load(folder).arrays()
    for k in whole:
        assert whole[k].tobytes() == resumed[k].tobytes(), k
    assert load(small).turns().equals(load(folder).turns())
    assert read_manifest(folder)["arrays"] == read_manifest(small)["arrays"]
    assert not (folder / ".partial").exists()


def test_a_rerun_with_other_arguments_or_a_second_writer_is_refused(small, tmp_path):
    with pytest.raises(OutputError, match="other arguments"):
        generate(small, DatasetSpec(episodes=24, policy="lmm", seed=8, epsilon=0.25, chunk=8), progress=False,
                 make_policy=make_agent)
    # the same arguments: already complete
    assert generate(small, SPEC, progress=False, make_policy=make_agent)["episodes"] == 24
    with WriteLock(tmp_path / "busy"), pytest.raises(BusyError, match="another process"):
        generate(tmp_path / "busy", SPEC, progress=False, make_policy=make_agent)


def test_bad_specs_are_refused_before_any_file_is_written(tmp_path):
    with pytest.raises(ValueError, match="epsilon"):
        DatasetSpec(episodes=5, epsilon=1.5)
    with pytest.raises(ValueError, match="episodes"):
        DatasetSpec(episodes=0)
    with pytest.raises(ValueError, match="unknown agent 'nope'"):
        generate(tmp_path / "x", DatasetSpec(episodes=5, policy="nope"), progress=False, make_policy=make_agent)
    assert not (tmp_path / "x").exists()


def test_verify_passes_a_sound_dataset(small):
    report = verify(small, replay=24)
    assert report.ok, report.text()
    assert [c["name"] for c in report.checks] == ["manifest", "files", "arrays", "alignment", "minari", "turns",
                                                  "world", "replay"]


@pytest.fixture
def copy(small, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(small, target)
    return target


def test_verify_names_a_truncated_file(copy):
    path = copy / "data" / "main_data.hdf5"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    report = verify(copy)
    assert not report.ok
    assert any("main_data.hdf5 has" in p and "truncated" in p for p in report.problems), report.problems
    assert any("cannot read" in p for p in report.problems), report.problems


def test_verify_names_a_flipped_byte(copy):
    import h5py

    path = copy / "data" / "main_data.hdf5"
    with h5py.File(path, "r") as f:
        offset = f["pasta/rewards"].id.get_offset() + 8 * 37 + 3
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))
    report = verify(copy)
    assert any("main_data.hdf5: checksum differs" in p for p in report.problems), report.problems
    assert any("array rewards: checksum differs" in p for p in report.problems), report.problems


def test_verify_names_a_misaligned_episode(copy):
    import h5py
    from h5py import h5d, h5p, h5s, h5t

    with h5py.File(copy / "data" / "main_data.hdf5", "a") as f:
        # Episode 3's observations start where episode 4's do (the off-by-one of a naive loader).
        del f["episode_3/observations/candidates"]
        src = f["pasta/candidates"]
        sspace = h5s.create_simple(src.shape)
        sspace.select_hyperslab((4, 0, 0, 0), (1, *src.shape[1:]))
        vspace = h5s.create_simple(src.shape[1:])
        dcpl = h5p.create(h5p.DATASET_CREATE)
        dcpl.set_virtual(vspace, b".", b"/pasta/candidates", sspace)
        h5d.create(f["episode_3/observations"].id, b"candidates", h5t.py_create(src.dtype), vspace, dcpl=dcpl)
        # Episode 6 lost its last action.
        actions = f["episode_6/actions"][:4]
        del f["episode_6/actions"]
        f["episode_6/actions"] = actions
    report = verify(copy)
    problems = " | ".join(report.problems)
    assert "episode_3/observations/candidates shows episode 4's data" in problems, problems
    assert "episode_6/actions has shape (4, 4), expected (5, 4)" in problems, problems


def test_verify_names_a_dataset_from_another_user_model(small, monkeypatch):
    import pasta_env.worlds as worlds

    monkeypatch.setattr(worlds, "default_user_model", lambda: worlds.planted_user_model(8, 0))
    report = verify(small)
    assert not report.ok
    assert any("user model differs (fingerprint" in p and "in this installation" in p for p in report.problems), \
        report.problems
    assert "replay" not in [c["name"] for c in report.checks]  # another world cannot replay the data


def test_verify_localises_damage_behind_a_checksum_failure(copy):
    import h5py

    with h5py.File(copy / "data" / "main_data.hdf5", "a") as f:
        f["pasta/seeds"][9] = 10_000
    problems = " | ".join(verify(copy).problems)
    assert "array seeds: checksum differs" in problems
    assert "episodes 9: seed is not the generation seed + episode index" in problems


def test_verify_replays_what_checksums_cannot_see(copy):
    """A dataset consistent with its own manifest but not with the env (e.g. from a buggy writer)."""
    import json

    import h5py

    from pasta_env.datasets.store import array_sha256, file_sha256

    with h5py.File(copy / "data" / "main_data.hdf5", "a") as f:
        rewards = f["pasta/rewards"][()]
        rewards[9, 2] += 1.0
        f["pasta/rewards"][...] = rewards
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["arrays"]["rewards"]["sha256"] = array_sha256(rewards)
    main = copy / "data" / "main_data.hdf5"
    manifest["files"]["data/main_data.hdf5"] = {"bytes": main.stat().st_size, "sha256": file_sha256(main)}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    report = verify(copy, replay=24)
    assert [c["name"] for c in report.checks if not c["ok"]] == ["turns", "replay"], report.text()
    assert "replay: episode 9: replayed rewards differ at turn 2" in report.problems


def test_verify_does_not_replay_a_dataset_made_with_other_dynamics(copy):
    """A dataset from before the compiled kernels (no recorded version) is sound but cannot be replayed bit for
    bit: verify says so, and why, instead of listing every episode as a mismatch."""
    import json

    from pasta_env.core import DYNAMICS_VERSION

    manifest = json.loads((copy / "manifest.json").read_text())
    assert manifest["dynamics_version"] == DYNAMICS_VERSION
    del manifest["dynamics_version"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    report = verify(copy, replay=8)
    assert report.ok, report.text()
    (check,) = [c for c in report.checks if c["name"] == "replay"]
    assert "not replayed: made with dynamics version 1" in check["detail"] and "regenerate" in check["detail"]


def test_flat_layout_places_every_key(small):
    layout = load(small).layout
    slots = flat_observation_layout(layout)
    assert list(slots) == list(OBSERVATION_KEYS)
    assert slots["candidates"] == (0, 1600, (25, 64))
    assert max(b for _, b, _ in slots.values()) == 4999
    with pytest.raises(ValueError, match="unknown observation key"):
        flat_observation_layout(layout, ("nope",))


def test_d3rlpy_episodes_match_the_env_transitions_step_by_step(small):
    d3rlpy = pytest.importorskip("d3rlpy")
    from pasta_env.datasets import to_d3rlpy

    ds = load(small)
    mdp = to_d3rlpy(ds)
    assert isinstance(mdp, d3rlpy.dataset.ReplayBuffer)
    episodes = mdp.episodes
    assert len(episodes) == 24
    slots = flat_observation_layout(ds.layout)
    for i in SAMPLE:  # d3rlpy's own Minari loader shifts every episode after the first
        ep, stored = episodes[i], ds[i]
        steps = replay(stored.seed, stored.actions)
        assert ep.observations.shape == (5, 4999) and ep.terminated
        for t in range(5):
            obs = steps[t][0]
            for k, (a, b, _) in slots.items():
                want = as_stored(np.asarray(obs[k]), k).astype(np.float32).reshape(-1)
                np.testing.assert_array_equal(ep.observations[t, a:b], want, err_msg=f"{i}/{t}/{k}")
            shown = obs["candidates"][steps[t + 1][1]["slate"]]
            np.testing.assert_array_equal(ep.actions[t], as_stored(shown).reshape(-1))
            assert ep.rewards[t, 0] == np.float32(steps[t + 1][2])
    indices = transition_arrays(ds.sample_episodes(3, seed=1), keys=("turn",), action="indices")
    assert indices["actions"].shape == (15, 4) and indices["observations"][:5, 0].tolist() == [0, 1, 2, 3, 4]


def test_a_failing_writer_stops_the_run_with_its_error(tmp_path, monkeypatch):
    """A full disk (or any writer error) surfaces as that error; the run neither hangs nor looks complete."""
    from pasta_env.datasets.store import HDF5Writer

    def full_disk(self, chunk):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(HDF5Writer, "append", full_disk)
    with pytest.raises(OSError, match="No space left"):
        generate(tmp_path / "full", DatasetSpec(episodes=30, chunk=5), progress=False, make_policy=make_agent)
    assert not (tmp_path / "full" / "manifest.json").exists()


def test_a_relative_output_folder_works(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    generate("data/rel", DatasetSpec(episodes=6, chunk=3), progress=False, make_policy=make_agent)
    assert verify("data/rel", replay=6).ok


def test_a_dataset_on_the_researchers_prompts_records_them_and_notices_a_change(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a lighthouse in a storm\nmy grandmother's garden\n")
    folder = tmp_path / "own"
    generate(folder, DatasetSpec(episodes=6, chunk=3, prompts=str(prompts)), progress=False, make_policy=make_agent)
    table = load(folder).turns()
    assert set(table.column("initial_prompt").to_pylist()) <= {"a lighthouse in a storm", "my grandmother's garden"}
    assert load(folder).recover_environment().unwrapped.world.initial_prompts.shape[0] == 2
    assert verify(folder, replay=6).ok
    prompts.write_text("a lighthouse in a storm\nsomething else entirely\n")
    report = verify(folder, replay=6)
    assert any("prompt" in p and ("changed" in p or "differs" in p) for p in report.problems), report.problems


def test_a_damaged_chunk_left_by_an_interrupt_is_made_again(small, tmp_path):
    folder = tmp_path / "damaged"
    with pytest.raises(KeyboardInterrupt):
        generate(folder, SPEC, progress=False, make_policy=interrupted_policy(2))
    chunk = folder / ".partial" / "chunk-00000.npz"
    chunk.write_bytes(chunk.read_bytes()[:1000])
    generate(folder, SPEC, progress=False, make_policy=make_agent)
    whole, redone = load(small).arrays(), load(folder).arrays()
    for k in whole:
        assert whole[k].tobytes() == redone[k].tobytes(), k


def test_generation_is_told_how_to_build_its_policy(tmp_path):
    """The env layer knows no agents: the caller gives the factory (``pasta generate`` gives agents.make_agent)."""
    with pytest.raises(ValueError, match=r"generate\(\) needs make_policy.*agents.make_agent"):
        generate(tmp_path / "x", SPEC, progress=False)
    assert not (tmp_path / "x").exists()


def test_a_relative_prompt_file_means_the_same_file_from_any_folder(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "prompts.txt").write_text("a lighthouse in a storm\nmy grandmother's garden\n")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "prompts.txt").write_text("something else\nentirely\n")  # the same name elsewhere
    monkeypatch.chdir(tmp_path / "a")
    generate(tmp_path / "ds", DatasetSpec(episodes=6, chunk=3, prompts="prompts.txt"), progress=False,
             make_policy=make_agent)
    assert load(tmp_path / "ds").manifest["spec"]["prompts"] == str(tmp_path / "a" / "prompts.txt")
    monkeypatch.chdir(tmp_path / "b")
    assert verify(tmp_path / "ds", replay=6).ok
    world = load(tmp_path / "ds").recover_environment().unwrapped.world
    assert world.prompt_text(0) in ("a lighthouse in a storm", "my grandmother's garden")


def test_a_damaged_turn_table_left_by_an_interrupt_is_made_again(small, tmp_path):
    folder = tmp_path / "torn"
    with pytest.raises(KeyboardInterrupt):
        generate(folder, SPEC, progress=False, make_policy=interrupted_policy(2))
    chunk = folder / ".partial" / "chunk-00001.parquet"
    chunk.write_bytes(chunk.read_bytes()[:100])  # pyarrow cannot read it
    generate(folder, SPEC, progress=False, make_policy=make_agent)
    assert verify(folder, replay=4).ok
    assert load(folder).turns().num_rows == load(small).turns().num_rows
