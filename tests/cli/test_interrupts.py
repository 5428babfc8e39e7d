"""Long commands killed at a random moment (SIGKILL) and rerun give the uninterrupted result."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

DATA = ["make-synthetic-data", "--k", "2", "--users", "60", "--test-users", "20", "--pairs-per-user", "5",
        "--ratings-per-user", "3", "--trajectories-per-user", "2", "--seed", "4", "--quiet"]
TRAIN = ["train-user-model", "--k", "2", "--epochs", "6", "--hidden", "4", "--inits", "2", "--quiet"]


def pasta(args, kill_after: float | None = None) -> int | None:
    """Run ``pasta args`` in a new process; SIGKILL it after ``kill_after`` seconds if still running."""
    proc = subprocess.Popen([sys.executable, "-m", "pasta_cli.main", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    if kill_after is None:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()
        return 0
    time.sleep(kill_after)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    return proc.returncode


def same_dataset(a: Path, b: Path) -> None:
    for split in ("train", "test"):
        for name in ("pairs.jsonl", "ratings.jsonl", "choices.jsonl", "users.jsonl"):
            assert (a / split / name).read_bytes() == (b / split / name).read_bytes(), (split, name)
        same_arrays(a / split / "embeddings.npz", b / split / "embeddings.npz")
    same_arrays(a / "planted_model.npz", b / "planted_model.npz")
    assert (a / "summary.json").read_text() == (b / "summary.json").read_text()


def same_arrays(a: Path, b: Path) -> None:
    with np.load(a) as x, np.load(b) as y:
        assert sorted(x.files) == sorted(y.files)
        for k in x.files:
            np.testing.assert_array_equal(x[k], y[k], err_msg=f"{a.name}:{k}")


def test_killed_data_generation_reruns_to_the_uninterrupted_result(tmp_path):
    pasta([*DATA, "--out", str(tmp_path / "whole")])
    rng = np.random.default_rng(0)
    for attempt in range(2):
        out = tmp_path / f"killed{attempt}"
        pasta([*DATA, "--out", str(out)], kill_after=float(rng.uniform(0.3, 1.5)))
        if not (out / "summary.json").exists():  # killed before the end: the rerun finishes the work
            pasta([*DATA, "--out", str(out)])
        # summary.json marks a finished run: whatever it marks equals the uninterrupted result.
        same_dataset(tmp_path / "whole", out)


def test_killed_training_resumes_to_the_uninterrupted_model(tmp_path):
    pasta([*DATA, "--out", str(tmp_path / "d")])
    data = str(tmp_path / "d" / "train")
    pasta([*TRAIN, "--data", data, "--out", str(tmp_path / "whole.npz")])
    rng = np.random.default_rng(1)
    for attempt in range(3):
        out = tmp_path / f"killed{attempt}.npz"
        pasta([*TRAIN, "--data", data, "--out", str(out)], kill_after=float(rng.uniform(3.0, 5.5)))
        pasta([*TRAIN, "--data", data, "--out", str(out)])  # resumes from out.state, if the kill left one
        assert not Path(f"{out}.state").exists(), "the resume state is removed once the model is written"
        with np.load(tmp_path / "whole.npz") as x, np.load(out) as y:
            for k in ("trunk_w", "trunk_b", "head_w", "head_b", "prior"):
                np.testing.assert_array_equal(x[k], y[k], err_msg=k)


GENERATE = ["generate", "--episodes", "60", "--chunk", "6", "--policy", "bayes", "--epsilon", "0.1", "--seed", "5",
            "--quiet"]


def kill_after_first_chunk(args, folder: Path, extra: float) -> None:
    """Run ``pasta args``; SIGKILL it ``extra`` seconds after its first chunk reaches the disk."""
    proc = subprocess.Popen([sys.executable, "-m", "pasta_cli.main", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    first = folder / ".partial" / "chunk-00000.npz"
    deadline = time.monotonic() + 120
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(extra)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)


def test_killed_dataset_generation_reruns_to_the_uninterrupted_arrays(tmp_path):
    pytest.importorskip("minari")
    from pasta_env.datasets import IncompleteDatasetError, load

    pasta([*GENERATE, "--out", str(tmp_path / "whole")])
    pasta([*GENERATE, "--out", str(tmp_path / "again")])
    whole = load(tmp_path / "whole").arrays()
    again = load(tmp_path / "again").arrays()
    assert all(whole[k].tobytes() == again[k].tobytes() for k in whole)  # generation is deterministic
    rng = np.random.default_rng(2)
    cut_mid_run = 0
    for attempt in range(3):
        out = tmp_path / f"killed{attempt}"
        kill_after_first_chunk([*GENERATE, "--out", str(out)], out, extra=float(rng.uniform(0.0, 0.4)))
        if not (out / "manifest.json").exists():
            cut_mid_run += 1
            with pytest.raises(IncompleteDatasetError):  # an unfinished dataset never loads as complete
                load(out)
        pasta([*GENERATE, "--out", str(out)])  # continues from the chunks the kill left
        resumed = load(out).arrays()
        for k, v in whole.items():
            assert v.tobytes() == resumed[k].tobytes(), k
        assert not (out / ".partial").exists()
    assert cut_mid_run, "no kill landed before the end; the test proved nothing"
