"""Nothing lost, round two: special files, full disks, torn lines, inputs under --overwrite, symlinks, strict JSON,
damaged headers and data, hostile options."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pasta_cli.main import main
from simulators.atomic import atomic_path, write_json
from simulators.errors import OutputError
from simulators.files import BusyError, WriteLock, check_output_file, claim_output_dir


def run(argv) -> int:
    """``pasta argv``'s exit status, whether it returns it or argparse exits."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


def one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


def strict_json(path: Path):
    def refuse(name):
        raise AssertionError(f"{path} holds {name}, which is not JSON")

    return json.loads(Path(path).read_text(), parse_constant=refuse)


# --- outputs that are not files -----------------------------------------------------------------------------------


def test_a_pipe_or_a_device_is_never_an_output(tmp_path, capsys):
    fifo = tmp_path / "out.json"
    os.mkfifo(fifo)
    with pytest.raises(OutputError, match="is a pipe, not a file"):
        check_output_file(fifo)
    with pytest.raises(OutputError, match="is a pipe"), atomic_path(fifo):
        raise AssertionError("the block must not run")
    assert run(["evaluate", "--episodes", "4", "--num-envs", "4", "--quiet", "--json", str(fifo)]) == 2
    assert "is a pipe, not a file" in one_line(capsys)
    assert fifo.is_fifo()  # still the pipe: never replaced by a file
    with pytest.raises(OutputError, match="is a device"):
        check_output_file("/dev/null")  # checked, never written


def test_outputs_that_cannot_be_made_there_are_refused_before_the_work(tmp_path, capsys):
    long_name = tmp_path / ("x" * 250 + ".json")  # the name passes; the temporary file beside it would not
    for target in (long_name, Path("/proc/pasta-output.json")):
        start = time.perf_counter()
        assert run(["evaluate", "--episodes", "2000", "--quiet", "--json", str(target)]) == 2
        assert "cannot be written there" in one_line(capsys)
        assert time.perf_counter() - start < 5  # refused at once, not after 2,000 episodes


def test_a_full_disk_replaces_nothing_and_names_the_file(tmp_path):
    target = tmp_path / "result.json"
    write_json(target, {"kept": True})
    with pytest.raises(OutputError, match=r"cannot write .*result.json.*No space left"):
        with atomic_path(target) as tmp:
            Path(tmp).write_text("half")
            raise OSError(28, "No space left on device")
    assert strict_json(target) == {"kept": True}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]  # no temporary file left behind


def test_json_is_strict_nan_is_null(tmp_path):
    write_json(tmp_path / "a.json", {"x": float("nan"), "y": [np.float32("inf"), np.float64(1.5)], "z": np.int64(3)})
    assert strict_json(tmp_path / "a.json") == {"x": None, "y": [None, 1.5], "z": 3}


def test_an_evaluation_of_one_episode_writes_strict_json(tmp_path):
    assert run(["evaluate", "--episodes", "1", "--num-envs", "1", "--agents", "random,lmm", "--quiet",
                "--json", str(tmp_path / "e.json")]) == 0
    payload = strict_json(tmp_path / "e.json")
    assert payload["agents"]["random"]["return_ci95"] is None  # one episode has no interval


# --- locks and claims ---------------------------------------------------------------------------------------------


def test_two_writers_through_a_symlink_take_one_lock(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    with WriteLock(real), pytest.raises(BusyError, match="another process is writing"):
        with WriteLock(link):
            pass


def test_overwrite_never_deletes_an_input_of_the_same_run(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("another run's file")
    table = out / "pick.jsonl"
    table.write_text(json.dumps({"caption": "a dog", "label_0": 1, "label_1": 0, "user_id": 1, "image_0_uid": "a",
                                 "image_1_uid": "b", "has_label": True}) + "\n")
    emb = out / "emb.npz"
    np.savez(emb, keys=np.array(["a", "b"]), emb=np.eye(2, 64, dtype=np.float32))
    argv = ["import-preferences", "--format", "pick-a-pic", "--input", str(table), "--image-embeddings", str(emb),
            "--out", str(out)]
    assert run(argv) == 2 and "--overwrite to replace" in one_line(capsys)
    assert run([*argv, "--overwrite"]) == 2
    assert "would delete" in one_line(capsys)
    assert table.is_file() and emb.is_file() and (out / "old.txt").is_file()  # nothing deleted
    with pytest.raises(OutputError, match="would delete"):
        claim_output_dir(out, {"x": 1}, overwrite=True, inputs=[None, table])


def test_a_model_file_from_another_run_is_not_replaced_silently(tmp_path, capsys):
    pytest.importorskip("torch")
    from pasta_env.synthetic_data import SyntheticDataConfig, generate

    data = tmp_path / "d"
    generate(data, SyntheticDataConfig(num_types=2, users=30, test_users=0, pairs_per_user=3, ratings_per_user=2,
                                       trajectories_per_user=1, seed=1), progress=False)
    model = tmp_path / "m.npz"
    base = ["train-user-model", "--data", str(data / "train"), "--k", "2", "--epochs", "1", "--inits", "1",
            "--quiet", "--out", str(model)]
    assert run(base) == 0
    assert run(base) == 0  # the same run again: allowed (it redoes the same work)
    first = model.read_bytes()
    assert run([*base[:-2], "--seed", "5", "--out", str(model)]) == 2
    assert "was written by a run with other arguments" in one_line(capsys)
    assert model.read_bytes() == first
    assert run([*base[:-2], "--seed", "5", "--out", str(model), "--overwrite"]) == 0
    assert model.read_bytes() != first


# --- damaged inputs -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("field, value, words", [
    ("temperature", float("nan"), "'temperature' is nan"), ("temperature", 0, "'temperature' is 0"),
    ("temperature", -1.0, "not a positive finite number"), ("type_names", ["a"], "must list 2 names"),
    ("dim", 99, "'dim' is 99 but the arrays are 4-d"), ("header", [1, 2], "its header is a list"),
    ("weights", 1e30, r"magnitude 1e\+30"),
])
def test_checkpoint_headers_are_checked_field_by_field(tmp_path, field, value, words):
    from simulators.errors import AssetError
    from simulators.users.neural import TrunkHeadsUserModel

    rng = np.random.default_rng(0)
    good = TrunkHeadsUserModel(prior=np.array([0.5, 0.5]), temperature=1.0, trunk_w=rng.standard_normal((3, 8)),
                               trunk_b=np.zeros(3), head_w=rng.standard_normal((2, 11)), head_b=np.zeros(2))
    good.save(tmp_path / "good.npz")
    arrays = dict(np.load(tmp_path / "good.npz"))
    header = json.loads(str(arrays["header"]))
    if field == "header":
        header = value
    elif field == "weights":
        arrays["head_w"] = arrays["head_w"] * 0 + value
    else:
        header[field] = value
    arrays["header"] = np.array(json.dumps(header))
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(AssetError, match=words):
        TrunkHeadsUserModel.load(tmp_path / "bad.npz")


