"""Smoke runs of every ``pasta`` command."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pasta_cli.main import main


def test_evaluate_writes_json_and_plot(tmp_path, capsys):
    out, png = tmp_path / "e.json", tmp_path / "e.png"
    code = main(["evaluate", "--agents", "random,greedy", "--episodes", "30", "--seed", "1",
                 "--json", str(out), "--plot", str(png), "--quiet"])
    assert code == 0
    text = capsys.readouterr().out
    assert "| greedy |" in text and "paired differences" in text
    assert json.loads(out.read_text())["settings"]["episodes"] == 30
    assert png.stat().st_size > 1000


def test_evaluate_unknown_agent(capsys):
    assert main(["evaluate", "--agents", "random,nope", "--episodes", "5"]) == 2
    assert "unknown agent 'nope'; known agents:" in capsys.readouterr().err


def test_evaluate_missing_prompt_file(tmp_path, capsys):
    assert main(["evaluate", "--prompts", str(tmp_path / "x.txt"), "--episodes", "5", "--quiet"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_demo_prints_every_turn(capsys):
    assert main(["demo", "--seed", "2", "--agent", "oracle"]) == 0
    text = capsys.readouterr().out
    assert "hidden user type:" in text and "turn 5/5" in text and "return" in text


_FAKE_SARDINE = """
import gymnasium as gym
import numpy as np
from gymnasium import spaces


class Sardine(gym.Env):
    def __init__(self, num_items, slate_size, episode_length):
        self.action_space = spaces.MultiDiscrete([num_items] * slate_size)
        self.observation_space = spaces.Box(0, 1, (3,), np.float32)
        self.H, self.calls = episode_length, 0

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(3, np.float32), {}

    def step(self, action):
        self.t += 1
        self.calls += 1
        return np.zeros(3, np.float32), 0.0, self.t >= self.H, False, {}
