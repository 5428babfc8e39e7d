"""Adapters from public preference datasets to the documented on-disk format.

* **Pick-a-Pic** (v1/v2): a table (parquet, CSV or JSONL, or rows from
  ``datasets``) with ``caption, label_0, label_1, user_id`` and the images
  as ``image_0_uid/image_1_uid`` (ids) and/or ``jpg_0/jpg_1`` (bytes).
  Rows with ``has_label`` false or ``are_different`` false are skipped and
  counted; ``label_0`` becomes the label (0.5 is a tie).
* **HPD v2**: a JSON list of ``{"prompt", "image_path" | "file_path": [...],
  "rank" | "human_preference": [...], "user_hash"?}``; every pair of images
  of an entry becomes a pair record (lower rank, or preference 1, wins;
  equal ranks tie). Without a user field each entry is its own user.
* **Simulacra Aesthetic Captions**: the sqlite file with tables
  ``generations(id, sid, method, prompt, verified)``, ``images(id, gid, idx)``,
  ``paths(iid, path)`` and ``ratings(sid, iid, rating, verified)``; each rating
  becomes a rating record of user ``sid``; ratings without a value are skipped
  and counted.

Images need embeddings: pass ``image_embeddings`` (image id -> vector, or an
``.npz`` with ``keys``/``emb``) or ``image_encoder`` (a callable taking a list
of image payloads, bytes or paths, returning ``(n, d)``; the ``clip`` world
provides one). ``text_encoder`` precomputes prompt embeddings in the same
space; without it prompts are embedded when the dataset is read.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import os
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from simulators.atomic import write_json
from simulators.backends import require
from simulators.files import read_npz
from simulators.preferences.data import DataError, write_dataset

Encoder = Callable[[Sequence], np.ndarray]


class _Images:
    """Resolves image ids to embeddings from a table or an encoder."""

    def __init__(self, table, encoder: Encoder | None, source: str):
        self.table = _load_table(table) if table is not None else {}
        self.encoder, self.source = encoder, source
        self.pending: dict[str, object] = {}
        self.where: dict[str, str] = {}
        self.found: dict[str, np.ndarray] = {}

    def add(self, key: str, payload, where: str) -> str:
        key = str(key)
        if key in self.table:
            self.found[key] = self.table[key]
        elif key not in self.found:
            self.pending.setdefault(key, payload)
            self.where.setdefault(key, where)
        return key

    def resolve(self, batch: int = 256) -> dict[str, np.ndarray]:
        todo = [k for k in self.pending if k not in self.found]
        encoder = self.encoder
        if todo and encoder is None:
            k = todo[0]
            raise DataError(f"{self.where[k]}: image {k!r} has no embedding ({len(todo)} images lack one); "
                            "pass image_embeddings= (e.g. precomputed CLIP embeddings) or image_encoder= "
                            "(the clip world's encoder: pip install 'pasta-t2i[clip]')")
        for i in range(0, len(todo), batch):
            keys = todo[i:i + batch]
            payloads = [self.pending[k] for k in keys]
            if any(p is None for p in payloads):
                k = keys[[p is None for p in payloads].index(True)]
                raise DataError(f"{self.where[k]}: image {k!r} has neither an embedding nor image data")
            emb = np.asarray(encoder(payloads), np.float32)  # type: ignore[misc]  # checked above
            self.found.update(zip(keys, emb))
        return self.found


def _load_table(table) -> dict[str, np.ndarray]:
    if isinstance(table, Mapping):
        return {str(k): np.asarray(v, np.float32) for k, v in table.items()}
    path = Path(table)
    data = read_npz(path, "an image-embedding table", required=("keys", "emb"), finite=("emb",), error=DataError,
                    fix="expected an .npz with arrays 'keys' (image ids) and 'emb' (one row each)")
    if len(data["keys"]) != len(data["emb"]) or data["emb"].ndim != 2:
        raise DataError(f"{path}: {len(data['keys'])} keys but emb of shape {data['emb'].shape}; "
                        "expected one embedding row per key")
    return {str(k): v.astype(np.float32) for k, v in zip(data["keys"], data["emb"])}


def _rows(source) -> Iterable[tuple[str, dict]]:
    """``(where, row)`` from a table file or an iterable of dicts."""
    if not isinstance(source, (str, os.PathLike)):
        for i, row in enumerate(source):
            yield f"row {i}", dict(row)
        return
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        pq = require("pyarrow.parquet", "reading parquet")
        for i, row in enumerate(pq.read_table(path).to_pylist()):
            yield f"{path}:row {i}", row
    elif suffix in (".jsonl", ".json"):
        with path.open(encoding="utf-8") as fh:
            for line_no, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        yield f"{path}:{line_no}", json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise DataError(f"{path}:{line_no}: not valid JSON ({exc.msg})") from exc
    else:
        with path.open(newline="", encoding="utf-8") as fh:
            for i, row in enumerate(csv.DictReader(fh, delimiter="\t" if suffix == ".tsv" else ","), 2):
                yield f"{path}:{i}", row


def _need(row: dict, names: Sequence[str], where: str) -> None:
    missing = [n for n in names if n not in row or row[n] is None or row[n] == ""]
    if missing:
        raise DataError(f"{where}: missing {', '.join(missing)} (columns present: {', '.join(row)})")


def _number(value, name: str, where: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{where}: {name} should be a number, got {value!r}") from exc


def _flag(value) -> bool:
    return str(value).strip().lower() not in ("false", "0", "no", "")


def _unit_rows(keys: Sequence[str], emb: np.ndarray, what: str) -> dict[str, np.ndarray]:
    """``{key: row / |row|}``: embeddings are directions (the worlds' are unit vectors); an all-zero row is refused."""
    emb = np.asarray(emb, np.float32).reshape(len(keys), -1)
    norms = np.linalg.norm(emb, axis=1)
    if len(norms) and norms.min() <= 1e-6:
        raise DataError(f"{what} {keys[int(norms.argmin())]!r} has an all-zero embedding; recompute it")
    return dict(zip(keys, emb / norms[:, None]))


def _finish(out_dir, records, images: _Images, text_encoder, skipped: dict) -> dict:
    found = images.resolve()
    embeddings = _unit_rows(list(found), np.stack(list(found.values())), "image") if found else {}
    prompts = sorted({r["prompt"] for kind in records.values() for r in kind})
    prompt_emb = _unit_rows(prompts, np.asarray(text_encoder(prompts), np.float32), "prompt") \
        if text_encoder and prompts else None
    write_dataset(out_dir, records, prompt_emb, embeddings, float16=False)
    summary = {"written": {k: len(v) for k, v in records.items()}, "skipped": skipped,
               "users": len({r["user_id"] for kind in records.values() for r in kind})}
    write_json(Path(out_dir) / "import_summary.json", summary)
    return summary


def convert_pick_a_pic(source, out_dir, image_embeddings=None, image_encoder: Encoder | None = None,
                       text_encoder: Encoder | None = None) -> dict:
    """Convert Pick-a-Pic rows to ``pairs.jsonl`` + ``embeddings.npz`` in ``out_dir``.

    Returns:
        ``{"written": {...}, "skipped": {reason: count}, "users": n}``.
    """
    images = _Images(image_embeddings, image_encoder, "pick-a-pic")
    pairs, skipped = [], {"no_label": 0, "same_images": 0}
    for where, row in _rows(source):
        _need(row, ("caption", "label_0", "label_1", "user_id"), where)
        if "has_label" in row and not _flag(row["has_label"]):
            skipped["no_label"] += 1
            continue
        if "are_different" in row and not _flag(row["are_different"]):
            skipped["same_images"] += 1
            continue
        ids = []
        for j in (0, 1):
            uid, data = row.get(f"image_{j}_uid"), row.get(f"jpg_{j}")
            if uid:
                key = str(uid)
            elif data is not None:
                key = "sha1:" + hashlib.sha1(bytes(data)).hexdigest()
            else:
                raise DataError(f"{where}: image {j} has neither image_{j}_uid nor jpg_{j}")
            ids.append(images.add(key, data, where))
        l0 = _number(row["label_0"], "label_0", where)
        l1 = _number(row["label_1"], "label_1", where)
        if not (0 <= l0 <= 1 and abs(l0 + l1 - 1) < 1e-6):
            raise DataError(f"{where}: label_0 and label_1 must be probabilities summing to 1, got {l0}, {l1}")
        pairs.append({"user_id": str(row["user_id"]), "prompt": str(row["caption"]), "image_a": ids[0],
                      "image_b": ids[1], "label": l0})
    return _finish(out_dir, {"pairs": pairs}, images, text_encoder, skipped)


def convert_hpd_v2(source, out_dir, image_embeddings=None, image_encoder: Encoder | None = None,
                   text_encoder: Encoder | None = None, image_root: str | os.PathLike | None = None) -> dict:
    """Convert an HPD v2 annotation file (JSON list) to pair records.

    Args:
        image_root: Folder the image paths are relative to (for ``image_encoder``).
    """
    path = Path(source)
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot read an HPD v2 JSON list ({exc})") from exc
    if not isinstance(entries, list):
        raise DataError(f"{path}: expected a JSON list of entries, got {type(entries).__name__}")
    images = _Images(image_embeddings, image_encoder, "hpd-v2")
    pairs, skipped = [], {"fewer_than_two_images": 0}
    for i, entry in enumerate(entries):
        where = f"{path}:entry {i}"
        if not isinstance(entry, dict):
            raise DataError(f"{where}: expected an object")
        paths = entry.get("image_path", entry.get("file_path"))
        if "prompt" not in entry or not isinstance(paths, list):
            raise DataError(f"{where}: needs 'prompt' and a list 'image_path' (or 'file_path')")
        if "rank" in entry:
            order = [_number(r, "rank", where) for r in entry["rank"]]
        elif "human_preference" in entry:
            order = [-_number(r, "human_preference", where) for r in entry["human_preference"]]
        else:
            raise DataError(f"{where}: needs 'rank' or 'human_preference'")
        if len(order) != len(paths):
            raise DataError(f"{where}: {len(paths)} images but {len(order)} ranks")
        if len(paths) < 2:
            skipped["fewer_than_two_images"] += 1
            continue
        user = str(entry.get("user_hash", entry.get("user_id", f"hpd-{i}")))
        keys = [images.add(p, str(Path(image_root) / p) if image_root else p, where) for p in paths]
        for a, b in itertools.combinations(range(len(keys)), 2):
            label = 0.5 if order[a] == order[b] else float(order[a] < order[b])
            pairs.append({"user_id": user, "prompt": str(entry["prompt"]), "image_a": keys[a],
                          "image_b": keys[b], "label": label})
    return _finish(out_dir, {"pairs": pairs}, images, text_encoder, skipped)


def convert_simulacra(sqlite_path, out_dir, image_embeddings=None, image_encoder: Encoder | None = None,
                      text_encoder: Encoder | None = None, image_root: str | os.PathLike | None = None) -> dict:
    """Convert the Simulacra Aesthetic Captions sqlite database to rating records.

    Image ids are the ``images.id`` values (as strings); ``image_encoder``
    receives the files' paths (``paths.path`` under ``image_root``).
    """
    path = Path(sqlite_path)
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} does not exist")
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        missing = {"generations", "images", "ratings"} - tables
        if missing:
            raise DataError(f"{path}: not a Simulacra Aesthetic Captions database (missing tables "
                            f"{', '.join(sorted(missing))})")
        has_paths = "paths" in tables
        query = ("SELECT ratings.rowid, ratings.sid, ratings.iid, ratings.rating, generations.prompt"
                 + (", paths.path" if has_paths else ", NULL")
                 + " FROM ratings JOIN images ON images.id = ratings.iid"
                 " JOIN generations ON generations.id = images.gid"
                 + (" LEFT JOIN paths ON paths.iid = images.id" if has_paths else "")
                 + " ORDER BY ratings.rowid")
        rows = con.execute(query).fetchall()
    except sqlite3.DatabaseError as exc:
        raise DataError(f"{path}: cannot read the database ({exc})") from exc
    finally:
        con.close()
    images = _Images(image_embeddings, image_encoder, "simulacra")
    ratings, skipped = [], {"no_rating": 0}
    for rowid, sid, iid, rating, prompt, img_path in rows:
        where = f"{path}:ratings row {rowid}"
        if rating is None:
            skipped["no_rating"] += 1
            continue
        payload = str(Path(image_root) / img_path) if (image_root and img_path) else img_path
        key = images.add(str(iid), payload, where)
        ratings.append({"user_id": str(sid), "prompt": str(prompt), "image": key,
                        "rating": _number(rating, "rating", where)})
    return _finish(out_dir, {"ratings": ratings}, images, text_encoder, skipped)


ADAPTERS: dict[str, Callable[..., dict]] = {
    "pick-a-pic": convert_pick_a_pic, "hpd-v2": convert_hpd_v2, "simulacra": convert_simulacra,
}
