"""Preference data on disk and in memory: pairs, ratings and multi-turn choices.

A dataset is a folder::

    DIR/
      pairs.jsonl       {"user_id", "prompt", "image_a", "image_b", "label"}
      ratings.jsonl     {"user_id", "prompt", "image", "rating"}
      choices.jsonl     {"user_id", "trajectory_id", "turn", "initial_prompt",
                         "prompts": [L], "images": [[M image ids] * L], "chosen"}
      embeddings.npz    prompt_keys, prompt_emb (P, d), image_keys, image_emb (I, d)
      embeddings/*.npz  more of the same, one file per append (optional; how
                        ``pasta serve`` records a turn without rewriting a file)
      users.jsonl       {"user_id", "type", "type_name"?}   (optional: true types, for evaluation)

Each ``.jsonl`` file is optional; at least one must hold records. ``label``
is the probability that ``image_a`` is preferred: 1, 0, or 0.5 for a tie.
``prompt`` fields are texts, ``image*`` fields are image ids. Users judge
images against their own request (PASTA's ``s(k, p0, I)``): the ``prompt`` of a
pair or rating is the request the images were made for, and a choice's
``initial_prompt`` is the request the user started the session with
(``prompts`` are the slate's shown prompts, kept for reference). Embeddings
come from ``embeddings.npz`` (precomputed, e.g. CLIP); a prompt without a
precomputed embedding is embedded with the given text encoder. Every image
needs an embedding. Any malformed record raises :class:`DataError` naming the
file and line.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from simulators.atomic import atomic_path, dumps
from simulators.errors import PastaError
from simulators.files import read_npz

KINDS = ("pairs", "ratings", "choices")
FIELDS = {
    "pairs": {"user_id": str, "prompt": str, "image_a": str, "image_b": str, "label": float},
    "ratings": {"user_id": str, "prompt": str, "image": str, "rating": float},
    "choices": {"user_id": str, "trajectory_id": str, "turn": int, "initial_prompt": str, "prompts": list,
                "images": list, "chosen": int},
}


class DataError(PastaError, ValueError):
    """A preference-data file is malformed; the message names the file and the row."""


@dataclass
class PreferenceData:
    """Preference records as index arrays into embedding tables.

    Attributes:
        prompt_emb: ``(P, d)`` prompt embeddings.
        image_emb: ``(I, d)`` image embeddings.
        users: User ids; records refer to them by position.
        pairs: ``user, prompt, image_a, image_b`` (int) and ``label`` (float) arrays.
        ratings: ``user, prompt, image`` (int) and ``rating`` (float) arrays.
        choices: ``user, request (n,), prompt (n, L), image (n, L, M), chosen (n,)`` arrays
            (``request``: the initial prompt of the session).
        true_types: ``(U,)`` true type per user, ``-1`` where unknown; ``None`` if no user has one.
        skipped: Count of records an adapter skipped, by reason.
    """

    prompt_emb: np.ndarray
    image_emb: np.ndarray
    users: tuple[str, ...]
    pairs: dict[str, np.ndarray]
    ratings: dict[str, np.ndarray]
    choices: dict[str, np.ndarray]
    true_types: np.ndarray | None = None
    skipped: dict[str, int] = field(default_factory=dict)
    type_names: tuple[str, ...] = ()

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return int(self.image_emb.shape[1])

    @property
    def num_users(self) -> int:
        """Number of users."""
        return len(self.users)

    def counts(self) -> dict[str, int]:
        """Number of records of each kind."""
        return {k: int(len(getattr(self, k)["user"])) for k in KINDS}

    def __len__(self) -> int:
        return sum(self.counts().values())

    def subset_users(self, keep: np.ndarray) -> PreferenceData:
        """The records of the users with ``keep[u]`` true, users renumbered."""
        keep = np.asarray(keep, bool)
        new_index = np.cumsum(keep) - 1

        def take(records):
            mask = keep[records["user"]]
            out = {k: v[mask] for k, v in records.items()}
            out["user"] = new_index[out["user"]]
            return out

        users = tuple(u for u, k in zip(self.users, keep) if k)
        types = None if self.true_types is None else self.true_types[keep]
        return PreferenceData(self.prompt_emb, self.image_emb, users, take(self.pairs),
                              take(self.ratings), take(self.choices), types, dict(self.skipped),
                              self.type_names)

    def split_records(self, fraction: float, seed: int = 0) -> tuple[PreferenceData, PreferenceData]:
        """Split every kind's records at random into ``(fraction, 1 - fraction)``; users are kept."""
        def part(records, first):
            n = len(records["user"])
            mask = rng.random(n) < fraction
            mask = mask if first else ~mask
            return {k: v[mask] for k, v in records.items()}

        parts = []
        for first in (True, False):
            rng = np.random.default_rng(seed)  # the same draws for both halves: complementary masks
            parts.append(PreferenceData(self.prompt_emb, self.image_emb, self.users,
                                        part(self.pairs, first), part(self.ratings, first),
                                        part(self.choices, first), self.true_types, dict(self.skipped),
                                        self.type_names))
        return parts[0], parts[1]