"""


@pytest.fixture
def fake_sardine(tmp_path):
    """A stand-in SARDINE checkout (the real one is measured from a local clone, never fetched)."""
    import sys

    import gymnasium as gym

    root = tmp_path / "sardine-checkout"
    (root / "sardine").mkdir(parents=True)
    (root / "sardine" / "simulator.py").write_text(_FAKE_SARDINE)
    (root / "sardine" / "__init__.py").write_text(
        "from gymnasium.envs.registration import register\n"
        "register(id='sardine/SlateTopK-Bored-v0', entry_point='sardine.simulator:Sardine',\n"
        "         kwargs={'num_items': 1000, 'slate_size': 10, 'episode_length': 100})\n")
    yield root
    gym.envs.registry.pop("sardine/SlateTopK-Bored-v0", None)
    for name in [m for m in sys.modules if m == "sardine" or m.startswith("sardine.")]:
        del sys.modules[name]
    if str(root.resolve()) in sys.path:
        sys.path.remove(str(root.resolve()))


def test_bench_measures_the_single_env_beside_the_peer_and_the_vector_env_scaling(tmp_path, capsys, fake_sardine):
    out = tmp_path / "t.json"
    assert main(["bench", "--seconds", "0.05", "--runs", "2", "--sardine", str(fake_sardine), "--no-startup",
                 "--evaluate-episodes", "0", "--profile", "5", "--json", str(out)]) == 0
    payload = json.loads(out.read_text())
    single = payload["single_env_runs"]
    assert len(single["pasta"]) == len(single["sardine"]) == 2 and single["ratio_median"] > 0
    settings = {(r["num_envs"], r["threads"]) for r in payload["rows"] if r["setting"] == "vector env"}
    assert {(1, 1), (64, 1), (256, 1), (1024, 1), (4096, 1)} <= settings
    assert all(r["steps_per_s"] > 0 for r in payload["rows"])
    assert payload["observation_bytes"]["total"] > 0
    assert len(payload["profile"]["single_env"]) == 5 and payload["profile"]["single_env"][0]["own_s"] > 0
    assert "SARDINE" in capsys.readouterr().out


def test_bench_says_how_to_get_the_peer_when_the_checkout_is_missing(tmp_path, capsys):
    assert main(["bench", "--sardine", str(tmp_path / "nowhere"), "--seconds", "0.05", "--runs", "1",
                 "--no-startup", "--evaluate-episodes", "0", "--json", str(tmp_path / "t.json")]) == 2
    assert "git clone https://github.com/naver/sardine" in capsys.readouterr().err


def test_bench_on_a_torch_device_measures_sizes_memory_numba_beside_and_the_agreement(tmp_path, capsys):
    pytest.importorskip("torch")
    out = tmp_path / "device.json"
    assert main(["bench", "--device", "cpu", "--sizes", "64,256", "--seconds", "0.1", "--runs", "1",
                 "--agreement-users", "3000", "--json", str(out)]) == 0
    payload = json.loads(out.read_text())
    assert [r["num_envs"] for r in payload["rows"]] == [64, 256] and payload["device"] == "cpu"
    assert all(r["steps_per_s"] > 0 and r["numba_steps_per_s"] > 0 and r["state_bytes_per_env"] > 10_000
               for r in payload["rows"])
    assert payload["best"]["steps_per_s"] == max(r["steps_per_s"] for r in payload["rows"])
    turns = payload["agreement"]
    assert [t["turn"] for t in turns] == [1, 2, 3, 4, 5]
    assert all(0 <= t["reward_p"] <= 1 and 0 <= t["reward_ks"] < 0.1 for t in turns)
    assert "agreement with the numba path" in capsys.readouterr().out
    # The torch backend's options without a device, and a device torch does not know, are refused in one line.
    assert main(["bench", "--sizes", "64"]) == 2
    assert main(["bench", "--device", "tpu0", "--json", str(tmp_path / "x.json")]) == 2
    assert "use cpu, cuda or cuda:N" in capsys.readouterr().err


def test_startup_is_timed_in_fresh_processes():
    from benchmarks.throughput import startup

    result = startup(runs=1, cold=False)["warm"]
    assert 0 < result["import_s"] < result["process_wall_s"] and result["make_s"] > 0


def test_user_model_pipeline(tmp_path, capsys):
    import pytest

    pytest.importorskip("torch")
    data = tmp_path / "planted"
    assert main(["make-synthetic-data", "--k", "2", "--users", "40", "--test-users", "20",
                 "--pairs-per-user", "6", "--ratings-per-user", "3", "--trajectories-per-user", "1",
                 "--out", str(data), "--quiet"]) == 0
    model = tmp_path / "m.npz"
    assert main(["train-user-model", "--data", str(data / "train"), "--k", "2", "--epochs", "3",
                 "--inits", "1", "--out", str(model), "--quiet", "--json", str(tmp_path / "h.json")]) == 0
    assert model.is_file() and not (tmp_path / "m.npz.state").exists()
    assert main(["eval-user-model", str(model), "--data", str(data / "test"),
                 "--json", str(tmp_path / "e.json")]) == 0
    metrics = json.loads((tmp_path / "e.json").read_text())["metrics"]
    assert {"pairwise_accuracy", "rating_spearman", "choice_accuracy", "loglik_per_record",
            "adjusted_rand_index"} <= set(metrics)
    out = tmp_path / "sweep"
    assert main(["user-model-sweep", "--k", "1,2", "--epochs", "2", "--data", str(data / "train"),
                 "--test", str(data / "test"), "--planted", str(data / "planted_model.npz"),
                 "--out", str(out), "--quiet"]) == 0
    rows = json.loads((out / "sweep.json").read_text())["rows"]
    assert [r["k"] for r in rows] == ["planted", 1, 2]
    # Without --test, 20% of the training users are held out.
    assert main(["user-model-sweep", "--k", "2", "--epochs", "1", "--data", str(data / "train"),
                 "--out", str(tmp_path / "sweep2"), "--quiet"]) == 0
    held = json.loads((tmp_path / "sweep2" / "sweep.json").read_text())["rows"][0]
    assert 0 < held["users"] < 40
    assert (out / "sweep.png").stat().st_size > 1000 and "| k |" in (out / "sweep.md").read_text()
    capsys.readouterr()


def test_train_user_model_bad_data(tmp_path, capsys):
    assert main(["train-user-model", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "m.npz")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_import_preferences(tmp_path, capsys):
    import numpy as np

    rows = [{"caption": "a cat", "label_0": 1, "label_1": 0, "user_id": 1, "image_0_uid": "a",
             "image_1_uid": "b", "has_label": True},
            {"caption": "a dog", "label_0": 1, "label_1": 0, "user_id": 1, "image_0_uid": "a",
             "image_1_uid": "b", "has_label": False}]
    (tmp_path / "pick.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    np.savez(tmp_path / "emb.npz", keys=np.array(["a", "b"]), emb=np.ones((2, 64), np.float32))
    assert main(["import-preferences", "--format", "pick-a-pic", "--input", str(tmp_path / "pick.jsonl"),
                 "--image-embeddings", str(tmp_path / "emb.npz"), "--out", str(tmp_path / "out")]) == 0
    assert "1 pairs from 1 users; skipped: 1 (no_label), 0 (same_images)" in capsys.readouterr().out


def test_validate_world_report_runs_its_checks(tmp_path):
    from agents import validity as world_validity

    report = world_validity.run(episodes=200, seed=3, num_envs=100, progress=False)
    names = {c["check"]: c for c in report["checks"]}
    assert names["no privileged info reaches a non-privileged agent"]["passed"]
    for probe in ("exploit-duplicates", "exploit-info", "exploit-rewards", "exploit-decoys", "known-type-myopic"):
        assert names[f"{probe} does not beat oracle"]["passed"]
        assert report["agents"][probe]["return_mean"] < report["agents"]["oracle"]["return_mean"]
    assert names["exploit-rewards does not beat bayes"]["passed"]
    assert names["one turn's feedback leaves the type uncertain"]["passed"]
    assert set(report["gaps"]) == {"adaptation", "knowing the user", "planning ahead"}
    assert 0.125 < report["identifiability"]["bayes"] <= 1.0
    channel = report["feedback_channel"]
    assert abs(channel["type_entropy"] - np.log(8)) < 0.01
    mass = channel["bayes"]["true_type_mass_per_turn"]
    assert len(mass) == 5 and 0.125 < mass[0] < mass[-1] <= 1.0
    told = channel["bayes"]["information_per_turn"]
    assert 0 < told["choice"][0] < told["both"][0] < channel["type_entropy"]
    text = world_validity.markdown(report)
    assert "| adaptation | bayes - popular |" in text and "request kept" in text
    assert "nats told by the choice and reward" in text


def test_validate_world_cli_writes_json_and_names_bad_input(tmp_path, capsys):
    out = tmp_path / "v.json"
    code = main(["validate-world", "--episodes", "40", "--seed", "0", "--num-envs", "40", "--quiet",
                 "--json", str(out)])
    assert code in (0, 1)  # 1: a check failed at this tiny size
    payload = json.loads(out.read_text())
    assert {"settings", "agents", "gaps", "checks", "passed", "identifiability"} <= set(payload)
    assert main(["validate-world", "--world", "nowhere", "--episodes", "40"]) == 2
    assert "unknown world 'nowhere'" in capsys.readouterr().err


def test_generate_then_info_and_verify(tmp_path, capsys):
    pytest.importorskip("minari")
    out = tmp_path / "ds"
    assert main(["generate", "--episodes", "12", "--chunk", "5", "--policy", "greedy", "--epsilon", "0.2",
                 "--seed", "3", "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "pasta-t2i/greedy-eps20-v0, 12 episodes (60 steps), policy greedy with epsilon 0.2" in text
    assert main(["dataset", "info", str(out), "--format", "json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["complete"] and info["episodes"] == 12 and info["bytes"] > 0
    assert main(["dataset", "verify", str(out), "--replay", "12"]) == 0
    assert "sound" in capsys.readouterr().out
    (out / "turns.parquet").write_bytes(b"not parquet")
    assert main(["dataset", "verify", str(out)]) == 1
    assert "FAIL files: turns.parquet" in capsys.readouterr().out


def test_generate_and_dataset_refuse_bad_input(tmp_path, capsys):
    pytest.importorskip("minari")
    assert main(["generate", "--episodes", "5", "--policy", "nope", "--out", str(tmp_path / "a")]) == 2
    assert "unknown agent 'nope'; known agents:" in capsys.readouterr().err
    assert main(["generate", "--episodes", "5", "--epsilon", "2", "--out", str(tmp_path / "a")]) == 2
    assert "epsilon must be in [0, 1]" in capsys.readouterr().err
    assert main(["dataset", "verify", str(tmp_path / "missing")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["dataset", "info", str(tmp_path / "empty")]) == 2
    assert "is not a pasta-t2i dataset" in capsys.readouterr().err


def test_bench_dataset_writes_json(tmp_path, capsys):
    pytest.importorskip("minari")
    out = tmp_path / "d.json"
    assert main(["bench-dataset", "--episodes", "20", "--precision-episodes", "30", "--json", str(out)]) == 0
    payload = json.loads(out.read_text())
    assert payload["verify"]["ok"] and payload["episodes"] == 20 and payload["size_bytes"] > 0
    assert set(payload["float16"]["agents"]) == {"lmm", "greedy", "bayes"}
    assert "float16 storage" in capsys.readouterr().out


def test_train_iql_then_evaluate_it(tmp_path, capsys):
    pytest.importorskip("d3rlpy")
    pytest.importorskip("minari")
    data, model = tmp_path / "data", tmp_path / "model"
    assert main(["generate", "--episodes", "40", "--chunk", "20", "--policy", "lmm", "--out", str(data),
                 "--quiet"]) == 0
    assert main(["train-iql", "--data", str(data), "--data", str(data), "--mix", "0.7,0.3", "--steps", "20",
                 "--batch-size", "32", "--hidden", "16", "--eval-every", "10", "--eval-episodes", "16",
                 "--threads", "1", "--out", str(model), "--quiet"]) == 0
    assert "20 gradient steps, return" in capsys.readouterr().out
    assert main(["evaluate", "--agents", f"iql:{model},random", "--episodes", "16", "--quiet"]) == 0
    assert f"| iql:{model} |" in capsys.readouterr().out
    assert main(["train-iql", "--data", str(data), "--mix", "1,2", "--out", str(tmp_path / "m2")]) == 2
    assert "--mix needs one non-negative share per --data (1)" in capsys.readouterr().err
    assert main(["evaluate", "--agents", "iql", "--episodes", "4"]) == 2
    assert "agent 'iql' needs a model" in capsys.readouterr().err


def test_every_command_answers_help_without_a_traceback(capsys):
    from pasta_cli.main import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices
    for argv in [[], *[[c] for c in commands], ["dataset", "info"], ["dataset", "verify"]]:
        with pytest.raises(SystemExit) as exit_:
            main([*argv, "--help"])
        assert exit_.value.code == 0, argv
        assert capsys.readouterr().out.startswith("usage: pasta"), argv


def test_commands_that_need_arguments_say_which_without_a_traceback(capsys):
    import argparse

    from pasta_cli.main import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices
    needy = [name for name, p in commands.items()
             if any(a.required for a in p._actions if not isinstance(a, argparse._SubParsersAction))
             or any(isinstance(a, argparse._SubParsersAction) for a in p._actions)]
    assert {"generate", "train-iql", "serve", "dataset", "eval-user-model"} <= set(needy)
    for name in needy:
        with pytest.raises(SystemExit) as exit_:
            main([name])
        assert exit_.value.code == 2, name
        err = capsys.readouterr().err
        assert "required" in err and len(err.strip().splitlines()) <= 2 and "Traceback" not in err, err
    assert main(["demo", "--seed", "1"]) == 0  # a command that needs nothing runs


def test_candidates_prints_each_request_with_its_candidates_by_category(tmp_path, capsys):
    from pasta_cli.main import main

    prompts = tmp_path / "requests.txt"
    prompts.write_text("a teddybear on a skateboard in Times Square\nan oil painting of a lighthouse, moonlight\n")
    assert main(["candidates", "--prompts", str(prompts), "--n", "5", "--json", str(tmp_path / "c.json")]) == 0
    out = capsys.readouterr().out
    assert out.count("request: ") == 2 and out.count("  creative leap:") == 2 and out.count("    - ") == 50
    assert "request: a teddybear on a skateboard in Times Square" in out
    import json

    shown = json.loads((tmp_path / "c.json").read_text())
    assert [len(r["candidates"]["change subject"]) for r in shown] == [5, 5]
    assert all("in Times Square" in t for t in shown[0]["candidates"]["change subject"])  # the place kept


@pytest.mark.parametrize("argv, words", [
    (["build-candidates", "--prompts", "{p}", "--generator", "gpt", "--out", "{tmp}/b.json"],
     "expected transformers:MODEL"),
    (["build-candidates", "--prompts", "{p}", "--generator", "transformers:tiny", "--out", "{tmp}/b.json"],
     "give a hub id"),
    (["build-candidates", "--prompts", "{p}", "--generator", "gemini", "--out", "{tmp}/b.json",
      "--per-category", "7"], "--per-category must be in 1..5"),
    (["candidates", "--prompts", "{p}", "--candidates", "{tmp}/none.json"], "no candidate bank"),
    (["bench-candidates", "--prompts", "{p}", "--close", "2"], "--close is a cosine"),
])
def test_candidate_commands_refuse_bad_arguments_in_one_line(argv, words, tmp_path, capsys):
    from pasta_cli.main import main

    (tmp_path / "p.txt").write_text("a cat\n")
    argv = [a.replace("{p}", str(tmp_path / "p.txt")).replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err
    assert not (tmp_path / "b.json").exists()


def test_build_candidates_asks_a_real_transformers_model_and_the_bank_is_read_back(tmp_path, capsys):
    pytest.importorskip("transformers")
    from benchmarks import tiny_models
    from pasta_cli.main import main

    model = tiny_models.save_tiny_chat_model(tmp_path)  # a tiny random GPT-2: real code, nonsense replies
    prompts = tmp_path / "requests.txt"
    prompts.write_text("a lighthouse at dusk\na bowl of ramen\n")
    bank = tmp_path / "bank.json"
    assert main(["build-candidates", "--prompts", str(prompts), "--generator", f"transformers:{model}",
                 "--out", str(bank), "--quiet"]) == 0
    assert "2 requests, 2 replies repaired" in capsys.readouterr().out  # nonsense is repaired, and said so
    rows = json.loads(bank.read_text())["requests"]
    assert [r["request"] for r in rows] == ["a lighthouse at dusk", "a bowl of ramen"]
    assert all("filled" in r["note"] for r in rows)
    assert main(["candidates", "--prompts", str(prompts), "--candidates", str(bank), "--n", "2"]) == 0
    assert capsys.readouterr().out.count("    - ") == 50
