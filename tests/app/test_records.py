"""The rating app's data folder on a bad day: a full disk, torn and unterminated lines, a damaged access file."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from pasta_app import records
from pasta_app.records import DataFolder, RecordError, read_jsonl, repair_tail
from simulators.files import FileFormatError


def turn(i: int) -> dict:
    return {"user_id": "rater-0001", "trajectory_id": "s", "turn": i, "chosen": 1, "answer": None}


def add(folder: DataFolder, i: int) -> None:
    folder.add_turn(turn(i), ["p"], np.zeros((1, 4)), ["i"], np.zeros((1, 4)))


def test_a_write_cut_short_by_a_full_disk_records_nothing_and_says_so(tmp_path, monkeypatch):
    folder = DataFolder.open(tmp_path)
    add(folder, 0)
    before = (tmp_path / "choices.jsonl").read_bytes()
    real_write = os.write

    def full_disk(fd, data):  # a few bytes go, then the disk is full
        return real_write(fd, data[: min(len(data), 7)])

    monkeypatch.setattr(records.os, "write", full_disk)
    with pytest.raises(RecordError, match="could not be written.*nothing was recorded"):
        add(folder, 1)
    assert (tmp_path / "choices.jsonl").read_bytes() == before  # the cut line was taken back
    monkeypatch.setattr(records.os, "write", real_write)
    add(folder, 1)  # space is back: the next turn lands on a clean line
    assert [t["turn"] for t in folder.turns()] == [0, 1]


def test_a_torn_last_line_is_dropped_and_a_complete_one_kept(tmp_path):
    path = tmp_path / "choices.jsonl"
    path.write_text(json.dumps(turn(0)) + "\n" + json.dumps(turn(1)))  # complete, only the newline missing
    repair_tail(path)
    assert [r["turn"] for r in read_jsonl(path)] == [0, 1] and path.read_text().endswith("\n")
    path.write_text(path.read_text() + '{"user_id": "rater-0001", "tur')  # cut by a kill
    folder = DataFolder.open(tmp_path)
    assert [t["turn"] for t in folder.turns()] == [0, 1]
    add(folder, 2)
    assert [t["turn"] for t in folder.turns()] == [0, 1, 2]


def test_a_damaged_line_is_named_by_file_and_line(tmp_path):
    path = tmp_path / "choices.jsonl"
    path.write_text(json.dumps(turn(0)) + "\n" + '{"user_id" "x"}\n')
    with pytest.raises(FileFormatError, match=r"choices.jsonl:2: not a JSON record"):
        read_jsonl(path)


def test_a_damaged_access_file_keeps_the_tokens_read_before(tmp_path):
    folder = DataFolder.open(tmp_path)
    tokens = folder.add_raters(1)
    assert folder.who(tokens["rater-0001"]) == "rater-0001"
    (tmp_path / "access.json").write_text('{"admin": ')  # damaged while the server runs
    os.utime(tmp_path / "access.json", ns=(1, 1))
    with pytest.warns(RuntimeWarning, match="access.json is damaged"):
        assert folder.who(tokens["rater-0001"]) == "rater-0001"
    fresh = DataFolder.open(tmp_path)  # a new server has nothing good to fall back on: it says so
    with pytest.raises(FileFormatError, match="access.json: damaged"):
        fresh.who("anything")