def _data_folder(tmp_path, rating=1.0, emb=None, user_type=0):
    from simulators.preferences.data import write_dataset

    folder = tmp_path / "prefs"
    write_dataset(folder, {"ratings": [{"user_id": "u", "prompt": "p", "image": "i", "rating": 1.0}]},
                  {"p": np.eye(1, 64, dtype=np.float32)[0]}, {"i": np.eye(1, 64, 1, dtype=np.float32)[0]},
                  user_types={"u": 0}, float16=False)
    (folder / "ratings.jsonl").write_text(f'{{"user_id": "u", "prompt": "p", "image": "i", "rating": {rating}}}\n')
    if emb is not None:
        np.savez(folder / "embeddings.npz", prompt_keys=np.array(["p"]), prompt_emb=np.eye(1, 64, dtype=np.float32),
                 image_keys=np.array(["i"]), image_emb=emb)
    (folder / "users.jsonl").write_text(json.dumps({"user_id": "u", "type": user_type}) + "\n")
    return folder


@pytest.mark.parametrize("kwargs, words", [
    ({"rating": "NaN"}, r"ratings.jsonl:1: field 'rating' is nan"),
    ({"emb": np.zeros((1, 64), np.float32)}, "has an embedding of length 0"),
    ({"emb": np.full((1, 64), 0.5, np.float32)}, "has an embedding of length 4; embeddings must be unit vectors"),
    ({"user_type": 3e8}, r"users.jsonl:1: type must be an integer"),
    ({"user_type": 300_000_000}, r"users.jsonl:1: type must be an integer in 0..9999"),
])
def test_preference_data_that_would_train_nonsense_is_refused_by_name(tmp_path, kwargs, words):
    from simulators.preferences.data import DataError, read_dataset

    with pytest.raises(DataError, match=words):
        read_dataset(_data_folder(tmp_path, **kwargs))


def test_prompt_files_of_binary_junk_are_refused_and_excels_csv_is_read(tmp_path):
    from pasta_env.worlds import read_prompts

    (tmp_path / "nul.txt").write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match=r"control character '\\x00'; prompts are plain text"):
        read_prompts(tmp_path / "nul.txt")
    (tmp_path / "excel.csv").write_bytes("\ufeffPrompt,Note\na lighthouse,x\n".encode("utf-8"))
    assert read_prompts(tmp_path / "excel.csv") == ["a lighthouse"]


@pytest.mark.parametrize("argv, words", [
    (["bench", "--seconds", "inf"], "expected a finite number, got 'inf'"),
    (["bench-ray", "--turn-s", "nan"], "expected a finite number, got 'nan'"),
    (["bench-serve", "--agents", ""], "--agents names no agent"),
    (["evaluate", "--world-option", "seed=true"], "option 'seed' takes an integer, got True"),
    (["evaluate", "--world-option", "user_model=/nowhere.npz", "--episodes", "2"], "does not exist"),
    (["train-iql", "--data", "x", "--out", "y", "--device", "cuda"], "torch sees no CUDA GPU here"),
    (["evaluate", "--prompts", "{tmp}/nul.txt"], "control character"),
])
def test_hostile_options_get_one_line(argv, words, tmp_path, capsys):
    import torch

    if "cuda" in argv and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    (tmp_path / "nul.txt").write_bytes(b"\x00\x00\n")
    assert run([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 2
    assert words in one_line(capsys)


def test_ctrl_c_while_the_libraries_load_exits_130_without_a_traceback():
    proc = subprocess.Popen([sys.executable, "-m", "pasta_cli.main", "evaluate", "--episodes", "2000"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(0.4)  # past the interpreter's start, inside the imports or the first episodes
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
