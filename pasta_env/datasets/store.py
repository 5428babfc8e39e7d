"""The on-disk dataset: one HDF5 file that is at once a Minari dataset and a set of plain arrays.

``<dir>/data/`` is a Minari dataset (format ``hdf5``): ``metadata.json``
and ``main_data.hdf5``, loadable with ``minari.MinariDataset(<dir>/data)``
(or ``minari.load_dataset(id)`` when ``<dir>`` is
``$MINARI_DATASETS_PATH/<id>``). Inside ``main_data.hdf5``:

* ``pasta/<array>``: every array of :mod:`pasta_env.datasets.layout`, whole,
  episode-major; the fast path (one read per array) and what checksums cover;
* ``episode_<i>/``: Minari's episode groups (``observations/<key>``,
  ``actions``, ``rewards``, ``terminations``, ``truncations``; attributes
  ``id``, ``seed``, ``total_steps``) whose datasets are HDF5 *virtual
  datasets* onto row ``i`` of the ``pasta`` arrays (``terminations`` and
  ``truncations``, the same in every episode, are links to one shared
  copy): Minari reads episodes as usual, and no byte is stored twice.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pasta_env.datasets.layout import ARRAYS, Layout
from simulators.backends import require

DATA_DIR = "data"
MAIN_FILE = "main_data.hdf5"
ARRAY_GROUP = "pasta"
#: What Minari sees of each episode: (path in the episode group, the array it shows a row of).
MINARI_VIEWS: tuple[tuple[str, str], ...] = (
    ("observations/candidates", "candidates"), ("observations/last_images", "last_images"),
    ("observations/last_choice", "last_choice"), ("actions", "actions"), ("rewards", "rewards"),
    ("terminations", "terminations"), ("truncations", "truncations"),
)


class HDF5Writer:
    """Writes a new Minari dataset folder chunk by chunk: the arrays, then Minari's episode views.

    Args:
        data_dir: The folder to create (must not exist); ``metadata.json`` and
            ``main_data.hdf5`` go inside.
        layout: Array sizes.
        episodes: Total episodes ``E`` that will be appended.
        env_spec: The Gymnasium ``EnvSpec`` that recovers the env.
        dataset_id: Minari dataset id (``namespace/name-vN``).
        minari_metadata: Extra keyword arguments of ``minari.create_dataset_from_buffers``
            (``algorithm_name``, ``description``...).

    Use: :meth:`append` consecutive chunks of episodes in order, then
    :meth:`close`, which returns the SHA-256 of every array.
    """

    def __init__(self, data_dir: Path, layout: Layout, episodes: int, env_spec, dataset_id: str,
                 minari_metadata: dict[str, Any]):
        h5py = require("h5py")
        _create_minari(data_dir, layout, env_spec, dataset_id, minari_metadata)
        self.data_dir, self.layout, self.episodes = data_dir, layout, episodes
        self.shapes = layout.shapes(episodes)
        self.hashes = {k: hashlib.sha256(f"{dt.str}{shape}".encode()) for k, (shape, dt) in self.shapes.items()}
        self.file = h5py.File(data_dir / MAIN_FILE, "a", libver="latest")
        group = self.file.create_group(ARRAY_GROUP)
        group.attrs["layout"] = str(dataclasses.asdict(layout))
        self.dsets = {k: group.create_dataset(k, shape=shape, dtype=dt) for k, (shape, dt) in self.shapes.items()}
        self.views = _EpisodeWriter(self.file, self.shapes, layout.horizon)
        self.written = 0

    def append(self, chunk: dict[str, np.ndarray]) -> None:
        """Write the next episodes (a dict of :data:`ARRAYS`)."""
        n, start = len(chunk["seeds"]), self.written
        if start + n > self.episodes:
            raise ValueError(f"{start + n} episodes appended to a dataset of {self.episodes}")
        for k in ARRAYS:
            a = np.ascontiguousarray(chunk[k], dtype=self.shapes[k][1])
            self.dsets[k][start:start + n] = a
            self.hashes[k].update(a.tobytes())
        self.views.write(start, chunk["seeds"], chunk["terminations"], chunk["truncations"])
        self.written += n

    def close(self) -> dict[str, str]:
        """Finish the file and Minari's metadata; the SHA-256 of every array (dtype, shape, bytes)."""
        self.file.close()
        if self.written != self.episodes:
            raise RuntimeError(f"{self.written} episodes were written, expected {self.episodes}")
        storage = require("minari").MinariDataset(self.data_dir).storage
        storage.update_metadata({"total_episodes": self.episodes, "total_steps": self.episodes * self.layout.horizon,
                                 "dataset_size": storage.get_size()})
        return {k: h.hexdigest() for k, h in self.hashes.items()}

    def abort(self) -> None:
        """Close the file without finishing (the folder is then discarded)."""
        with contextlib.suppress(Exception):
            self.file.close()


