"""Reading a trajectory dataset: episodes with the env's full observations, rebuilt from what is stored."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pasta_env.datasets.layout import ARRAYS, Layout, full_observations
from pasta_env.datasets.manifest import TURNS_FILE, read_manifest
from pasta_env.datasets.store import DATA_DIR, array_sha256, read_arrays
from simulators.backends import require
from simulators.files import FileFormatError


@dataclass(frozen=True)
class Episode:
    """One stored episode (``H`` turns).

    Attributes:
        id: Index of the episode in the dataset.
        seed: The env seed that replays it.
        observations: The env's observations ``0..H`` (a dict of arrays with a
            leading axis of ``H + 1``), embeddings as ``float32``.
        actions: ``(H, L)`` the slates shown.
        rewards: ``(H,)``.
        terminations: ``(H,)``, ``True`` at the last turn.
        truncations: ``(H,)``, always ``False``.
        user_type: The hidden user type (a label; not part of any observation).
        explored: ``(H,)`` whether each slate was random (epsilon mixing).
    """

    id: int
    seed: int
    observations: dict[str, np.ndarray]
    actions: np.ndarray
    rewards: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray
    user_type: int
    explored: np.ndarray

    def __len__(self) -> int:
        return len(self.rewards)


class TrajectoryDataset:
    """A generated dataset, read like Minari's datasets: ``len``, indexing, iteration, filters.

    Use :func:`load` to open one. Arrays are read from disk on first use and
    kept; :meth:`filter_episodes` and :meth:`sample_episodes` return views
    that share them.
    """

    def __init__(self, folder: str | Path, manifest: dict[str, Any] | None = None,
                 episode_indices: np.ndarray | None = None, _cache: dict | None = None):
        self.folder = Path(folder)
        self.manifest = manifest if manifest is not None else read_manifest(self.folder)
        self.layout = Layout(**self.manifest["layout"])
        self.categories = np.asarray(self.manifest["categories"], np.int64)
        total = int(self.manifest["episodes"])
        self.episode_indices = np.arange(total) if episode_indices is None else np.asarray(episode_indices)
        self._cache: dict[str, np.ndarray] = {} if _cache is None else _cache

    def __len__(self) -> int:
        return len(self.episode_indices)

    def __repr__(self) -> str:
        return (f"TrajectoryDataset({str(self.folder)!r}, {len(self)} episodes, policy "
                f"{self.manifest['spec']['policy']!r}, world {self.manifest['world']['name']!r})")

    @property
    def total_steps(self) -> int:
        """Steps (turns) in the selected episodes."""
        return len(self) * self.layout.horizon

    def arrays(self, names: Iterable[str] = ARRAYS) -> dict[str, np.ndarray]:
        """The stored arrays of the selected episodes (see :mod:`pasta_env.datasets.layout`)."""
        names = tuple(names)
        unknown = [n for n in names if n not in ARRAYS]
        if unknown:
            raise ValueError(f"unknown array {unknown[0]!r}; the arrays are {', '.join(ARRAYS)}")
        missing = tuple(n for n in names if n not in self._cache)
        if missing:
            self._cache.update(read_arrays(self.folder / DATA_DIR, missing))
        everything = len(self.episode_indices) == int(self.manifest["episodes"]) and \
            np.array_equal(self.episode_indices, np.arange(len(self.episode_indices)))
        return {n: self._cache[n] if everything else self._cache[n][self.episode_indices] for n in names}

    def check_checksums(self) -> None:
        """Check every stored array against the SHA-256 its manifest records (reading them all into memory).

        Raises:
            FileFormatError: An array's bytes changed since generation; the
                message names it (``pasta dataset verify`` says more).
        """
        whole = TrajectoryDataset(self.folder, self.manifest, None, self._cache)
        arrays = whole.arrays()
        for name, meta in self.manifest["arrays"].items():
            if name in arrays and array_sha256(arrays[name]) != meta.get("sha256"):
                raise FileFormatError(f"{self.folder}: array {name!r} differs from its checksum in the manifest (the "
                                      "dataset is damaged); run `pasta dataset verify` on it, and generate it again")

    def observations(self, t: int) -> dict[str, np.ndarray]:
        """The env's observation ``t`` (``0..H``) of every selected episode, batched."""
        needed = ("candidates", "last_images", "last_choice", "actions", "rewards", "request")
        return full_observations(self.arrays(needed), self.categories, t)

    def __getitem__(self, i: int) -> Episode:
        if not -len(self) <= i < len(self):
            raise IndexError(f"episode {i} is out of range for {len(self)} episodes")
        return next(self.iterate_episodes([int(self.episode_indices[i])]))

    def iterate_episodes(self, episode_indices: Iterable[int] | None = None) -> Iterator[Episode]:
        """Episodes by dataset index (default: the selected ones, in order)."""
        indices = self.episode_indices if episode_indices is None else np.asarray(list(episode_indices))
        whole = TrajectoryDataset(self.folder, self.manifest, None, self._cache).arrays()
        for i in indices.tolist():
            one = {k: v[i:i + 1] for k, v in whole.items()}
            obs = [full_observations(one, self.categories, t) for t in range(self.layout.horizon + 1)]
            stacked = {k: np.concatenate([o[k] for o in obs]) for k in obs[0]}
            yield Episode(id=i, seed=int(one["seeds"][0]), observations=stacked, actions=one["actions"][0],
                          rewards=one["rewards"][0], terminations=one["terminations"][0],
                          truncations=one["truncations"][0], user_type=int(one["user_type"][0]),
                          explored=one["explored"][0])

    def __iter__(self) -> Iterator[Episode]:
        return self.iterate_episodes()

    def filter_episodes(self, condition: Callable[[Episode], bool]) -> TrajectoryDataset:
        """A view of the episodes for which ``condition(episode)`` is true."""
        keep = [i for i, ep in zip(self.episode_indices.tolist(), self.iterate_episodes()) if condition(ep)]
        return TrajectoryDataset(self.folder, self.manifest, np.asarray(keep, np.int64), self._cache)

    def sample_episodes(self, n: int, seed: int | None = None) -> TrajectoryDataset:
        """A view of ``n`` episodes drawn without replacement."""
        if not 0 <= n <= len(self):
            raise ValueError(f"cannot sample {n} of {len(self)} episodes")
        rng = np.random.default_rng(seed)
        picked = np.sort(rng.choice(self.episode_indices, n, replace=False))
        return TrajectoryDataset(self.folder, self.manifest, picked, self._cache)

    def recover_environment(self, **kwargs):
        """``gym.make("PastaT2I-v0", ...)`` with the arguments the dataset was generated with."""
        import gymnasium as gym

        import pasta_env  # noqa: F401 - registers the env

        return gym.make(self.manifest["env_id"], **{**self.manifest["env_kwargs"], **kwargs})

    def minari(self):
        """The same data as a ``minari.MinariDataset`` (compact observations; see the layout)."""
        return require("minari").MinariDataset(self.folder / DATA_DIR)

    def turns(self):
        """The readable per-turn table (``turns.parquet``) as a pyarrow Table."""
        return require("pyarrow.parquet").read_table(self.folder / TURNS_FILE)


def load(folder: str | Path) -> TrajectoryDataset:
    """Open a dataset made by :func:`pasta_env.datasets.generate`.

    Raises:
        FileFormatError: Not a dataset, or a damaged manifest.
        IncompleteDatasetError: Generation has not finished.
    """
    return TrajectoryDataset(folder)