def empty_records(kind: str, slate: tuple[int, int] = (0, 0)) -> dict[str, np.ndarray]:
    """No records of ``kind`` (``pairs``, ``ratings`` or ``choices`` of ``slate = (L, M)``), as arrays."""
    if kind == "pairs":
        return {"user": np.zeros(0, np.int64), "prompt": np.zeros(0, np.int64),
                "image_a": np.zeros(0, np.int64), "image_b": np.zeros(0, np.int64),
                "label": np.zeros(0, np.float32)}
    if kind == "ratings":
        return {"user": np.zeros(0, np.int64), "prompt": np.zeros(0, np.int64),
                "image": np.zeros(0, np.int64), "rating": np.zeros(0, np.float32)}
    L, M = slate
    return {"user": np.zeros(0, np.int64), "request": np.zeros(0, np.int64), "prompt": np.zeros((0, L), np.int64),
            "image": np.zeros((0, L, M), np.int64), "chosen": np.zeros(0, np.int64)}


def _read_jsonl(path: Path, kind: str) -> Iterable[tuple[int, dict]]:
    fields = FIELDS[kind]
    with path.open("rb") as fh:
        for line_no, raw in enumerate(fh, 1):
            where = f"{path}:{line_no}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"{where}: not UTF-8 text (byte {exc.start}); save the file as UTF-8") from exc
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{where}: not valid JSON ({exc.msg})") from exc
            if not isinstance(rec, dict):
                raise DataError(f"{where}: expected a JSON object, got {type(rec).__name__}")
            for name, typ in fields.items():
                if name not in rec:
                    raise DataError(f"{where}: missing field {name!r} (a {kind} record needs "
                                    f"{', '.join(fields)})")
                value = rec[name]
                ok = isinstance(value, (int, float)) and not isinstance(value, bool) if typ is float \
                    else isinstance(value, int) and not isinstance(value, bool) if typ is int \
                    else isinstance(value, typ) if typ is list else isinstance(value, (str, int))
                if not ok:
                    raise DataError(f"{where}: field {name!r} should be {typ.__name__}, "
                                    f"got {type(value).__name__}")
                if typ is float and not math.isfinite(value):
                    raise DataError(f"{where}: field {name!r} is {value!r}; it must be a finite number")
            yield line_no, rec


class _Index:
    """Maps keys to positions, collecting new keys."""

    def __init__(self):
        self.pos: dict[str, int] = {}

    def __call__(self, key) -> int:
        key = str(key)
        if key not in self.pos:
            self.pos[key] = len(self.pos)
        return self.pos[key]

    def keys(self) -> list[str]:
        return list(self.pos)