def _create_minari(data_dir: Path, layout: Layout, env_spec, dataset_id: str, extra: dict[str, Any]) -> None:
    """An empty Minari dataset at ``data_dir``, made by Minari itself (its metadata, its file)."""
    import shutil
    import tempfile

    minari = require("minari")
    data_dir = data_dir.absolute()  # Minari joins a relative dataset root twice
    root = Path(tempfile.mkdtemp(prefix=".minari-", dir=data_dir.parent))
    try:
        with _environ("MINARI_DATASETS_PATH", str(root)), warnings.catch_warnings():
            # Minari advises an author, an e-mail and a code link; a generated dataset has none to give.
            warnings.filterwarnings("ignore", category=UserWarning, module=r"minari\.")
            minari.create_dataset_from_buffers(
                dataset_id, buffer=[], env=env_spec, eval_env=env_spec, observation_space=layout.observation_space(),
                action_space=layout.action_space(), data_format="hdf5", **extra)
        made = root / dataset_id / DATA_DIR
        if not (made / MAIN_FILE).is_file():  # pragma: no cover - a Minari whose layout changed
            raise RuntimeError(f"this Minari version ({minari.__version__}) lays datasets out differently; "
                               "install minari 0.5")
        os.replace(made, data_dir)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def _environ(name: str, value: str) -> Iterator[None]:
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


class _EpisodeWriter:
    """Writes Minari's episode groups fast, with h5py's low-level API (HDF5 objects are costly to make).

    Episode ``i``'s observations, actions and rewards are virtual datasets onto
    row ``i`` of the arrays. Its ``terminations`` and ``truncations`` are the
    same in every episode (the horizon ends it; nothing truncates it), so they
    are hard links to one shared dataset each, after the arrays have been
    checked to hold exactly that.
    """

    PER_ROW = ("observations/candidates", "observations/last_images", "observations/last_choice", "actions",
               "rewards")

    def __init__(self, f, shapes: dict, horizon: int):
        from h5py import h5s, h5t

        self.f = f
        views = dict(MINARI_VIEWS)
        self.sources = {}
        for path in self.PER_ROW:
            name = views[path]
            shape, dt = shapes[name]
            self.sources[path] = (f"/{ARRAY_GROUP}/{name}".encode(), shape, h5t.py_create(dt),
                                  h5s.create_simple(shape[1:]), h5s.create_simple(shape))
        terminal = np.zeros(horizon, bool)
        terminal[-1] = True
        self.constant = {"terminations": terminal, "truncations": np.zeros(horizon, bool)}
        for name, value in self.constant.items():
            f.create_dataset(f"{ARRAY_GROUP}/minari_{name}", data=value)
        self.scalar = h5s.create(h5s.SCALAR)
        self.int64 = h5t.py_create(np.dtype(np.int64))
        self.horizon = horizon

    def write(self, start: int, seeds: np.ndarray, terminations: np.ndarray, truncations: np.ndarray) -> None:
        """Groups ``episode_<start>`` onwards, one per seed."""
        from h5py import h5a, h5d, h5g, h5p

        for name, arr in (("terminations", terminations), ("truncations", truncations)):
            if not (arr == self.constant[name]).all():
                raise ValueError(f"{name} differ between episodes; Minari's view shares one copy of them")
        fid = self.f.id
        for i, seed in enumerate(seeds.tolist(), start=start):
            g = h5g.create(fid, f"episode_{i}".encode())
            for key, value in ((b"id", i), (b"seed", seed), (b"total_steps", self.horizon)):
                h5a.create(g, key, self.int64, self.scalar).write(np.array(value, np.int64))
            obs = h5g.create(g, b"observations")
            for path, (src, shape, tid, vspace, whole) in self.sources.items():
                sspace = whole.copy()
                sspace.select_hyperslab((i,) + (0,) * (len(shape) - 1), (1,) + shape[1:])
                dcpl = h5p.create(h5p.DATASET_CREATE)
                dcpl.set_virtual(vspace, b".", src, sspace)
                parent, name = (obs, path[len("observations/"):]) if path.startswith("observations/") else (g, path)
                h5d.create(parent, name.encode(), tid, vspace, dcpl=dcpl)
            for name in self.constant:
                g.links.create_hard(name.encode(), fid, f"/{ARRAY_GROUP}/minari_{name}".encode())


def read_arrays(data_dir: Path, names: tuple[str, ...] = ARRAYS,
                rows: slice | np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Read whole arrays (or some episodes of them) from ``data_dir/main_data.hdf5``."""
    h5py = require("h5py")
    out = {}
    with h5py.File(Path(data_dir) / MAIN_FILE, "r") as f:
        for k in names:
            d = f[f"{ARRAY_GROUP}/{k}"]
            if rows is None:
                out[k] = d[()]
            elif isinstance(rows, slice):
                out[k] = d[rows]
            else:
                order = np.argsort(rows)
                picked = d[np.asarray(rows)[order]]  # h5py wants increasing indices
                out[k] = picked[np.argsort(order)]
    return out


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def array_sha256(a: np.ndarray) -> str:
    """SHA-256 of an array as :func:`write_hdf5` computes it (dtype, shape, bytes)."""
    a = np.ascontiguousarray(a)
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def env_spec_for(env_kwargs: dict[str, Any]):
    """The ``EnvSpec`` of PastaT2I-v0 with ``env_kwargs``: what ``recover_environment()`` makes."""
    import gymnasium as gym

    from pasta_env import ENV_ID

    return dataclasses.replace(gym.spec(ENV_ID), kwargs=dict(env_kwargs))
