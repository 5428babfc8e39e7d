"""Nothing lost, nothing silently wrong: damaged files, outputs, locks, resume identity, CLI errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from pasta_cli.main import main
from simulators.errors import PastaError
from simulators.files import BusyError, OutputError, WriteLock, claim_output_dir, read_npz

torch = pytest.importorskip("torch")

from pasta_env.synthetic_data import SyntheticDataConfig, generate  # noqa: E402
from simulators.preferences.adapters import _load_table  # noqa: E402
from simulators.preferences.data import read_dataset  # noqa: E402
from simulators.users.checkpoint import load_user_model  # noqa: E402
from simulators.users.em import EMConfig, EMTrainer  # noqa: E402
from simulators.users.neural import TrunkHeadsUserModel  # noqa: E402
from simulators.users.user_model import TasteUserModel  # noqa: E402

SMALL = ["--k", "2", "--users", "40", "--test-users", "0", "--pairs-per-user", "4", "--ratings-per-user", "2",
         "--trajectories-per-user", "1", "--quiet"]


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("small")
    generate(out / "d", SyntheticDataConfig(num_types=2, users=40, test_users=0, pairs_per_user=4,
                                            ratings_per_user=2, trajectories_per_user=1, seed=1), progress=False)
    return out / "d"


# --- a corpus of damaged files, built here, run through every reader ---------------------------------------

def _good_checkpoint(path):
    rng = np.random.default_rng(0)
    TrunkHeadsUserModel(prior=np.array([0.5, 0.5]), temperature=1.0, trunk_w=rng.standard_normal((3, 8)),
                        trunk_b=np.zeros(3), head_w=rng.standard_normal((2, 11)), head_b=np.zeros(2)).save(path)


def _damage(good: Path, folder: Path) -> dict[str, Path]:
    """Damaged variants of a good .npz: truncated, empty, foreign, another archive, NaN, a folder."""
    data = good.read_bytes()
    out = {}
    for name, content in {"truncated": data[: len(data) // 2], "empty": b"", "foreign": b"\x00\x01junk" * 20,
                          "json": b'{"not": "npz"}'}.items():
        out[name] = folder / f"{name}.npz"
        out[name].write_bytes(content)
    out["other-archive"] = folder / "other.npz"
    with zipfile.ZipFile(out["other-archive"], "w") as z:
        z.writestr("readme.txt", "hello")
    with np.load(good) as d:
        arrays = {k: d[k] for k in d.files}
    for k, v in arrays.items():
        if v.dtype.kind == "f" and v.size:
            v = v.copy()
            v.flat[0] = np.nan
            arrays[k] = v
            break
    out["nan"] = folder / "nan.npz"
    np.savez(out["nan"], **arrays)
    out["pickled"] = folder / "pickled.npz"
    np.savez(out["pickled"], header=np.array([{"a": 1}], dtype=object), **{k: v for k, v in arrays.items()
                                                                           if k != "header"})
    out["folder"] = folder / "folder.npz"
    out["folder"].mkdir()
    out["missing"] = folder / "missing.npz"
    return out


def _taste(path):
    TasteUserModel(prior=np.array([0.5, 0.5]), temperature=1.0, tastes=np.eye(2, 8)).save(path)


def _embeddings(path):
    unit = np.full((1, 8), 8 ** -0.5, np.float32)  # embeddings are unit vectors
    np.savez(path, prompt_keys=np.array(["a"]), prompt_emb=unit, image_keys=np.array(["i"]), image_emb=unit)


def _table(path):
    np.savez(path, keys=np.array(["i0", "i1"]), emb=np.ones((2, 8), np.float32))


def _read_embeddings(path):
    """A one-rating dataset whose embeddings.npz is ``path`` (copied; a folder stays a folder)."""
    folder = path.parent / f"ds-{path.stem}"
    folder.mkdir(exist_ok=True)
    (folder / "ratings.jsonl").write_text(json.dumps({"user_id": "u", "prompt": "a", "image": "i",
                                                      "rating": 1.0}) + "\n")
    target = folder / "embeddings.npz"
    if path.is_dir():
        target.mkdir(exist_ok=True)
    elif path.exists():
        shutil.copyfile(path, target)
    return read_dataset(folder)


READERS = {
    "user-model checkpoint": (_good_checkpoint, load_user_model),
    "EM checkpoint loader": (_good_checkpoint, TrunkHeadsUserModel.load),
    "taste model": (_taste, TasteUserModel.load),
    "dataset embeddings": (_embeddings, _read_embeddings),
    "image-embedding table": (_table, _load_table),
}


@pytest.mark.parametrize("reader", sorted(READERS))
def test_every_reader_names_every_damaged_file(reader, tmp_path):
    make, read = READERS[reader]
    good = tmp_path / "good.npz"
    make(good)
    read(good)  # the good file reads
    for kind, path in _damage(good, tmp_path).items():
        if reader == "dataset embeddings" and kind == "missing":
            continue  # a dataset without embeddings.npz is legal (prompts are embedded, images then lack one)
        with pytest.raises(PastaError) as info:
            read(path)
        assert path.stem in str(info.value), (kind, str(info.value))  # the file (or its dataset) is named


def test_read_npz_messages_say_what_is_wrong(tmp_path):
    good = tmp_path / "good.npz"
    _good_checkpoint(good)
    files = _damage(good, tmp_path)
    cases = {"truncated": "truncated", "empty": "empty", "foreign": "not an .npz archive",
             "nan": "NaN", "pickled": "pickled objects, which are never loaded", "folder": "is a folder",
             "missing": "does not exist"}
    for kind, words in cases.items():
        with pytest.raises(PastaError, match=words):
            read_npz(files[kind], "a thing", finite=("trunk_w", "trunk_b", "head_w", "head_b", "prior"))


def test_embeddings_of_other_dimensions_are_named(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "ratings.jsonl").write_text(json.dumps({"user_id": "u", "prompt": "a", "image": "i",
                                                      "rating": 1.0}) + "\n")
    np.savez(folder / "embeddings.npz", prompt_keys=np.array(["a"]), prompt_emb=np.ones((1, 8), np.float32),
             image_keys=np.array(["i"]), image_emb=np.ones((1, 6), np.float32))
    with pytest.raises(PastaError, match="prompt embeddings are 8-d but image embeddings 6-d"):
        read_dataset(folder)


# --- resume state: identity, no pickles, nothing lost ------------------------------------------------------

class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ.get('PASTA_EVIL_MARK', '/tmp/pasta-evil')}",))


def test_a_planted_pickle_in_the_resume_state_is_never_executed(small_data, tmp_path, monkeypatch):
    mark = tmp_path / "executed"
    monkeypatch.setenv("PASTA_EVIL_MARK", str(mark))
    state = tmp_path / "m.npz.state"
    torch.save({"format": "pasta-em-state-1", "payload": _Evil()}, state)
    data = read_dataset(small_data / "train")
    with pytest.raises(PastaError, match="not a training resume state"):
        EMTrainer(data, EMConfig(num_types=2, epochs=2, num_inits=1), checkpoint=state).fit(progress=False)
    assert not mark.exists()


def test_resuming_with_other_data_is_refused(small_data, tmp_path):
    data = read_dataset(small_data / "train")
    other, _ = data.split_records(0.5, seed=0)
    state = tmp_path / "m.state"
    cfg = EMConfig(num_types=2, epochs=2, num_inits=1, hidden=4)
    trainer = EMTrainer(data, cfg, checkpoint=state)
    trainer.fit(progress=False)
    assert state.is_file()
    with pytest.raises(PastaError, match="belongs to a run with other training data.*--no-resume"):
        EMTrainer(other, cfg, checkpoint=state).fit(progress=False)


def test_training_never_loses_the_resume_state_when_the_output_cannot_be_written(small_data, tmp_path, capsys):
    out = tmp_path / "model.npz"
    out.mkdir()  # an existing folder where the checkpoint should go
    state = tmp_path / "model.npz.state"
    state.write_bytes(b"progress of an interrupted run")
    code = main(["train-user-model", "--data", str(small_data / "train"), "--k", "2", "--epochs", "2",
                 "--out", str(out), "--quiet"])
    assert code == 2
    assert "is a folder" in capsys.readouterr().err
    assert state.read_bytes() == b"progress of an interrupted run"


def test_training_leaves_the_callers_torch_rng_alone(small_data):
    torch.manual_seed(123)
    before = torch.get_rng_state().clone()
    EMTrainer(read_dataset(small_data / "train"), EMConfig(num_types=2, epochs=1, num_inits=2, init_epochs=1,
                                                          hidden=4)).fit(progress=False)
    assert torch.equal(torch.get_rng_state(), before)


def test_a_missing_gpu_is_named(small_data, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    out = str(tmp_path / "m.npz")
    assert main(["train-user-model", "--data", str(small_data / "train"), "--out", out, "--device", "cuda"]) == 2
    assert "torch sees no CUDA GPU" in capsys.readouterr().err
    assert main(["train-user-model", "--data", str(small_data / "train"), "--out", out, "--device", "tpu9"]) == 2
    assert "unknown torch device 'tpu9'" in capsys.readouterr().err


# --- outputs: claimed, locked, checked early -----------------------------------------------------------------

def test_a_folder_with_another_runs_files_is_refused_unless_overwrite(tmp_path, capsys):
    out = tmp_path / "data"
    assert main(["make-synthetic-data", *SMALL, "--seed", "1", "--out", str(out)]) == 0
    first = (out / "train" / "pairs.jsonl").read_text()
    assert main(["make-synthetic-data", *SMALL, "--seed", "2", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "written by a run with other arguments" in err and "--overwrite" in err
    assert (out / "train" / "pairs.jsonl").read_text() == first  # untouched
    (out / "stale.jsonl").write_text("from another run\n")
    assert main(["make-synthetic-data", *SMALL, "--seed", "2", "--out", str(out), "--overwrite"]) == 0
    assert not (out / "stale.jsonl").exists()
    assert (out / "train" / "pairs.jsonl").read_text() != first
    # The same arguments again: accepted (a rerun redoes the same work).
    assert main(["make-synthetic-data", *SMALL, "--seed", "2", "--out", str(out)]) == 0


def test_a_folder_of_foreign_files_is_refused(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("precious")
    assert main(["make-synthetic-data", *SMALL, "--out", str(out)]) == 2
    assert "holds files that no pasta run of this kind wrote" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "precious"


def test_a_second_writer_is_refused(tmp_path, small_data, capsys):
    out = tmp_path / "busy"
    with WriteLock(out):
        assert main(["make-synthetic-data", *SMALL, "--out", str(out)]) == 2
        assert "another process is writing" in capsys.readouterr().err
        model = tmp_path / "m.npz"
        with WriteLock(model):
            with pytest.raises(BusyError):
                with WriteLock(model):
                    pass
    with WriteLock(out):  # released
        pass


def test_claim_output_dir_rules(tmp_path):
    folder = tmp_path / "f"
    assert claim_output_dir(folder, {"a": 1}) is False
    (folder / "x").write_text("1")
    assert claim_output_dir(folder, {"a": 1}) is True  # a rerun of the same run
    with pytest.raises(OutputError, match="other arguments"):
        claim_output_dir(folder, {"a": 2})
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match="is a file"):
        claim_output_dir(tmp_path / "file", {"a": 1})


@pytest.mark.parametrize("argv, words", [
    (["evaluate", "--episodes", "5", "--json", "{tmp}"], "is a folder"),
    (["evaluate", "--episodes", "5", "--plot", "{tmp}"], "is a folder"),
    (["evaluate", "--episodes", "0"], "--episodes must be at least 1"),
    (["evaluate", "--num-envs", "0"], "--num-envs must be at least 1"),
    (["evaluate", "--agents", "smart"], "unknown agent 'smart'"),
    (["evaluate", "--agents", ","], "--agents names no agent"),
    (["evaluate", "--prompts", "{tmp}"], "is a folder"),
    (["evaluate", "--prompts", "{tmp}/latin1.txt"], "latin1.txt' is not UTF-8"),
    (["evaluate", "--prompts", "{tmp}/none.txt"], "none.txt' does not exist"),
    (["validate-world", "--episodes", "1"], "at least 2"),
    (["eval-user-model", "m.npz", "--data", "{tmp}", "--context-fraction", "1.5"], "--context-fraction must be"),
    (["eval-user-model", "{tmp}", "--data", "{tmp}"], "is a folder"),
    (["train-user-model", "--data", "{tmp}/latin1.txt", "--out", "{tmp}/m.npz"], "is a file; give the dataset"),
    (["train-user-model", "--data", "{tmp}", "--out", "{tmp}/m.npz", "--weights", "1,x,1"], "--weights takes"),
    (["bench", "--runs", "0"], "--runs must be at least 1"),
    (["bench", "--seconds", "0"], "--seconds must be positive"),
    (["make-synthetic-data", "--users", "-3", "--out", "{tmp}/d"], "users must be at least 1, got -3"),
    (["make-synthetic-data", "--pairs-per-user", "-1", "--out", "{tmp}/d"], "pairs_per_user must be >= 0"),
    (["train-user-model", "--data", "{tmp}", "--out", "{tmp}/m.npz", "--lr", "0"], "lr must be a positive"),
])
def test_cli_failures_are_one_line_with_exit_status_2(argv, words, tmp_path, capsys):
    (tmp_path / "latin1.txt").write_bytes("un caf\xe9 au lait\n".encode("latin-1"))
    code = run([a.replace("{tmp}", str(tmp_path)) for a in argv])
    err = capsys.readouterr().err
    assert code == 2
    assert words in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def run(argv) -> int:
    """``pasta argv``'s exit status, whether it returns it or argparse exits."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(ValueError, match="at least 1"):
        main(["--debug", "evaluate", "--episodes", "0"])