def read_dataset(folder: str | os.PathLike,
                 text_encoder: Callable[[Sequence[str]], np.ndarray] | None = None) -> PreferenceData:
    """Read a dataset folder (see the module docstring for the layout).

    Args:
        folder: The dataset folder.
        text_encoder: Embeds prompts that ``embeddings.npz`` lacks; default:
            the synthetic world's static text encoder (64-d).

    Raises:
        FileNotFoundError: No folder, or no record file in it.
        DataError: A malformed record or a missing embedding (file and line named).
    """
    folder = Path(folder)
    if folder.is_file():
        raise DataError(f"{str(folder)!r} is a file; give the dataset folder that holds pairs.jsonl, "
                        "ratings.jsonl or choices.jsonl")
    if not folder.is_dir():
        raise FileNotFoundError(f"dataset folder {str(folder)!r} does not exist")
    files = {k: folder / f"{k}.jsonl" for k in KINDS}
    if not any(p.is_file() for p in files.values()):
        raise FileNotFoundError(f"{str(folder)!r} holds none of {', '.join(p.name for p in files.values())}")
    table = _load_embeddings(folder / "embeddings.npz")
    for shard in sorted((folder / "embeddings").glob("*.npz")) if (folder / "embeddings").is_dir() else []:
        more = _load_embeddings(shard)
        for kind in ("prompt", "image"):
            if len(more[kind]["keys"]):
                have = table[kind]
                table[kind] = more[kind] if not len(have.get("keys", ())) else {
                    "keys": np.concatenate([have["keys"], more[kind]["keys"]]),
                    "emb": np.concatenate([have["emb"], more[kind]["emb"].astype(have["emb"].dtype)])}
    users, prompts, images = _Index(), _Index(), _Index()
    records: dict[str, dict[str, np.ndarray]] = {}
    where_image: dict[str, str] = {}

    def img(key, where):
        key = str(key)
        where_image.setdefault(key, where)
        return images(key)

    slate = None
    for kind, path in files.items():
        rows: list[tuple] = []
        if path.is_file():
            for line_no, r in _read_jsonl(path, kind):
                where = f"{path}:{line_no}"
                u = users(r["user_id"])
                if kind == "pairs":
                    if not 0.0 <= float(r["label"]) <= 1.0:
                        raise DataError(f"{where}: label must be in [0, 1] (1: image_a preferred, "
                                        f"0.5: tie), got {r['label']}")
                    rows.append((u, prompts(r["prompt"]), img(r["image_a"], where),
                                 img(r["image_b"], where), float(r["label"])))
                elif kind == "ratings":
                    rows.append((u, prompts(r["prompt"]), img(r["image"], where), float(r["rating"])))
                else:
                    shape = _check_slate(r, where, slate)
                    slate = slate or shape
                    rows.append((u, prompts(r["initial_prompt"]), [prompts(p) for p in r["prompts"]],
                                 [[img(i, where) for i in col] for col in r["images"]], int(r["chosen"])))
        records[kind] = _to_arrays(kind, rows, slate or (0, 0))
    prompt_emb = _lookup_prompts(prompts.keys(), table, text_encoder)
    image_emb = _lookup_images(images.keys(), table, where_image)
    types, names = _read_types(folder / "users.jsonl", users)
    return PreferenceData(prompt_emb, image_emb, tuple(users.keys()), records["pairs"],
                          records["ratings"], records["choices"], types, type_names=names)


