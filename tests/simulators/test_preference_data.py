"""The preference-data format: round trips and errors that name the file and row."""

from __future__ import annotations

import json

import numpy as np
import pytest

from simulators.preferences.data import DataError, read_dataset, write_dataset

D = 64
RNG = np.random.default_rng(0)


def emb(n=1):
    x = RNG.standard_normal((n, D)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def small_dataset(tmp_path, **extra):
    images = {f"i{j}": e for j, e in enumerate(emb(12))}
    records = {
        "pairs": [{"user_id": "u1", "prompt": "a cat", "image_a": "i0", "image_b": "i1", "label": 1.0},
                  {"user_id": "u2", "prompt": "a dog", "image_a": "i2", "image_b": "i3", "label": 0.5}],
        "ratings": [{"user_id": "u1", "prompt": "a cat", "image": "i4", "rating": 7.5}],
        "choices": [{"user_id": "u2", "trajectory_id": "t", "turn": 0, "initial_prompt": "a", "prompts": ["a", "b"],
                     "images": [["i5", "i6"], ["i7", "i8"]], "chosen": 1}],
    }
    records.update(extra)
    return write_dataset(tmp_path / "d", records, {"a cat": emb()[0]}, images, {"u1": 0, "u2": 1},
                         type_names=("cats", "dogs"))


def test_round_trip(tmp_path):
    data = read_dataset(small_dataset(tmp_path))
    assert data.counts() == {"pairs": 2, "ratings": 1, "choices": 1}
    assert data.users == ("u1", "u2") and data.true_types.tolist() == [0, 1]
    assert data.type_names == ("cats", "dogs")
    assert data.choices["image"].shape == (1, 2, 2) and data.choices["chosen"].tolist() == [1]
    assert data.choices["request"].tolist() == [data.choices["prompt"][0, 0]]  # the request "a"
    assert data.pairs["label"].tolist() == [1.0, 0.5]
    # "a dog" had no precomputed embedding: the static text encoder embedded it.
    dog = data.prompt_emb[data.pairs["prompt"][1]]
    assert np.isclose(np.linalg.norm(dog), 1.0, atol=1e-3)
    test, rest = data.split_records(0.5, seed=1)
    assert {k: test.counts()[k] + rest.counts()[k] for k in test.counts()} == data.counts()
    one = data.subset_users(np.array([False, True]))
    assert one.users == ("u2",) and one.counts() == {"pairs": 1, "ratings": 0, "choices": 1}


@pytest.mark.parametrize("kind, line, match", [
    ("pairs", "{not json", "pairs.jsonl:2: not valid JSON"),
    ("pairs", json.dumps({"user_id": "u", "prompt": "p", "image_a": "i0", "image_b": "i1"}),
     "pairs.jsonl:2: missing field 'label'"),
    ("pairs", json.dumps({"user_id": "u", "prompt": "p", "image_a": "i0", "image_b": "i1", "label": 2}),
     r"pairs.jsonl:2: label must be in \[0, 1\]"),
    ("ratings", json.dumps({"user_id": "u", "prompt": "p", "image": "i0", "rating": "good"}),
     "ratings.jsonl:2: field 'rating' should be float, got str"),
    ("ratings", json.dumps({"user_id": "u", "prompt": "p", "image": "nope", "rating": 1}),
     "ratings.jsonl:2: image 'nope' has no embedding"),
    ("choices", json.dumps({"user_id": "u", "trajectory_id": "t", "turn": 1, "initial_prompt": "a",
                            "prompts": ["a", "b", "c"], "images": [["i0"], ["i1"], ["i2"]], "chosen": 0}),
     r"choices.jsonl:2: slate of 3 prompts x 1 images, but earlier records have 2 x 2"),
    ("choices", json.dumps({"user_id": "u", "trajectory_id": "t", "turn": 1, "initial_prompt": "a",
                            "prompts": ["a", "b"], "images": [["i0", "i1"], ["i2", "i3"]], "chosen": 5}),
     "choices.jsonl:2: chosen index 5 is out of range 0..1"),
])
def test_malformed_records_name_file_and_line(tmp_path, kind, line, match):
    folder = small_dataset(tmp_path)
    path = folder / f"{kind}.jsonl"
    first = path.read_text().splitlines()[0]
    path.write_text(first + "\n" + line + "\n")
    with pytest.raises(DataError, match=match):
        read_dataset(folder)


def test_missing_folder_and_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_dataset(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds none of pairs.jsonl"):
        read_dataset(tmp_path / "empty")


def test_writes_are_atomic(tmp_path, monkeypatch):
    folder = small_dataset(tmp_path)
    before = (folder / "pairs.jsonl").read_text()

    class Boom:
        def __iter__(self):
            yield {"user_id": "x", "prompt": "p", "image_a": "i0", "image_b": "i1", "label": 1.0}
            raise RuntimeError("interrupted")

        def __bool__(self):
            return True

    with pytest.raises(RuntimeError):
        write_dataset(folder, {"pairs": Boom()})
    assert (folder / "pairs.jsonl").read_text() == before
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]
