"""Adapters from Pick-a-Pic, HPD v2 and Simulacra Aesthetic Captions layouts."""

from __future__ import annotations

import csv
import json
import sqlite3

import numpy as np
import pytest

from simulators.preferences.adapters import convert_hpd_v2, convert_pick_a_pic, convert_simulacra
from simulators.preferences.data import DataError, read_dataset

D = 64


def unit(x):
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def table(keys):
    """Precomputed image embeddings, unit vectors as CLIP's normalised ones are."""
    rng = np.random.default_rng(len(keys))
    return {k: unit(rng.standard_normal(D)) for k in keys}


def encoder_from_bytes(payloads):
    """An image encoder over raw bytes: a seeded projection of the byte histogram, normalised."""
    proj = np.random.default_rng(7).standard_normal((256, D)).astype(np.float32)
    hist = np.stack([np.bincount(np.frombuffer(p, np.uint8), minlength=256) for p in payloads])
    return unit(hist.astype(np.float32) @ proj)


PICK_ROWS = [
    {"caption": "a cat", "label_0": 1.0, "label_1": 0.0, "user_id": 11, "image_0_uid": "a",
     "image_1_uid": "b", "has_label": True, "are_different": True},
    {"caption": "a dog", "label_0": 0.5, "label_1": 0.5, "user_id": 12, "image_0_uid": "c",
     "image_1_uid": "d", "has_label": True, "are_different": True},
    {"caption": "a cow", "label_0": 0.0, "label_1": 1.0, "user_id": 11, "image_0_uid": "e",
     "image_1_uid": "f", "has_label": False, "are_different": True},
    {"caption": "a pig", "label_0": 0.0, "label_1": 1.0, "user_id": 13, "image_0_uid": "g",
     "image_1_uid": "g", "has_label": True, "are_different": False},
]


def test_pick_a_pic_csv(tmp_path):
    path = tmp_path / "pick.csv"
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(PICK_ROWS[0]))
        w.writeheader()
        w.writerows(PICK_ROWS)
    summary = convert_pick_a_pic(path, tmp_path / "out", image_embeddings=table("abcdefg"))
    assert summary == {"written": {"pairs": 2}, "skipped": {"no_label": 1, "same_images": 1}, "users": 2}
    data = read_dataset(tmp_path / "out")
    assert data.pairs["label"].tolist() == [1.0, 0.5]
    assert data.users == ("11", "12")
    np.testing.assert_allclose(data.image_emb[data.pairs["image_a"][0]], table("abcdefg")["a"])


def test_pick_a_pic_image_bytes_through_an_encoder(tmp_path):
    rows = [{"caption": "x", "label_0": 1, "label_1": 0, "user_id": 1, "jpg_0": b"\x01\x02", "jpg_1": b"\x03"}]
    convert_pick_a_pic(rows, tmp_path / "out", image_encoder=encoder_from_bytes)
    data = read_dataset(tmp_path / "out")
    np.testing.assert_allclose(data.image_emb[data.pairs["image_b"][0]], encoder_from_bytes([b"\x03"])[0])


def test_pick_a_pic_errors_name_the_row(tmp_path):
    bad = dict(PICK_ROWS[0], label_0="yes")
    with pytest.raises(DataError, match="row 1: label_0 should be a number"):
        convert_pick_a_pic([PICK_ROWS[0], bad], tmp_path / "o", image_embeddings=table("ab"))
    with pytest.raises(DataError, match="row 0: missing caption"):
        convert_pick_a_pic([{"label_0": 1}], tmp_path / "o")
    with pytest.raises(DataError, match="image 'a' has no embedding .*image_encoder="):
        convert_pick_a_pic(PICK_ROWS[:1], tmp_path / "o")