def child_peak_mib(code: str) -> float:
    """Run ``code`` in a fresh Python; its own peak resident memory in MiB.

    VmHWM, not ru_maxrss: ru_maxrss can carry the parent's peak over a vfork + exec.
    """
    code += ("\nimport resource\n"
             "try:\n"
             "    hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
             "except OSError:\n"
             "    hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
             "print(hwm)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1]) / 1024


def test_a_huge_vector_env_builds_in_little_memory():
    peak = child_peak_mib("import gymnasium as gym, pasta_env\n"
                          "v = gym.make_vec('PastaT2I-v0', num_envs=100000, vectorization_mode='vector_entry_point')\n"
                          "assert v.observation_space['candidates'].shape == (100000, 25, 64)")
    assert peak < 1024, f"building 100,000 envs peaked at {peak:.0f} MiB"


def test_a_population_of_100000_users_runs_in_under_4_gib_with_copy_false():
    """Reset and ten steps (two episodes) of 100,000 users."""
    peak = child_peak_mib(
        "import numpy as np, gymnasium as gym, pasta_env\n"
        "v = gym.make_vec('PastaT2I-v0', num_envs=100000, vectorization_mode='vector_entry_point', copy=False)\n"
        "obs, info = v.reset(seed=0)\n"
        "rng = np.random.default_rng(0)\n"
        "for _ in range(10):\n"
        "    obs, r, term, trunc, info = v.step(rng.integers(0, 25, (100000, 4)))\n"
        "assert obs['history_mask'].sum() == 100000 * 4  # the 6th step started the second episode")
    assert peak < 4096, f"100,000 users peaked at {peak:.0f} MiB"


def test_vector_env_reset_records_its_seed():
    import gymnasium as gym

    vec = gym.make_vec("PastaT2I-v0", num_envs=2, vectorization_mode="vector_entry_point")
    vec.reset(seed=17)
    assert vec.np_random_seed == 17
