"""Offline-RL trajectory datasets of PastaT2I: generate, load, verify, convert.

::

    from pasta_env.datasets import DatasetSpec, generate, load, verify

    generate("data/lmm", DatasetSpec(episodes=30_000, policy="lmm", seed=0))
    ds = load("data/lmm")             # episodes with the env's full observations
    ds.minari()                       # the same data as a minari.MinariDataset
    report = verify("data/lmm")       # counts, alignment, checksums, replay
    mdp = to_d3rlpy(ds)               # a d3rlpy MDPDataset

Needs the ``data`` extra (h5py, minari, pyarrow); the d3rlpy bridge needs d3rlpy.
"""

from pasta_env.datasets.dataset import Episode, TrajectoryDataset, load
from pasta_env.datasets.generate import DatasetSpec, generate
from pasta_env.datasets.layout import ARRAYS, Layout, full_observations
from pasta_env.datasets.manifest import IncompleteDatasetError, read_manifest
from pasta_env.datasets.offline import flat_observation_layout, to_d3rlpy
from pasta_env.datasets.verify import VerifyReport, info, verify

__all__ = ["ARRAYS", "DatasetSpec", "Episode", "IncompleteDatasetError", "Layout", "TrajectoryDataset",
           "VerifyReport", "flat_observation_layout", "full_observations", "generate", "info", "load",
           "read_manifest", "to_d3rlpy", "verify"]