def test_hpd_v2_rankings_become_pairs(tmp_path):
    entries = [{"prompt": "castle", "image_path": ["p1", "p2", "p3"], "rank": [2, 1, 2]},
               {"prompt": "boat", "file_path": ["p4", "p5"], "human_preference": [0, 1], "user_hash": "h"},
               {"prompt": "lonely", "image_path": ["p6"], "rank": [1]}]
    path = tmp_path / "train.json"
    path.write_text(json.dumps(entries))
    summary = convert_hpd_v2(path, tmp_path / "out", image_embeddings=table([f"p{i}" for i in range(1, 7)]))
    assert summary["written"] == {"pairs": 4} and summary["skipped"] == {"fewer_than_two_images": 1}
    data = read_dataset(tmp_path / "out")
    # castle: (p1,p2): p2 wins -> 0; (p1,p3): tie -> 0.5; (p2,p3): p2 wins -> 1. boat: p5 preferred -> 0.
    assert data.pairs["label"].tolist() == [0.0, 0.5, 1.0, 0.0]
    assert data.users == ("hpd-0", "h")


def test_hpd_v2_bad_entry(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps([{"prompt": "x", "image_path": ["a", "b"], "rank": [1]}]))
    with pytest.raises(DataError, match="entry 0: 2 images but 1 ranks"):
        convert_hpd_v2(path, tmp_path / "o", image_embeddings=table("ab"))


def make_sac(path):
    con = sqlite3.connect(path)
    con.executescript("""
        CREATE TABLE generations (id INTEGER PRIMARY KEY, sid INTEGER, method TEXT, prompt TEXT, verified INT);
        CREATE TABLE images (id INTEGER PRIMARY KEY, gid INTEGER, idx INTEGER);
        CREATE TABLE paths (iid INTEGER, path TEXT);
        CREATE TABLE ratings (sid INTEGER, iid INTEGER, rating INTEGER, verified INT);
        INSERT INTO generations VALUES (1, 100, 'cfg', 'a misty forest', 1), (2, 101, 'cfg', 'a red car', 1);
        INSERT INTO images VALUES (10, 1, 0), (11, 1, 1), (12, 2, 0);
        INSERT INTO paths VALUES (10, 'a/10.png'), (11, 'a/11.png'), (12, 'b/12.png');
        INSERT INTO ratings VALUES (7, 10, 8, 1), (7, 12, 3, 1), (9, 11, NULL, 0), (9, 12, 6, 1);
    """)
    con.commit()
    con.close()


def test_simulacra_sqlite(tmp_path):
    db = tmp_path / "sac.sqlite"
    make_sac(db)
    summary = convert_simulacra(db, tmp_path / "out", image_embeddings=table(["10", "11", "12"]))
    assert summary == {"written": {"ratings": 3}, "skipped": {"no_rating": 1}, "users": 2}
    data = read_dataset(tmp_path / "out")
    assert data.ratings["rating"].tolist() == [8.0, 3.0, 6.0]
    assert data.users == ("7", "9")


def test_simulacra_wrong_database(tmp_path):
    db = tmp_path / "other.sqlite"
    sqlite3.connect(db).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(DataError, match="not a Simulacra Aesthetic Captions database"):
        convert_simulacra(db, tmp_path / "o")


def test_embeddings_are_stored_as_directions_and_an_all_zero_one_is_refused(tmp_path):
    path = tmp_path / "pick.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in PICK_ROWS[:2]) + "\n")
    raw = {k: 3.0 * v for k, v in table("abcd").items()}  # unnormalised, as a raw CLIP projection is
    convert_pick_a_pic(path, tmp_path / "out", image_embeddings=raw)
    data = read_dataset(tmp_path / "out")
    np.testing.assert_allclose(np.linalg.norm(data.image_emb, axis=1), 1.0, atol=1e-6)
    raw["a"] = np.zeros(D, np.float32)
    with pytest.raises(DataError, match="image 'a' has an all-zero embedding"):
        convert_pick_a_pic(path, tmp_path / "out2", image_embeddings=raw)