def _check_slate(r: dict, where: str, slate: tuple[int, int] | None) -> tuple[int, int]:
    L = len(r["prompts"])
    if L < 2 or len(r["images"]) != L:
        raise DataError(f"{where}: a choice needs >= 2 prompts and one image list per prompt, "
                        f"got {L} prompts and {len(r['images'])} image lists")
    sizes = {len(col) if isinstance(col, list) else -1 for col in r["images"]}
    if len(sizes) != 1 or min(sizes) < 1:
        raise DataError(f"{where}: every prompt of a slate needs the same number (>= 1) of images")
    shape = (L, sizes.pop())
    if slate is not None and shape != slate:
        raise DataError(f"{where}: slate of {shape[0]} prompts x {shape[1]} images, but earlier "
                        f"records have {slate[0]} x {slate[1]}; one file holds one slate shape")
    if not 0 <= r["chosen"] < L:
        raise DataError(f"{where}: chosen index {r['chosen']} is out of range 0..{L - 1}")
    return shape


def _to_arrays(kind: str, rows: list, slate: tuple[int, int]) -> dict[str, np.ndarray]:
    if not rows:
        return empty_records(kind, slate)
    cols = list(zip(*rows))
    names: tuple[str, ...]
    dtypes: tuple[type, ...]
    if kind == "pairs":
        names, dtypes = ("user", "prompt", "image_a", "image_b", "label"), (np.int64,) * 4 + (np.float32,)
    elif kind == "ratings":
        names, dtypes = ("user", "prompt", "image", "rating"), (np.int64,) * 3 + (np.float32,)
    else:
        names, dtypes = ("user", "request", "prompt", "image", "chosen"), (np.int64,) * 5
    return {n: np.asarray(c, dtype=t) for n, c, t in zip(names, cols, dtypes)}


#: Most user types a dataset may name (a type index is a small integer).
MAX_TYPES = 10_000


def _check_unit(path: Path, kind: str, keys: np.ndarray, emb: np.ndarray) -> None:
    """Raise :class:`DataError` unless every row of ``emb`` is a unit vector (as the worlds' embeddings are)."""
    if not len(emb):
        return
    norms = np.linalg.norm(emb.astype(np.float32), axis=1)
    bad = np.flatnonzero(np.abs(norms - 1.0) > 1e-2)
    if len(bad):
        i = int(bad[0])
        raise DataError(f"{path}: {kind} {str(keys[i])!r} has an embedding of length {norms[i]:.4g}; embeddings "
                        f"must be unit vectors ({len(bad)} are not): divide each by its norm (all-zero ones cannot "
                        "be mended: recompute them)")


def _load_embeddings(path: Path) -> dict[str, dict[str, np.ndarray]]:
    if not path.exists():
        return {"prompt": {}, "image": {}}
    data = read_npz(path, "a dataset's embeddings file", fix="write it with write_dataset()",
                    finite=("prompt_emb", "image_emb"), error=DataError)
    out = {}
    for kind in ("prompt", "image"):
        keys = data.get(f"{kind}_keys", np.zeros(0, str))
        emb = data.get(f"{kind}_emb", np.zeros((0, 1)))
        if len(keys) != len(emb) or emb.ndim != 2:
            raise DataError(f"{path}: {len(keys)} {kind}_keys but {kind}_emb of shape {emb.shape}; "
                            "expected one embedding row per key")
        out[kind] = {"keys": keys, "emb": emb}
    dims = {kind: out[kind]["emb"].shape[1] for kind in out if len(out[kind]["keys"])}
    if len(set(dims.values())) > 1:
        raise DataError(f"{path}: prompt embeddings are {dims['prompt']}-d but image embeddings "
                        f"{dims['image']}-d; embed both with one model (e.g. CLIP's text and image towers)")
    for kind in out:
        _check_unit(path, kind, out[kind]["keys"], out[kind]["emb"])
    return out


def _lookup(keys: list[str], table: dict) -> tuple[np.ndarray | None, list[int]]:
    if not table or not len(table.get("keys", ())):
        return None, list(range(len(keys)))
    pos = {str(k): i for i, k in enumerate(table["keys"])}
    idx = np.array([pos.get(k, -1) for k in keys], np.int64)
    missing = [i for i, j in enumerate(idx) if j < 0]
    emb = table["emb"][np.maximum(idx, 0)].astype(np.float32) if len(keys) else None
    return emb, missing


def _lookup_prompts(keys, table, encoder) -> np.ndarray:
    emb, missing = _lookup(keys, table["prompt"])
    if missing:
        if encoder is None:
            from simulators.text.encoders import StaticTextEncoder

            encoder = StaticTextEncoder.load().encode
        enc = np.asarray(encoder([keys[i] for i in missing]), np.float32)
        if emb is None:
            emb = np.zeros((len(keys), enc.shape[1]), np.float32)
        if enc.shape[1] != emb.shape[1]:
            raise DataError(f"the text encoder gives {enc.shape[1]}-d prompts but embeddings.npz holds "
                            f"{emb.shape[1]}-d ones; precompute every prompt or use a matching encoder")
        emb[missing] = enc
    return emb if emb is not None else np.zeros((0, 1), np.float32)


def _lookup_images(keys, table, where_image) -> np.ndarray:
    emb, missing = _lookup(keys, table["image"])
    if missing:
        first = keys[missing[0]]
        raise DataError(f"{where_image[first]}: image {first!r} has no embedding in embeddings.npz "
                        f"({len(missing)} images lack one); add it to image_keys/image_emb")
    return emb if emb is not None else np.zeros((0, 1), np.float32)


def _read_types(path: Path, users: _Index) -> tuple[np.ndarray | None, tuple[str, ...]]:
    if not path.is_file():
        return None, ()
    types = np.full(len(users.pos), -1, np.int64)
    names: dict[int, str] = {}
    with path.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                uid, k = str(rec["user_id"]), rec["type"]
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise DataError(f"{path}:{line_no}: expected {{\"user_id\", \"type\"}} ({exc})") from exc
            if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k < MAX_TYPES:
                raise DataError(f"{path}:{line_no}: type must be an integer in 0..{MAX_TYPES - 1}, got {k!r}")
            if uid in users.pos:
                types[users.pos[uid]] = k
            if "type_name" in rec:
                names[k] = str(rec["type_name"])
    ordered = tuple(names.get(k, f"type-{k}") for k in range(max(names) + 1)) if names else ()
    return types, ordered


def write_dataset(folder: str | os.PathLike, records: dict[str, list[dict]],
                  prompt_emb: dict[str, np.ndarray] | None = None,
                  image_emb: dict[str, np.ndarray] | None = None,
                  user_types: dict[str, int] | None = None, type_names: Sequence[str] = (),
                  float16: bool = True) -> Path:
    """Write a dataset folder; every file goes to a temp path and is renamed.

    Args:
        folder: Where to write (created if needed).
        records: ``{"pairs": [...], "ratings": [...], "choices": [...]}`` lists of dicts.
        prompt_emb: Prompt text -> embedding.
        image_emb: Image id -> embedding.
        user_types: User id -> true type, written to ``users.jsonl``.
        type_names: Names of the true types, written beside them.
        float16: Store embeddings as float16 (half the size).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for kind in KINDS:
        rows = records.get(kind) or []
        if rows:
            _write_lines(folder / f"{kind}.jsonl", rows)
    if user_types:
        rows = [{"user_id": u, "type": int(k), **({"type_name": type_names[k]} if type_names else {})}
                for u, k in user_types.items()]
        _write_lines(folder / "users.jsonl", rows)
    dtype = np.float16 if float16 else np.float32

    def stack(d):
        if not d:
            return np.zeros(0, str), np.zeros((0, 1), dtype)
        return np.array(list(d), dtype=str), np.stack(list(d.values())).astype(dtype)

    pk, pe = stack(prompt_emb or {})
    ik, ie = stack(image_emb or {})
    with atomic_path(folder / "embeddings.npz") as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, prompt_keys=pk, prompt_emb=pe, image_keys=ik, image_emb=ie)
    return folder


def _write_lines(path: Path, rows: list[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(dumps(row) + "\n")
